/**
 * 3. Latency, at a rate this machine can carry: --latency-load (0.5) times the unbatched capacity at
 *    c=64 measured in the same run, the e2e phase's figure when it ran, else a short unbatched drain
 *    (at most 20k inserts of the e2e kind) measured first here; --latency-rate, when given, is taken
 *    as it is. A fixed rate would measure the machine: past its unbatched capacity, events queue and
 *    the latency is the queue's; a derived rate that queues the unbatched run is halved, at most twice
 *    (atRateThatDoesNotQueue), and the halving printed. At that rate a writer commits small transactions
 *    (a few rows, every ~1-2 ms) for --latency-seconds after a 1 s warm-up, twice: to a dispatcher delivering unbatched
 *    and to one with batch.maxSize --batch-size (adaptive: a partial batch goes at once while a delivery
 *    slot is free), both c=64; the sink takes receipt time minus the event's ce-time (the commit time;
 *    same machine, same clock, millisecond resolution). Baselines: for unbatched, a bare undici client
 *    sending the same request open-loop at the same rate, the sink taking receipt time minus send
 *    time: the cost of the HTTP hop alone, which the dispatcher cannot go below; for batched, the
 *    unbatched dispatcher's latency at the same rate.
 */
import type pg from 'pg';
import { request } from 'undici';
import type { EmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { atRateThatDoesNotQueue, createSlots, dropSlot, sinkHas, sleep, startBenchDispatcher, stopBenchDispatcher, triggerManifest, writeAtRate } from '../harness.js';
import { fmtMs, fmtRate, latencyRatio, notes, record } from '../report.js';
import { bareAgent, type LatencySummary, replayOf, type Sink, type SinkRequest, summarize } from '../sink.js';
import { type UnbatchedRates, unbatchedCapacity } from './e2e.js';

export interface LatencyBenchOptions {
  /** --latency-rate as given; undefined: the rate is --latency-load times the unbatched capacity. */
  latencyRate: number | undefined;
  latencyLoad: number;
  latencySeconds: number;
  /** batch.maxSize of the batched run. */
  batchSize: number;
  /** Rows of the e2e phase; the capacity measured here drains at most CAPACITY_ROWS of them. */
  e2eRows: number;
}

const CONCURRENCY = 64;
const CAPACITY_ROWS = 20_000;

/** Open-loop bare client: POSTs at `rate`/s for `seconds`, each stamped with its send time. */
async function bareAtRate(sink: Sink, rate: number, seconds: number, outgoing: SinkRequest): Promise<number> {
  const agent = bareAgent();
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

/** The rate of the latency runs and where it came from. */
async function latencyRate(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: LatencyBenchOptions, e2eRates: UnbatchedRates | undefined): Promise<{ rate: number; source: string }> {
  let capacity = e2eRates?.get(CONCURRENCY);
  let from = `the e2e phase's unbatched c=${CONCURRENCY} rate`;
  if (options.latencyRate !== undefined) {
    const known = capacity === undefined ? '' : `; ${from} was ${fmtRate(capacity, 'ev/s')}`;
    return { rate: options.latencyRate, source: `--latency-rate, as given${known}` };
  }
  if (capacity === undefined) {
    const n = Math.min(options.e2eRows, CAPACITY_ROWS);
    console.log(`  capacity first (no e2e figure at c=${CONCURRENCY} in this run): ${n.toLocaleString('en-US')} inserts drained unbatched, c=${CONCURRENCY}`);
    capacity = await unbatchedCapacity(pgServer, db, sink, n, CONCURRENCY);
    from = `the unbatched c=${CONCURRENCY} rate of a ${n.toLocaleString('en-US')}-insert drain measured here`;
  }
  return { rate: Math.max(10, Math.round(options.latencyLoad * capacity)), source: `${options.latencyLoad}× ${from}, ${fmtRate(capacity, 'ev/s')}` };
}

interface DispatcherLatency {
  latency: LatencySummary;
  /** The first request the sink received, for the bare client to replay. */
  outgoing: SinkRequest;
  written: number;
  commitMs: number[];
}

/** One dispatcher (c=64, batch.maxSize `batchSize`) on a fresh slot; commit → delivery latency at `rate` for `seconds`. */
async function dispatcherLatency(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, rate: number, seconds: number, batchSize: number): Promise<DispatcherLatency> {
  const slot = batchSize > 1 ? `latency_b${batchSize}` : 'latency';
  await createSlots(db, [slot]);
  const run = await startBenchDispatcher(pgServer.url, slot, [triggerManifest(sink.url, { concurrency: CONCURRENCY, batchSize })]);
  try {
    await sink.reset(true);
    const warm = await writeAtRate(db, rate, 1);
    await sinkHas(sink, warm.written, run, 60_000);
    await sink.reset(true);
    const measured = await writeAtRate(db, rate, seconds);
    const stats = await sinkHas(sink, measured.written, run, 120_000);
    return { latency: stats.latency!, outgoing: replayOf(stats), written: measured.written, commitMs: measured.commitMs };
  } finally {
    await stopBenchDispatcher(run);
    await dropSlot(db, slot);
  }
}

export async function benchLatency(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: LatencyBenchOptions, e2eRates: UnbatchedRates | undefined): Promise<void> {
  const { latencySeconds: seconds, batchSize } = options;
  console.log(`\n[3] latency: small transactions for ${seconds} s (after a 1 s warm-up), unbatched and batch.maxSize ${batchSize}, c=${CONCURRENCY}`);
  const derived = await latencyRate(pgServer, db, sink, options, e2eRates);
  console.log(`  rate: ${fmtRate(derived.rate, 'rows/s')} (${derived.source})`);
  const measureUnbatched = (rate: number) => dispatcherLatency(pgServer, db, sink, rate, seconds, 1);
  // A rate given on the command line is measured as it is, queue or not.
  const {
    run: unbatched,
    rate,
    halvings,
  } = options.latencyRate === undefined
    ? await atRateThatDoesNotQueue(derived.rate, measureUnbatched, (run) => run.latency)
    : { run: await measureUnbatched(derived.rate), rate: derived.rate, halvings: [] };
  const source = [derived.source, ...halvings.map((h) => `unbatched ${h}`)].join('; ');
  const batched = await dispatcherLatency(pgServer, db, sink, rate, seconds, batchSize);
  await sink.reset(true);
  await bareAtRate(sink, rate, 1, unbatched.outgoing);
  await sink.reset(true);
  await bareAtRate(sink, rate, seconds, unbatched.outgoing);
  const bare = (await sink.stats()).latency!;

  const figures = (name: string, d: LatencySummary, baselineName: string, b: LatencySummary) => {
    const figure = (quantile: string) => `latency ${quantile} commit→delivered, ${name} @${rate}/s`;
    record({ figure: figure('p50'), value: fmtMs(d.p50), baseline: `${baselineName} ${fmtMs(b.p50)}`, ratio: latencyRatio(d.p50, b.p50), target: '' });
    record({ figure: figure('p99'), value: fmtMs(d.p99), baseline: `${baselineName} ${fmtMs(b.p99)}`, ratio: latencyRatio(d.p99, b.p99), target: '≤ 25 ms', check: d.p99 <= 25 });
  };
  figures('unbatched', unbatched.latency, 'bare undici POST', bare);
  figures(`batched (maxSize ${batchSize})`, batched.latency, 'unbatched dispatcher', unbatched.latency);

  const run = (r: DispatcherLatency) => {
    const c = summarize(r.commitMs)!;
    return (
      `${r.written} rows in ${r.commitMs.length} transactions (≈${(r.written / r.commitMs.length).toFixed(1)} rows each), max ${fmtMs(r.latency.max)}, ` +
      `writer commit round trip p50 ${c.p50.toFixed(2)} ms, p99 ${c.p99.toFixed(2)} ms`
    );
  };
  notes.push(`latency rate ${fmtRate(rate, 'rows/s')}: ${source}`);
  notes.push(`latency run, unbatched: ${run(unbatched)}; batched: ${run(batched)}; bare POST max ${fmtMs(bare.max)}`);
  notes.push(
    'latency baselines: for unbatched, a bare undici POST of the same request, open-loop at the same rate, send → sink receipt (the HTTP hop the ' +
      'dispatcher cannot avoid); for batched, the unbatched dispatcher at the same rate in the same run; latencies have millisecond resolution ' +
      '(ce-time and Date.now()), a reading under 1 ms counts as 0.5 ms in the ratios',
  );
}
