/**
 * 5. The slow path: the per-trigger durable backlog (eventide.backlog), each figure beside a baseline
 * measured in the same run (`--only backlog`; sizes from --backlog-rows, --sibling-seconds, --sibling-load).
 *
 * a. Its cost. One dispatcher (unbatched, c=64, --watch-config) on a slot of its own, the same sink as
 *    the other phases. The same N rows (--backlog-rows, transactions of 10k) are written three times
 *    while the dispatcher is frozen (SIGSTOP), so each time it wakes to N changes waiting in the WAL:
 *      direct   trigger on the fast path: woken → last receipt at the sink (the baseline);
 *      parked   trigger suspended (spec.suspend, manifest rewritten): woken → N rows of the trigger in
 *               eventide.backlog (count polled every 50 ms), nothing sent;
 *      drained  trigger resumed: the sink's first → last receipt of the N parked events (the resume
 *               itself waits for --watch-config's 2 s poll; that wait is noted, not counted);
 *      park + drain = N / (parked s + drained s).
 *    Each is printed as events/s and as a ratio to direct delivery.
 * b. A down sibling. One dispatcher with two triggers: `orders` to the sink (200 at once) and
 *    `orders_down` to a second sink. Both tables get the same steady stream of small transactions, at
 *    --sibling-load times the direct rate of (a) each, for --sibling-seconds. Baseline: the sibling's
 *    function answers 200. Measured: it answers 503, so its events retry (in memory for
 *    --retry-in-memory, 5 s by default), are parked and pile up in the backlog. Figure: the healthy
 *    trigger's commit → delivery latency (p50, p99; ce-time to receipt, millisecond resolution).
 */
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { stringify } from 'yaml';
import type { EmbeddedPostgres } from '../../common/embeddedPostgres.js';
import {
  atRateThatDoesNotQueue,
  cpuSecondsOf,
  createSlots,
  dropSlot,
  PUBLICATION,
  sinkHas,
  startBenchDispatcher,
  stopBenchDispatcher,
  TXN_ROWS,
  tableSql,
  triggerManifest,
  waitFor,
  writeAtRate,
  writeRows,
  writeWhileFrozen,
} from '../harness.js';
import { fmtMs, fmtRate, latencyRatio, notes, record } from '../report.js';
import { type LatencySummary, type Sink, startSink } from '../sink.js';

export interface BacklogBenchOptions {
  /** Rows of the slow-path run (a). */
  backlogRows: number;
  /** Length of each sibling run (b). */
  siblingSeconds: number;
  /** Rate of each table in (b), as a fraction of the direct rate measured in (a). */
  siblingLoad: number;
}

const SPEC = { concurrency: 64, batchSize: 1 };
const PARKED = 'eventide_dispatcher_events_parked_total';
const DRAINED = 'eventide_dispatcher_events_drained_total';

export async function benchBacklog(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: BacklogBenchOptions): Promise<void> {
  const directRate = await benchSlowPath(pgServer, db, sink, options);
  await benchDownSibling(pgServer, db, sink, options, directRate);
}

async function backlogCount(db: pg.Client, trigger: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM eventide.backlog WHERE trigger = $1', [trigger]);
  return rows[0]!.n;
}

// ---------------------------------------------------------------------------------------------
// a. Direct delivery vs park + drain
// ---------------------------------------------------------------------------------------------

/** Returns the direct delivery rate (events/s). */
async function benchSlowPath(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: BacklogBenchOptions): Promise<number> {
  const n = options.backlogRows;
  console.log(
    `\n[5a] slow path: ${n.toLocaleString('en-US')} inserts (transactions of ${TXN_ROWS / 1000}k) written while the dispatcher is frozen, ` +
      `three times: delivered directly, parked (trigger suspended), drained (resumed); unbatched, c=${SPEC.concurrency}`,
  );
  const slot = 'backlog';
  const trigger = 'bench/bench-orders';
  const manifest = (suspend: boolean) => triggerManifest(sink.url, SPEC, { spec: { suspend } });
  await createSlots(db, [slot]);
  const run = await startBenchDispatcher(pgServer.url, slot, [manifest(false)], { args: ['--watch-config'] }).catch(async (error: unknown) => {
    await dropSlot(db, slot);
    throw error;
  });
  const setSuspended = (suspend: boolean) => writeFileSync(run.manifestFile, stringify(manifest(suspend)));
  const metric = (name: string) => run.metric(name, { trigger });
  let direct: { seconds: number; cpu: number; parked: number };
  let park: { seconds: number; cpu: number; sent: number };
  let drain: { seconds: number; cpu: number; drained: number; resumeMs: number; emptyMs: number };
  try {
    // Warm-up on the fast path (JIT, connections to the sink), so the baseline is not measured cold.
    const warmRows = Math.max(1000, Math.round(n / 10));
    await sink.reset();
    await writeRows(db, warmRows);
    await sinkHas(sink, warmRows, run);

    // Direct: the baseline.
    await sink.reset();
    let parkedBefore = await metric(PARKED);
    let cpuBefore = cpuSecondsOf(run.pid);
    let { wokeAt } = await writeWhileFrozen(db, run, n);
    const directStats = await sinkHas(sink, n, run);
    direct = { seconds: (directStats.lastAt - wokeAt) / 1000, cpu: cpuSecondsOf(run.pid) - cpuBefore, parked: (await metric(PARKED)) - parkedBefore };
    console.log(`  direct: ${n.toLocaleString('en-US')} events delivered in ${direct.seconds.toFixed(2)} s`);

    // Parked: suspend, then the same rows again.
    setSuspended(true);
    await waitFor(
      'the trigger suspended',
      async () => (await metric('eventide_dispatcher_trigger_suspended')) === 1,
      30_000,
      () => run.output().slice(-4000),
    );
    await sink.reset();
    parkedBefore = await metric(PARKED);
    cpuBefore = cpuSecondsOf(run.pid);
    ({ wokeAt } = await writeWhileFrozen(db, run, n));
    const parkedAt = await waitFor(
      `${n} events parked`,
      async () => (await backlogCount(db, trigger)) >= n && Date.now(),
      15 * 60_000,
      () => run.output().slice(-4000),
      50,
    );
    park = { seconds: (parkedAt - wokeAt) / 1000, cpu: cpuSecondsOf(run.pid) - cpuBefore, sent: (await sink.stats()).requests };
    const parkedMetric = (await metric(PARKED)) - parkedBefore;
    console.log(`  parked: ${n.toLocaleString('en-US')} events in eventide.backlog in ${park.seconds.toFixed(2)} s (parked_total +${parkedMetric})`);

    // Drained: resume, the sink gets them back from the backlog.
    await sink.reset();
    const drainedBefore = await metric(DRAINED);
    cpuBefore = cpuSecondsOf(run.pid);
    const resumedAt = Date.now();
    setSuspended(false);
    const drainStats = await sinkHas(sink, n, run);
    const drainCpu = cpuSecondsOf(run.pid) - cpuBefore;
    const emptyAt = await waitFor(
      'an empty backlog',
      async () => (await backlogCount(db, trigger)) === 0 && Date.now(),
      60_000,
      () => run.output().slice(-4000),
      50,
    );
    drain = {
      seconds: (drainStats.lastAt - drainStats.firstAt) / 1000,
      cpu: drainCpu,
      drained: (await metric(DRAINED)) - drainedBefore,
      resumeMs: drainStats.firstAt - resumedAt,
      emptyMs: emptyAt - drainStats.lastAt,
    };
    console.log(`  drained: ${n.toLocaleString('en-US')} events delivered in ${drain.seconds.toFixed(2)} s (drained_total +${drain.drained})`);
  } finally {
    await stopBenchDispatcher(run);
    await dropSlot(db, slot);
  }

  const directRate = n / direct.seconds;
  const baseline = `direct delivery ${fmtRate(directRate, 'ev/s')}`;
  const figure = (name: string, seconds: number) => {
    const rate = n / seconds;
    record({ figure: `slow path: ${name}`, value: fmtRate(rate, 'ev/s'), baseline, ratio: rate / directRate, target: '' });
  };
  figure('parked (trigger suspended)', park.seconds);
  figure('drained (trigger resumed)', drain.seconds);
  figure('park + drain, end to end', park.seconds + drain.seconds);
  const perK = (cpu: number) => `${((cpu * 1000) / (n / 1000)).toFixed(0)} ms`;
  notes.push(
    `slow path (${n.toLocaleString('en-US')} rows, unbatched c=${SPEC.concurrency}): direct = dispatcher woken → last receipt, ${direct.seconds.toFixed(2)} s` +
      `${direct.parked > 0 ? ` (${direct.parked} of its events were parked on the way: share full)` : ', none parked'}; ` +
      `parked = woken → ${n.toLocaleString('en-US')} rows in eventide.backlog, ${park.seconds.toFixed(2)} s (${park.sent} requests sent meanwhile); ` +
      `drained = first → last receipt after the resume, ${drain.seconds.toFixed(2)} s (not counted: ${drain.resumeMs} ms from the manifest rewrite to the first drained receipt, ` +
      `mostly --watch-config's 2 s poll; the backlog was empty ${drain.emptyMs} ms after the last receipt)`,
  );
  notes.push(`slow path: dispatcher CPU per 1000 events: direct ${perK(direct.cpu)}, park ${perK(park.cpu)}, drain ${perK(drain.cpu)}`);
  return directRate;
}

// ---------------------------------------------------------------------------------------------
// b. A healthy trigger beside a down one
// ---------------------------------------------------------------------------------------------

interface SteadyRun {
  /** Commit → delivery latency of the healthy trigger's events. */
  latency: LatencySummary;
  healthyWritten: number;
  downWritten: number;
}

async function benchDownSibling(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: BacklogBenchOptions, directRate: number): Promise<void> {
  let rate = Math.max(10, Math.round(options.siblingLoad * directRate));
  const seconds = options.siblingSeconds;
  console.log(
    `\n[5b] a down sibling: one dispatcher, triggers on orders (function answers 200) and orders_down (200, then 503); ` +
      `each table ${rate} rows/s (${options.siblingLoad}× the direct rate of 5a) in small transactions for ${seconds} s; unbatched, c=${SPEC.concurrency}`,
  );
  const slot = 'siblings';
  const healthy = 'bench/bench-healthy';
  const down = 'bench/bench-down';
  // Retries enough that none is dead-lettered during the run: the down trigger's events wait in its backlog.
  const delivery = { retries: 100, backoff: { maxDelay: '1s' } };
  const cleanups: (() => unknown)[] = [];
  let baseline: SteadyRun;
  let measured: SteadyRun;
  let after: { downAttempts: number; downParked: number; downWaiting: number; healthyParked: number };
  try {
    await db.query(`${tableSql('orders_down')} ALTER PUBLICATION ${PUBLICATION} ADD TABLE public.orders_down;`);
    cleanups.push(() => db.query('DROP TABLE public.orders_down'));
    await createSlots(db, [slot]);
    cleanups.push(() => dropSlot(db, slot));
    const downSink = await startSink();
    cleanups.push(() => downSink.stop());
    const downWriter = new pg.Client({ connectionString: pgServer.url });
    await downWriter.connect();
    cleanups.push(() => downWriter.end());
    cleanups.push(() => db.query('DELETE FROM eventide.backlog WHERE trigger = $1', [down]));
    const run = await startBenchDispatcher(
      pgServer.url,
      slot,
      [triggerManifest(sink.url, SPEC, { name: 'bench-healthy', spec: { delivery } }), triggerManifest(downSink.url, SPEC, { name: 'bench-down', table: 'orders_down', spec: { delivery } })],
      // Only shortens the stop at the end, where the down trigger's attempts would otherwise get the default 10 s.
      { args: ['--drain-timeout', '1000'] },
    );
    cleanups.push(() => stopBenchDispatcher(run));

    /** Both tables at `rate` for `runSeconds`; resolves once the healthy sink has every event of its table. */
    const steadyRun = async (runSeconds: number, rate: number): Promise<SteadyRun> => {
      await sink.reset(true);
      await downSink.reset();
      const [healthyRows, downRows] = await Promise.all([writeAtRate(db, rate, runSeconds), writeAtRate(downWriter, rate, runSeconds, 'orders_down')]);
      const stats = await sinkHas(sink, healthyRows.written, run, 120_000);
      return { latency: stats.latency!, healthyWritten: healthyRows.written, downWritten: downRows.written };
    };

    // Baseline: the sibling's function is healthy too.
    const warm = await steadyRun(1, rate);
    await sinkHas(downSink, warm.downWritten, run, 60_000);
    const baselineRun = async (at: number) => {
      const steady = await steadyRun(seconds, at);
      await sinkHas(downSink, steady.downWritten, run, 60_000);
      return steady;
    };
    ({ run: baseline, rate } = await atRateThatDoesNotQueue(rate, baselineRun, (steady) => steady.latency));
    console.log(`  sibling up: ${baseline.healthyWritten} + ${baseline.downWritten} rows; healthy p50 ${fmtMs(baseline.latency.p50)}, p99 ${fmtMs(baseline.latency.p99)}`);

    // Measured: the sibling's function answers 503 from now on.
    const parkedBefore = { healthy: await run.metric(PARKED, { trigger: healthy }), down: await run.metric(PARKED, { trigger: down }) };
    await downSink.answer(503);
    measured = await steadyRun(seconds, rate);
    after = {
      downAttempts: (await downSink.stats()).requests,
      downParked: (await run.metric(PARKED, { trigger: down })) - parkedBefore.down,
      downWaiting: await backlogCount(db, down),
      healthyParked: (await run.metric(PARKED, { trigger: healthy })) - parkedBefore.healthy,
    };
    console.log(
      `  sibling down: ${measured.healthyWritten} + ${measured.downWritten} rows; healthy p50 ${fmtMs(measured.latency.p50)}, p99 ${fmtMs(measured.latency.p99)}; ` +
        `down trigger: ${after.downAttempts} attempts answered 503, ${after.downParked} events parked, ${after.downWaiting} waiting in eventide.backlog`,
    );
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        console.warn(`  cleanup after 5b failed: ${(error as Error).message}`);
      }
    }
  }

  const b = baseline.latency;
  const d = measured.latency;
  record({ figure: `sibling down: healthy p50 commit→delivered @${rate}/s`, value: fmtMs(d.p50), baseline: `sibling up ${fmtMs(b.p50)}`, ratio: latencyRatio(d.p50, b.p50), target: '' });
  record({ figure: `sibling down: healthy p99 commit→delivered @${rate}/s`, value: fmtMs(d.p99), baseline: `sibling up ${fmtMs(b.p99)}`, ratio: latencyRatio(d.p99, b.p99), target: '' });
  notes.push(
    `down sibling (${seconds} s at ${rate} rows/s per table, --sibling-load ${options.siblingLoad}× direct; baseline: the same two streams, the sibling's function answering 200): ` +
      `the down trigger's function was attempted ${after.downAttempts} times (all 503) for ${measured.downWritten} rows; ${after.downParked} events parked, ` +
      `${after.downWaiting} waiting in eventide.backlog at the end, ${Math.max(0, measured.downWritten - after.downParked)} not parked (retrying in memory, for up to --retry-in-memory, 5 s by default); ` +
      `the healthy trigger had ${after.healthyParked} of its events parked; healthy latency max: sibling up ${fmtMs(b.max)}, sibling down ${fmtMs(d.max)}`,
  );
}
