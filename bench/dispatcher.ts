/**
 * Dispatcher throughput, latency and memory, each printed next to a baseline measured in the same run
 * on the same data: `npm run bench [-- --quick] [--only decode,e2e,latency,rss,backlog] [--decode-rows 200000] [--decode-rounds 3]
 * [--e2e-rows 100000] [--concurrency 64,256] [--batch-size 100] [--latency-rate 5000]
 * [--latency-seconds 10] [--rss-rows 1000000] [--rss-batch-size 100] [--backlog-rows 100000]
 * [--sibling-seconds 20] [--sibling-load 0.25] [--profile-dir DIR]
 * [--dispatcher-args="--max-inflight-events 2000"]`. Every flag can also be given
 * as an environment variable: BENCH_QUICK=1, BENCH_E2E_ROWS=50000, ...
 *
 * One throwaway Postgres (wal_level=logical) and one table `orders` (bigserial key, int, numeric,
 * text, boolean, timestamptz, jsonb) under one publication. The sink (bench/sink.ts) is a minimal node:http
 * server answering 200 in a child process of its own, so it never shares an event loop with what it measures.
 * Shared helpers are in bench/harness.ts, the report in bench/report.ts.
 *
 * 1. Decode: N inserts are written first (transactions of 10k) to a slot created before them and
 *    never confirmed, so every reader reads the same N changes from the same point; every reader runs
 *    --decode-rounds times, interleaved, and its best run counts. Baseline: pg-logical-replication with
 *    its stock PgoutputPlugin (the raw decode rate of a stock client). Also shown: the same connection
 *    with a plugin that only reads the message tag, which turns out slower (see the note it prints). Measured:
 *    the dispatcher's ReplicationStream + text pgoutput plugin + RowDecoder (rows as to_jsonb JSON),
 *    and the same plus ChangeIntake (routing, event ids, payloads, window and watermark).
 * 2. End to end: `eventide dispatch` (bin/eventide.mjs, a child process) drains a backlog of M inserts
 *    to the sink, unbatched at each --concurrency and with batch.maxSize --batch-size. Rates are taken
 *    at the sink, first to last receipt. Baselines: a bare undici client (same Agent settings as the
 *    dispatcher's HttpSender) sending the dispatcher's own request (headers and body, captured at the
 *    sink) with the same concurrency; for batched delivery the raw decode rate of (1).
 * 3. Latency: a writer commits small transactions (a few rows, every ~1-2 ms) at --latency-rate rows/s
 *    for --latency-seconds after a 1 s warm-up; the sink takes receipt time minus the event's ce-time
 *    (the commit time; same machine, same clock, millisecond resolution). Baseline: a bare undici client
 *    sending the same request open-loop at the same rate, the sink taking receipt time minus send
 *    time: the cost of the HTTP hop alone, which the dispatcher cannot go below.
 * 4. Memory: a dispatcher child is started on an empty slot and its idle VmRSS read; it is then frozen
 *    (SIGSTOP) while R rows are written (transactions of 10k), woken, and sampled every 100 ms until
 *    the sink has every event. Peak = VmHWM. Baseline: the same process's idle RSS.
 * 5. Backlog (bench/backlogPhases.ts): events/s through park + drain (trigger suspended, then resumed)
 *    vs direct delivery of the same --backlog-rows rows; and a healthy trigger's commit→delivery
 *    latency beside a sibling whose function answers 503 vs beside a healthy one, both tables at
 *    --sibling-load times that direct rate.
 */
import { cpus } from 'node:os';
import pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import { Agent, request } from 'undici';
import { loadManifests } from '../api/v1alpha1/index.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../common/embeddedPostgres.js';
import { DEFAULT_DISPATCHER_RESOURCES } from '../operator/eventtrigger/dispatcher.js';
import { dispatcherNodeOptions } from '../operator/eventtrigger/nodeHeap.js';
import { silentLogger } from '../common/logger.js';
import { RowDecoder } from '../dispatcher/decode/rowDecoder.js';
import { createTextPgoutputPlugin, type PgoutputMessage } from '../dispatcher/decode/textPgoutputPlugin.js';
import { TypeCatalog } from '../dispatcher/decode/typeCatalog.js';
import { eventId } from '../dispatcher/delivery/eventIds.js';
import { ChangeIntake } from '../dispatcher/pipeline/changeIntake.js';
import { buildRoutes } from '../dispatcher/routing/triggerMatcher.js';
import { ReplicationStream, type StreamConsumer } from '../dispatcher/source/replicationStream.js';
import { removeDir, writeManifests } from '../test/harness/dispatcherFixture.js';
import { benchBacklog } from './backlogPhases.js';
import { benchFlags } from './flags.js';
import {
  createSlots,
  cpuSecondsOf,
  dispatcherDefaults,
  dropSlot,
  memoryOf,
  PG_SETTINGS,
  PUBLICATION,
  SCHEMA,
  sleep,
  startBenchDispatcher,
  stopBenchDispatcher,
  triggerManifest,
  TXN_ROWS,
  waitFor,
  writeAtRate,
  writeRows,
} from './harness.js';
import { fmtMs, fmtRate, latencyRatio, notes, printTable, record } from './report.js';
import { startSink, summarize, type Sink, type SinkStats } from './sink.js';

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

interface BenchOptions {
  phases: Set<string>;
  decodeRows: number;
  decodeRounds: number;
  e2eRows: number;
  concurrencies: number[];
  batchSize: number;
  latencyRate: number;
  latencySeconds: number;
  rssRows: number;
  rssBatchSize: number;
  /** When set, every dispatcher child writes a V8 CPU profile (--cpu-prof) here. */
  profileDir: string | undefined;
  /** Extra `eventide dispatch` arguments for every dispatcher child, e.g. "--max-inflight-events 2000". */
  dispatcherArgs: string[];
  backlogRows: number;
  siblingSeconds: number;
  siblingLoad: number;
}

const PHASES = 'decode,e2e,latency,rss,backlog';

function benchOptions(): BenchOptions {
  const { text, number, given } = benchFlags([
    'only',
    'decode-rows',
    'decode-rounds',
    'e2e-rows',
    'concurrency',
    'batch-size',
    'latency-rate',
    'latency-seconds',
    'rss-rows',
    'rss-batch-size',
    'profile-dir',
    'dispatcher-args',
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
    latencyRate: number('latency-rate', 5000, 5000),
    latencySeconds: number('latency-seconds', 10, 3),
    rssRows: number('rss-rows', 1_000_000, 200_000),
    rssBatchSize: number('rss-batch-size', 100, 100),
    profileDir: given('profile-dir'),
    dispatcherArgs: (given('dispatcher-args') ?? '').split(' ').filter(Boolean),
    backlogRows: number('backlog-rows', 100_000, 20_000),
    siblingSeconds: number('sibling-seconds', 20, 10),
    siblingLoad: number('sibling-load', 0.25, 0.25),
  };
}

// ---------------------------------------------------------------------------------------------
// 1. Decode
// ---------------------------------------------------------------------------------------------

/** Reads a slot with pg-logical-replication and a given plugin until `isDone` says the N-th change came. */
async function readWithLibrary(url: string, slot: string, plugin: PgoutputPlugin, isDone: (message: unknown) => boolean): Promise<number> {
  const service = new LogicalReplicationService({ connectionString: url }, { acknowledge: { auto: false, timeoutSeconds: 0 } });
  let started = 0;
  const finished = new Promise<number>((resolve, reject) => {
    service.on('error', reject);
    service.on('data', (_lsn: string, message: unknown) => {
      started ||= performance.now();
      if (isDone(message)) resolve((performance.now() - started) / 1000);
    });
  });
  const subscribed = service.subscribe(plugin, slot).catch(() => undefined);
  const seconds = await finished;
  await service.stop();
  await subscribed;
  service.removeAllListeners();
  return seconds;
}

/** Bare stream: the plugin only reads the tag byte of each message. */
function bareRead(url: string, slot: string, n: number): Promise<number> {
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION] });
  (plugin as unknown as { parse(buffer: Buffer): number }).parse = (buffer) => buffer[0]!;
  let count = 0;
  return readWithLibrary(url, slot, plugin, (tag) => tag === 0x49 && ++count === n);
}

/** The library's stock pgoutput parser (pg's type parsers over every value). */
function stockRead(url: string, slot: string, n: number): Promise<number> {
  let count = 0;
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION] });
  return readWithLibrary(url, slot, plugin, (message) => (message as { tag: string }).tag === 'insert' && ++count === n);
}

/**
 * The dispatcher's path: ReplicationStream (its queue and backpressure) + text pgoutput plugin +
 * RowDecoder. With `intake`, each change also goes through ChangeIntake (routing, ids, payloads,
 * window, watermark) and its event is settled at once.
 */
async function dispatcherRead(url: string, slot: string, n: number, intakeManifest?: string): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const query = (sql: string, params: unknown[]) => pool.query(sql, params);
  const decoder = new RowDecoder(new TypeCatalog(query), query);
  let count = 0;
  let started = 0;
  let done!: (seconds: number) => void;
  const finished = new Promise<number>((resolve) => (done = resolve));
  const counted = () => {
    if (++count === n) done((performance.now() - started) / 1000);
  };
  let consumer: StreamConsumer<PgoutputMessage>;
  if (intakeManifest) {
    const routes = buildRoutes(loadManifests([intakeManifest]).triggers);
    const intake: ChangeIntake<PgoutputMessage> = new ChangeIntake<PgoutputMessage>({
      decoder,
      routes: () => routes,
      eventId,
      startLsn: 0n,
      logger: silentLogger(),
      dispatch: (event) => {
        intake.settle(event);
        counted();
      },
    });
    consumer = {
      handle: (item) => {
        started ||= performance.now();
        return intake.handle(item);
      },
      confirmable: () => 0n,
      resumeFrom: () => intake.resumeFrom(),
      connecting: () => {
        decoder.reset();
        intake.connecting();
      },
    };
  } else {
    consumer = {
      handle: async (item) => {
        if (item.kind !== 'message') return;
        started ||= performance.now();
        const message = item.message;
        if (decoder.begin(message) || decoder.commit(message)) return;
        for (const change of await decoder.decode(message)) if (change.newJson !== null) counted();
      },
      confirmable: () => 0n,
      resumeFrom: () => 0n,
      connecting: () => decoder.reset(),
    };
  }
  const stream = new ReplicationStream<PgoutputMessage>(
    { connection: { connectionString: url }, slotName: slot, createPlugin: () => createTextPgoutputPlugin([PUBLICATION]), logger: silentLogger() },
    consumer,
  );
  const running = stream.run();
  const seconds = await finished;
  await stream.stop();
  await running;
  await pool.end();
  return seconds;
}

async function benchDecode(pgServer: EmbeddedPostgres, db: pg.Client, options: BenchOptions, sinkUrl: string): Promise<number> {
  const n = options.decodeRows;
  const rounds = options.decodeRounds;
  console.log(`\n[1] decode: ${n.toLocaleString('en-US')} inserts written before reading; ${rounds} rounds of every reader, best of each`);
  // Nothing is ever confirmed on this slot, so every reader starts from the same point and reads the same changes.
  const slot = 'decode';
  await createSlots(db, [slot]);
  const writeSeconds = await writeRows(db, n);
  console.log(`  wrote ${n.toLocaleString('en-US')} rows in ${writeSeconds.toFixed(1)} s`);
  // Background work on the fresh rows (autovacuum, checkpoint) would otherwise compete with the first readers.
  await db.query('VACUUM ANALYZE orders');
  await db.query('CHECKPOINT');
  const manifest = writeManifests([triggerManifest(sinkUrl, { concurrency: 64, batchSize: 1 })]);
  const readers: [string, () => Promise<number>][] = [
    ['bare', () => bareRead(pgServer.url, slot, n)],
    ['stock', () => stockRead(pgServer.url, slot, n)],
    ['text', () => dispatcherRead(pgServer.url, slot, n)],
    ['intake', () => dispatcherRead(pgServer.url, slot, n, manifest)],
  ];
  const best = new Map<string, number>();
  try {
    await bareRead(pgServer.url, slot, n); // warm-up: caches (Postgres's, the OS's, V8's)
    for (let round = 0; round < rounds; round++) {
      const rates: string[] = [];
      for (const [name, read] of readers) {
        const rate = n / (await read());
        best.set(name, Math.max(best.get(name) ?? 0, rate));
        rates.push(`${name} ${fmtRate(rate, 'ch/s')}`);
      }
      console.log(`  round ${round + 1}: ${rates.join(', ')}`);
    }
  } finally {
    removeDir(manifest.replace(/\/[^/]+$/, ''));
    await dropSlot(db, slot);
  }
  const bare = best.get('bare')!;
  const stock = best.get('stock')!;
  const text = best.get('text')!;
  const intake = best.get('intake')!;
  const baseline = `stock PgoutputPlugin ${fmtRate(stock, 'ch/s')}`;
  record({ figure: 'decode: bare stream (tag byte only)', value: fmtRate(bare, 'ch/s'), baseline, ratio: bare / stock, target: '(reference)' });
  record({ figure: 'decode: dispatcher (text plugin + RowDecoder → JSON)', value: fmtRate(text, 'ch/s'), baseline, ratio: text / stock, target: '' });
  record({ figure: 'decode: + ChangeIntake (routing, ids, payloads)', value: fmtRate(intake, 'ch/s'), baseline, ratio: intake / stock, target: '' });
  notes.push(
    'decode baseline is the stock PgoutputPlugin, not the bare reader: a reader that keeps up with the walsender makes it ' +
      'flush one socket write per message, which slows the walsender itself (when tried on a 2-core machine, adding 2 µs of ' +
      'busy-work per message to the bare reader roughly doubled its rate), so the bare reader is no ceiling',
  );
  return stock;
}

// ---------------------------------------------------------------------------------------------
// 2. End to end
// ---------------------------------------------------------------------------------------------

/** Delivers the slot's backlog of `n` events; the rate is taken at the sink, first to last receipt. */
async function drainBacklog(
  url: string,
  sink: Sink,
  slot: string,
  n: number,
  spec: { concurrency: number; batchSize: number },
): Promise<{ rate: number; cpuPerK: number; sample: SinkStats['sample'] }> {
  await sink.reset();
  const run = await startBenchDispatcher(url, slot, [triggerManifest(sink.url, spec)]);
  const pid = run.pid;
  const cpuBefore = cpuSecondsOf(pid);
  try {
    const stats = await waitFor(
      `${n} events at the sink`,
      async () => {
        const s = await sink.stats();
        return s.events >= n && s;
      },
      15 * 60_000,
      () => run.output().slice(-4000),
    );
    const cpu = cpuSecondsOf(pid) - cpuBefore;
    return { rate: n / ((stats.lastAt - stats.firstAt) / 1000), cpuPerK: (cpu * 1000) / (n / 1000), sample: stats.sample };
  } finally {
    await stopBenchDispatcher(run);
  }
}

/** A bare undici client: `total` POSTs of the same request with `concurrency` in flight. Rate taken at the sink. */
async function bareClient(sink: Sink, total: number, concurrency: number, outgoing: { headers: Record<string, string>; body: string }): Promise<{ rate: number; cpuPerK: number }> {
  await sink.reset();
  const cpuBefore = process.cpuUsage();
  // The same Agent settings as the dispatcher's HttpSender.
  const agent = new Agent({ connections: 128, keepAliveTimeout: 30_000, pipelining: 1 });
  let next = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      const response = await request(sink.url, { method: 'POST', headers: outgoing.headers, body: outgoing.body, dispatcher: agent });
      await response.body.dump();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const cpu = process.cpuUsage(cpuBefore);
  await agent.close();
  const stats = await sink.stats();
  return { rate: stats.events / ((stats.lastAt - stats.firstAt) / 1000), cpuPerK: (cpu.user + cpu.system) / 1000 / (total / 1000) };
}

async function benchEndToEnd(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: BenchOptions, rawDecodeRate: number | undefined): Promise<void> {
  const n = options.e2eRows;
  console.log(`\n[2] end to end: a backlog of ${n.toLocaleString('en-US')} inserts drained by \`eventide dispatch\` to the sink`);
  const configs = [
    ...options.concurrencies.map((concurrency) => ({ slot: `e2e_c${concurrency}`, concurrency, batchSize: 1 })),
    { slot: `e2e_b${options.batchSize}`, concurrency: 64, batchSize: options.batchSize },
  ];
  await createSlots(db, configs.map((c) => c.slot));
  const writeSeconds = await writeRows(db, n);
  console.log(`  wrote ${n.toLocaleString('en-US')} rows in ${writeSeconds.toFixed(1)} s`);
  for (const config of configs) {
    const result = await drainBacklog(pgServer.url, sink, config.slot, n, config);
    await dropSlot(db, config.slot);
    notes.push(`e2e ${config.batchSize > 1 ? `batch ${config.batchSize}` : `unbatched c=${config.concurrency}`}: dispatcher used ${result.cpuPerK.toFixed(0)} ms CPU per 1000 events`);
    if (config.batchSize > 1) {
      record({
        figure: `e2e batched (maxSize ${config.batchSize}, c=${config.concurrency})`,
        value: fmtRate(result.rate, 'ev/s'),
        baseline: rawDecodeRate ? `stock PgoutputPlugin ${fmtRate(rawDecodeRate, 'ch/s')}` : '(run with decode)',
        ratio: rawDecodeRate ? result.rate / rawDecodeRate : NaN,
        target: '≥ 0.60×',
        ...(rawDecodeRate ? { check: result.rate / rawDecodeRate >= 0.6 } : {}),
      });
      continue;
    }
    const outgoing = result.sample ?? { headers: { 'content-type': 'application/json' }, body: '{}' };
    const { rate: bare, cpuPerK: bareCpuPerK } = await bareClient(sink, n, config.concurrency, outgoing);
    notes.push(`bare undici c=${config.concurrency}: the bench process used ${bareCpuPerK.toFixed(0)} ms CPU per 1000 requests`);
    record({
      figure: `e2e unbatched (c=${config.concurrency})`,
      value: fmtRate(result.rate, 'ev/s'),
      baseline: `bare undici c=${config.concurrency} ${fmtRate(bare, 'req/s')}`,
      ratio: result.rate / bare,
      target: '≥ 0.80×',
      check: result.rate / bare >= 0.8,
    });
    if (config === configs[0]) notes.push(`unbatched request: ${Object.keys(outgoing.headers).length} headers, ${outgoing.body.length} bytes of body`);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Latency
// ---------------------------------------------------------------------------------------------

/** Open-loop bare client: POSTs at `rate`/s for `seconds`, each stamped with its send time. */
async function bareAtRate(sink: Sink, rate: number, seconds: number, outgoing: { headers: Record<string, string>; body: string }): Promise<number> {
  const agent = new Agent({ connections: 128, keepAliveTimeout: 30_000, pipelining: 1 });
  const inFlight = new Set<Promise<void>>();
  const send = () => {
    const p = request(sink.url, { method: 'POST', headers: { ...outgoing.headers, 'x-bench-sent-at': String(Date.now()) }, body: outgoing.body, dispatcher: agent })
      .then((r) => r.body.dump())
      .then(() => void inFlight.delete(p));
    inFlight.add(p);
  };
  const started = performance.now();
  let sent = 0;
  for (;;) {
    const elapsed = performance.now() - started;
    if (elapsed >= seconds * 1000) break;
    const due = Math.floor((rate * elapsed) / 1000) - sent;
    for (let i = 0; i < due; i++) send();
    sent += Math.max(0, due);
    await sleep(1);
  }
  await Promise.all(inFlight);
  await agent.close();
  return sent;
}

async function benchLatency(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: BenchOptions): Promise<void> {
  const { latencyRate: rate, latencySeconds: seconds } = options;
  console.log(`\n[3] latency: ${rate} rows/s in small transactions for ${seconds} s (after a 1 s warm-up), unbatched, c=64`);
  const slot = 'latency';
  await createSlots(db, [slot]);
  const run = await startBenchDispatcher(pgServer.url, slot, [triggerManifest(sink.url, { concurrency: 64, batchSize: 1 })]);
  let dispatcherStats: SinkStats;
  let commits: number[];
  try {
    await sink.reset(true);
    const warm = await writeAtRate(db, rate, 1);
    await waitFor('the warm-up events', async () => (await sink.stats()).events >= warm.written, 60_000);
    await sink.reset(true);
    const measured = await writeAtRate(db, rate, seconds);
    commits = measured.commitMs;
    dispatcherStats = await waitFor(
      'every event of the latency run',
      async () => {
        const s = await sink.stats();
        return s.events >= measured.written && s;
      },
      120_000,
      () => run.output().slice(-4000),
    );
    notes.push(`latency run: ${measured.written} rows in ${commits.length} transactions (≈${(measured.written / commits.length).toFixed(1)} rows each)`);
  } finally {
    await stopBenchDispatcher(run);
    await dropSlot(db, slot);
  }
  const outgoing = dispatcherStats.sample ?? { headers: { 'content-type': 'application/json' }, body: '{}' };
  await sink.reset(true);
  await bareAtRate(sink, rate, 1, outgoing);
  await sink.reset(true);
  await bareAtRate(sink, rate, seconds, outgoing);
  const bareStats = await sink.stats();
  const d = dispatcherStats.latency!;
  const b = bareStats.latency!;
  const c = summarize(commits)!;
  record({ figure: `latency p50 commit→delivered @${rate}/s`, value: fmtMs(d.p50), baseline: `bare undici POST ${fmtMs(b.p50)}`, ratio: latencyRatio(d.p50, b.p50), target: '' });
  record({
    figure: `latency p99 commit→delivered @${rate}/s`,
    value: fmtMs(d.p99),
    baseline: `bare undici POST ${fmtMs(b.p99)}`,
    ratio: latencyRatio(d.p99, b.p99),
    target: '≤ 25 ms',
    check: d.p99 <= 25,
  });
  notes.push(`latency max: dispatcher ${fmtMs(d.max)}, bare POST ${fmtMs(b.max)}; writer commit round trip p50 ${c.p50.toFixed(2)} ms, p99 ${c.p99.toFixed(2)} ms`);
  notes.push(
    'latency baseline: a bare undici POST of the same request, open-loop at the same rate, send → sink receipt (the HTTP hop the dispatcher ' +
      'cannot avoid); latencies have millisecond resolution (ce-time and Date.now()), a reading under 1 ms counts as 0.5 ms in the ratios',
  );
}

// ---------------------------------------------------------------------------------------------
// 4. Memory
// ---------------------------------------------------------------------------------------------

/**
 * The V8 flags the operator gives dispatcher pods with the default resources (NODE_OPTIONS from the
 * memory limit: a small young generation, old space capped at half the limit), so the second memory
 * run measures the dispatcher as deployed.
 */
const MEMORY_CAPPED_V8_FLAGS = dispatcherNodeOptions(DEFAULT_DISPATCHER_RESOURCES).split(' ');

async function benchMemory(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: BenchOptions): Promise<void> {
  for (const v8Flags of [[], MEMORY_CAPPED_V8_FLAGS]) await benchMemoryWith(pgServer, db, sink, options, v8Flags);
}

async function benchMemoryWith(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: BenchOptions, v8Flags: readonly string[]): Promise<void> {
  const n = options.rssRows;
  const batchSize = options.rssBatchSize;
  const flagsLabel = v8Flags.length ? `operator's NODE_OPTIONS for ${DEFAULT_DISPATCHER_RESOURCES.limits?.memory ?? 'no'} limit (${v8Flags.join(' ')})` : 'default V8 heap';
  console.log(`\n[4] memory (${flagsLabel}): backlog of ${n.toLocaleString('en-US')} inserts (${Math.ceil(n / TXN_ROWS)} transactions), batch ${batchSize}, c=64`);
  const slot = 'rss';
  await createSlots(db, [slot]);
  await sink.reset();
  const run = await startBenchDispatcher(pgServer.url, slot, [triggerManifest(sink.url, { concurrency: 64, batchSize })], { v8Flags });
  const pid = run.pid;
  try {
    await sleep(2000);
    const idle = memoryOf(pid);
    console.log(`  idle: VmRSS ${idle.rss.toFixed(1)} MiB`);
    process.kill(pid, 'SIGSTOP');
    let writeSeconds: number;
    try {
      writeSeconds = await writeRows(db, n);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    console.log(`  wrote ${n.toLocaleString('en-US')} rows in ${writeSeconds.toFixed(1)} s while the dispatcher was frozen`);
    let maxRss = 0;
    const sampler = setInterval(() => (maxRss = Math.max(maxRss, memoryOf(pid).rss)), 100);
    let stats: SinkStats;
    try {
      stats = await waitFor(
        `${n} events at the sink`,
        async () => {
          const s = await sink.stats();
          return s.events >= n && s;
        },
        20 * 60_000,
        () => run.output().slice(-4000),
      );
    } finally {
      clearInterval(sampler);
    }
    const peak = memoryOf(pid);
    record({
      figure: `peak RSS, ${(n / 1e6).toLocaleString('en-US')}M-event backlog (batch ${batchSize}), ${flagsLabel}`,
      value: `${peak.hwm.toFixed(1)} MiB`,
      baseline: `idle dispatcher ${idle.rss.toFixed(1)} MiB`,
      ratio: peak.hwm / idle.rss,
      target: '≤ 150 MB',
      check: peak.hwm * 1.048576 <= 150,
    });
    notes.push(`memory run (${flagsLabel}): highest sampled VmRSS ${maxRss.toFixed(1)} MiB; backlog drained at ${fmtRate(n / ((stats.lastAt - stats.firstAt) / 1000), 'ev/s')}`);
  } finally {
    await stopBenchDispatcher(run);
    await dropSlot(db, slot);
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const options = benchOptions();
  dispatcherDefaults.profileDir = options.profileDir;
  dispatcherDefaults.extraArgs = options.dispatcherArgs;
  console.log(
    `eventide dispatcher bench: ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}; ` +
      `phases ${[...options.phases].join(',')}`,
  );
  const started = Date.now();
  const pgServer = await startEmbeddedPostgres({ settings: PG_SETTINGS });
  const sink = await startSink();
  const db = new pg.Client({ connectionString: pgServer.url });
  try {
    await db.connect();
    const version = await db.query<{ server_version: string }>('SHOW server_version');
    console.log(`PostgreSQL ${version.rows[0]?.server_version}`);
    await db.query(SCHEMA);
    let rawDecodeRate: number | undefined;
    if (options.phases.has('decode')) rawDecodeRate = await benchDecode(pgServer, db, options, sink.url);
    if (options.phases.has('e2e')) await benchEndToEnd(pgServer, db, sink, options, rawDecodeRate);
    if (options.phases.has('latency')) await benchLatency(pgServer, db, sink, options);
    if (options.phases.has('rss')) await benchMemory(pgServer, db, sink, options);
    if (options.phases.has('backlog')) await benchBacklog(pgServer, db, sink, options);
  } finally {
    await db.end().catch(() => undefined);
    sink.stop();
    await pgServer.destroy();
  }
  printTable();
  console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
