/**
 * Dispatcher throughput, latency and memory, each printed next to a baseline measured in the same run
 * on the same data: `npm run bench [-- --quick] [--only decode,e2e,latency,rss,backlog] [--decode-rows 200000] [--decode-rounds 3]
 * [--e2e-rows 100000] [--concurrency 64,256] [--batch-size 100] [--latency-load 0.5] [--latency-rate N]
 * [--latency-seconds 10] [--rss-rows 1000000] [--rss-batch-size 100] [--backlog-rows 100000]
 * [--sibling-seconds 20] [--sibling-load 0.25] [--profile-dir DIR]
 * [--dispatcher-args="--max-inflight-events 2000"] [--dispatcher-node-flags="--max-semi-space-size=16"]`. Every flag can also be given
 * as an environment variable: BENCH_QUICK=1, BENCH_E2E_ROWS=50000, ...
 *
 * One throwaway Postgres (wal_level=logical) and one table `orders` (bigserial key, int, numeric,
 * text, boolean, timestamptz, jsonb) under one publication. The sink (bench/sink.ts) is a minimal node:http
 * server answering 200 in a child process of its own, so it never shares an event loop with what it measures.
 * Shared helpers are in bench/harness.ts, the report in bench/report.ts. The phases, run in this order
 * (each module says what it measures and against what):
 *
 * 1. decode (bench/phases/decode.ts): decode rates of the dispatcher's reader vs the stock PgoutputPlugin.
 * 2. e2e (bench/phases/e2e.ts): a backlog drained to the sink, unbatched and batched, vs a bare undici client.
 * 3. latency (bench/phases/latency.ts): commit → delivery, unbatched and batched, at --latency-load times
 *    the unbatched capacity measured in this run (by 2, or first in 3), vs a bare undici POST.
 * 4. rss (bench/phases/memory.ts): peak RSS draining a large backlog vs the idle dispatcher.
 * 5. backlog (bench/phases/backlog.ts): park + drain vs direct delivery, and a healthy trigger beside a down sibling.
 */

import { runBench } from './benchMain.js';
import { benchFlags } from './flags.js';
import { dispatcherDefaults, SCHEMA } from './harness.js';
import { type BacklogBenchOptions, benchBacklog } from './phases/backlog.js';
import { benchDecode, type DecodeBenchOptions } from './phases/decode.js';
import { benchEndToEnd, type EndToEndBenchOptions, type UnbatchedRates } from './phases/e2e.js';
import { benchLatency, type LatencyBenchOptions } from './phases/latency.js';
import { benchMemory, type MemoryBenchOptions } from './phases/memory.js';

type BenchOptions = DecodeBenchOptions &
  EndToEndBenchOptions &
  LatencyBenchOptions &
  MemoryBenchOptions &
  BacklogBenchOptions & {
    phases: Set<string>;
    /** When set, every dispatcher child writes a V8 CPU profile (--cpu-prof) here. */
    profileDir: string | undefined;
    /** Extra `eventide dispatch` arguments for every dispatcher child, e.g. "--max-inflight-events 2000". */
    dispatcherArgs: string[];
    /** Extra node flags for every dispatcher child (e.g. heap sizes). */
    dispatcherNodeFlags: string[];
  };

const PHASES = 'decode,e2e,latency,rss,backlog';

function benchOptions(): BenchOptions {
  const { text, number, given, givenNumber } = benchFlags([
    'only',
    'decode-rows',
    'decode-rounds',
    'e2e-rows',
    'concurrency',
    'batch-size',
    'latency-rate',
    'latency-load',
    'latency-seconds',
    'rss-rows',
    'rss-batch-size',
    'profile-dir',
    'dispatcher-args',
    'dispatcher-node-flags',
    'backlog-rows',
    'sibling-seconds',
    'sibling-load',
  ]);
  const phases = new Set(text('only', PHASES, PHASES).split(','));
  for (const phase of phases) if (!PHASES.split(',').includes(phase)) throw new Error(`--only: unknown phase "${phase}" (phases: ${PHASES})`);
  return {
    phases,
    decodeRows: number('decode-rows', 200_000, 50_000),
    decodeRounds: number('decode-rounds', 3, 2),
    e2eRows: number('e2e-rows', 100_000, 20_000),
    concurrencies: text('concurrency', '64,256', '64,256').split(',').map(Number),
    batchSize: number('batch-size', 100, 100),
    latencyRate: givenNumber('latency-rate'),
    latencyLoad: number('latency-load', 0.5, 0.5),
    latencySeconds: number('latency-seconds', 10, 3),
    rssRows: number('rss-rows', 1_000_000, 200_000),
    rssBatchSize: number('rss-batch-size', 100, 100),
    profileDir: given('profile-dir'),
    dispatcherArgs: (given('dispatcher-args') ?? '').split(' ').filter(Boolean),
    dispatcherNodeFlags: (given('dispatcher-node-flags') ?? '').split(' ').filter(Boolean),
    backlogRows: number('backlog-rows', 100_000, 20_000),
    siblingSeconds: number('sibling-seconds', 20, 10),
    siblingLoad: number('sibling-load', 0.25, 0.25),
  };
}

const options = benchOptions();
dispatcherDefaults.profileDir = options.profileDir;
dispatcherDefaults.extraArgs = options.dispatcherArgs;
dispatcherDefaults.nodeFlags = options.dispatcherNodeFlags;
runBench(`eventide dispatcher bench (phases ${[...options.phases].join(',')})`, async ({ pgServer, db, sink }) => {
  await db.query(SCHEMA);
  let rawDecodeRate: number | undefined;
  let unbatchedRates: UnbatchedRates | undefined;
  if (options.phases.has('decode')) rawDecodeRate = await benchDecode(pgServer, db, options, sink.url);
  if (options.phases.has('e2e')) unbatchedRates = await benchEndToEnd(pgServer, db, sink, options, rawDecodeRate);
  if (options.phases.has('latency')) await benchLatency(pgServer, db, sink, options, unbatchedRates);
  if (options.phases.has('rss')) await benchMemory(pgServer, db, sink, options);
  if (options.phases.has('backlog')) await benchBacklog(pgServer, db, sink, options);
});
