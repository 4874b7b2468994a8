/**
 * Backfill throughput, its cost to live changes, its memory and WAL, each printed next to a baseline
 * measured in the same run: `npm run bench:backfill [-- --quick] [--rows 1000000] [--batch-size 1000]
 * [--live-rows 200000] [--live-load 0.1] [--latency-seconds 10] [--trigger-batch 100] [--concurrency 64]
 * [--profile-dir DIR]`. Every flag can also be given as an environment variable (BENCH_ROWS=50000, ...);
 * --quick: 50k rows, 20k live rows, 3 s latency windows.
 *
 * One throwaway Postgres, the table `orders` of bench/harness.ts with --rows rows written (transactions
 * of 10k) before the slot is made, so the stream never carries them; one `eventide dispatch` child with
 * --watch-config and one EventTrigger on `orders` (inserts; batch.maxSize --trigger-batch, concurrency
 * --concurrency, as the batched end-to-end bench) to the bench's sink (bench/sink.ts: 200 at once, in a
 * child process; it counts a backfill's reads apart from live events and takes no latency of reads).
 * A warm-up of live rows first (JIT, connections), then:
 *
 * 1. Throughput. Measured: a Backfill (--batch-size rows per chunk) is added to the manifest file;
 *    rows read / (manifest written → phase Complete in GET /state's `backfills`). The time includes the
 *    dispatcher noticing the file (it looks every 2 s); the note splits it. Baseline: the same
 *    dispatcher's batched live delivery: --live-rows inserts in transactions of 1000 written while it
 *    is caught up, events / (first → last receipt at the sink).
 * 2. Live latency. A writer commits small transactions (bench/harness.ts writeAtRate) at --live-load
 *    times the live rate of (1), in 0.5 s slices; the sink takes receipt time minus ce-time (the commit
 *    time), as bench/dispatcher.ts's latency phase. Baseline: live alone for --latency-seconds. Measured:
 *    the same while a second Backfill of the whole (by then larger) table runs; the writer starts once
 *    the first read arrived and stops after --latency-seconds or when the backfill completes.
 * 3. Memory and WAL, of the backfill of (1). Peak RSS: VmHWM, reset (clear_refs) when the backfill is
 *    added; baseline: the dispatcher's idle VmRSS before anything was sent (bench/dispatcher.ts's
 *    memory baseline). WAL: pg_current_wal_lsn() − the slot's confirmed_flush_lsn when /state says
 *    Complete (and the highest sampled every 250 ms); baseline: the WAL written during the backfill.
 *    The same for the backfill of (2), which runs under live writes.
 */

import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { stringify } from 'yaml';
import type { BackfillStateReport, DispatcherStateReport } from '../common/dispatcherState.js';
import type { EmbeddedPostgres } from '../common/embeddedPostgres.js';
import { runBench } from './benchMain.js';
import { benchFlags } from './flags.js';
import {
  cpuSecondsOf,
  createSlots,
  type DispatcherRun,
  dispatcherDefaults,
  dropSlot,
  memoryOf,
  resetPeakRss,
  SCHEMA,
  sinkHas,
  sleep,
  startBenchDispatcher,
  stopBenchDispatcher,
  triggerManifest,
  waitFor,
  writeAtRate,
  writeRows,
} from './harness.js';
import { fmtMs, fmtRate, latencyRatio, notes, record } from './report.js';
import { type LatencySummary, type Sink, summarize } from './sink.js';

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

interface BackfillBenchOptions {
  /** Rows in the table before the first backfill. */
  rows: number;
  /** The Backfill's batchSize: rows per chunk. */
  batchSize: number;
  /** Rows of the live baseline, written in transactions of LIVE_TXN_ROWS. */
  liveRows: number;
  /** The live writer's rate in (2), as a fraction of the live rate measured in (1). */
  liveLoad: number;
  latencySeconds: number;
  triggerBatch: number;
  concurrency: number;
  profileDir: string | undefined;
}

function backfillOptions(): BackfillBenchOptions {
  const { number, given } = benchFlags(['rows', 'batch-size', 'live-rows', 'live-load', 'latency-seconds', 'trigger-batch', 'concurrency', 'profile-dir']);
  return {
    rows: number('rows', 1_000_000, 50_000),
    batchSize: number('batch-size', 1000, 1000),
    liveRows: number('live-rows', 200_000, 20_000),
    liveLoad: number('live-load', 0.1, 0.1),
    latencySeconds: number('latency-seconds', 10, 3),
    triggerBatch: number('trigger-batch', 100, 100),
    concurrency: number('concurrency', 64, 64),
    profileDir: given('profile-dir'),
  };
}

const SLOT = 'backfill';
const NAMESPACE = 'bench';
const LIVE_TXN_ROWS = 1000;
const BACKFILL_TIMEOUT_MS = 60 * 60_000;
const SAMPLE_MS = 250;
/** The live writer checks between slices whether the backfill still runs. */
const SLICE_SECONDS = 0.5;

/** What every phase uses: the server, a writer and a monitoring connection, the sink, the dispatcher and its trigger. */
interface Bench {
  pgServer: EmbeddedPostgres;
  /** The writer's connection. */
  db: pg.Client;
  /** A second connection for readings taken while the writer writes. */
  monitor: pg.Client;
  sink: Sink;
  run: DispatcherRun;
  trigger: Record<string, unknown>;
  options: BackfillBenchOptions;
  idleRss: number;
}

// ---------------------------------------------------------------------------------------------
// Backfills through the manifest file and /state
// ---------------------------------------------------------------------------------------------

function backfillManifest(name: string, triggerName: string, batchSize: number): Record<string, unknown> {
  return { apiVersion: 'eventide.dev/v1alpha1', kind: 'Backfill', metadata: { name, namespace: NAMESPACE }, spec: { trigger: { name: triggerName }, batchSize } };
}

/** Rewrites the manifest file the dispatcher watches (--watch-config): the trigger and these backfills. */
function configure(bench: Bench, backfills: Record<string, unknown>[]): void {
  writeFileSync(bench.run.manifestFile, [bench.trigger, ...backfills].map((m) => stringify(m)).join('---\n'));
}

async function backfillState(run: DispatcherRun, name: string): Promise<BackfillStateReport | undefined> {
  const state = (await (await fetch(`http://127.0.0.1:${run.port}/state`)).json()) as DispatcherStateReport;
  return state.backfills?.[`${NAMESPACE}/${name}`];
}

/** Adds a backfill to the manifest file; returns when (Date.now()) the file was written. */
function addBackfill(bench: Bench, name: string): number {
  const triggerName = (bench.trigger.metadata as { name: string }).name;
  configure(bench, [backfillManifest(name, triggerName, bench.options.batchSize)]);
  return Date.now();
}

/** Polls /state until the backfill has ended; throws unless it completed. Notes what it said it waited for on the way. */
async function untilComplete(bench: Bench, name: string): Promise<BackfillStateReport> {
  const messages = new Set<string>();
  let last: BackfillStateReport | undefined;
  const ended = await waitFor(
    `backfill ${name} to end`,
    async () => {
      last = await backfillState(bench.run, name);
      if (last?.message && last.phase === 'Running') messages.add(last.message);
      return last && ['Complete', 'Failed', 'Cancelled'].includes(last.phase) && last;
    },
    BACKFILL_TIMEOUT_MS,
    () => `${JSON.stringify(last)}\n${bench.run.output().slice(-4000)}`,
  );
  if (ended.phase !== 'Complete') throw new Error(`backfill ${name} ended ${ended.phase}: ${ended.message ?? ''}`);
  if (messages.size > 0) notes.push(`backfill ${name}: /state said while running: ${[...messages].map((m) => JSON.stringify(m)).join('; ')}`);
  return ended;
}

// ---------------------------------------------------------------------------------------------
// Readings: WAL, memory, CPU
// ---------------------------------------------------------------------------------------------

interface WalReading {
  /** pg_current_wal_lsn(), as bytes. */
  at: number;
  /** pg_current_wal_lsn() − confirmed_flush_lsn of the slot. */
  retained: number;
  /** pg_current_wal_lsn() − restart_lsn of the slot: the WAL the server keeps for it. */
  kept: number;
}

async function walReading(client: pg.Client): Promise<WalReading> {
  const { rows } = await client.query<WalReading>(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS at,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS retained,
            pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS kept
       FROM pg_replication_slots WHERE slot_name = $1`,
    [SLOT],
  );
  return rows[0]!;
}

const fmtBytes = (bytes: number) => (bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`);

interface Samples {
  maxRss: number;
  maxRetained: number;
  maxKept: number;
}

/** Samples the dispatcher's RSS and the slot's retained WAL until stopped; the highest of each. */
function startSampler(bench: Bench): { stop(): Promise<Samples> } {
  let maxRss = 0;
  let maxRetained = 0;
  let maxKept = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      maxRss = Math.max(maxRss, memoryOf(bench.run.pid).rss);
      const wal = await walReading(bench.monitor);
      maxRetained = Math.max(maxRetained, wal.retained);
      maxKept = Math.max(maxKept, wal.kept);
      await sleep(SAMPLE_MS);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return { maxRss, maxRetained, maxKept };
    },
  };
}

/** Dispatcher CPU over a span: ms per 1000 rows, and cores busy on average. */
function cpuOver(bench: Bench, cpuBefore: number, seconds: number, rows: number): { perK: number; cores: number } {
  const cpu = cpuSecondsOf(bench.run.pid) - cpuBefore;
  return { perK: (cpu * 1000) / (rows / 1000), cores: cpu / seconds };
}

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

/** Writes the table before the slot exists (so its rows are not in the stream), then starts the dispatcher and reads its idle RSS. */
async function setUp(pgServer: EmbeddedPostgres, db: pg.Client, monitor: pg.Client, sink: Sink, options: BackfillBenchOptions): Promise<Bench> {
  await db.query(SCHEMA);
  const writeSeconds = await writeRows(db, options.rows);
  console.log(`  wrote ${options.rows.toLocaleString('en-US')} rows in ${writeSeconds.toFixed(1)} s, before the slot was made`);
  // Hint bits, statistics (the backfill's row estimate) and a checkpoint now rather than during a measurement.
  await db.query('VACUUM ANALYZE orders');
  await db.query('CHECKPOINT');
  await createSlots(db, [SLOT]);
  const trigger = triggerManifest(sink.url, { concurrency: options.concurrency, batchSize: options.triggerBatch });
  const run = await startBenchDispatcher(pgServer.url, SLOT, [trigger], { args: ['--watch-config'] });
  await sleep(2000);
  const idleRss = memoryOf(run.pid).rss;
  console.log(`  dispatcher idle: VmRSS ${idleRss.toFixed(1)} MiB`);
  const bench: Bench = { pgServer, db, monitor, sink, run, trigger, options, idleRss };
  const warmRows = Math.min(10_000, Math.round(options.liveRows / 10));
  await sink.reset();
  await writeRows(db, warmRows, LIVE_TXN_ROWS);
  await sinkHas(sink, warmRows, run);
  console.log(`  warm-up: ${warmRows.toLocaleString('en-US')} live rows delivered`);
  return bench;
}

// ---------------------------------------------------------------------------------------------
// 1. Throughput (and 3. its memory and WAL)
// ---------------------------------------------------------------------------------------------

interface BackfillRun {
  state: BackfillStateReport;
  /** Manifest written → Complete. */
  seconds: number;
  /** Manifest written → the backfill's startTime (the dispatcher noticed the file). */
  pickupSeconds: number;
  /** First → last read received at the sink. */
  sinkSeconds: number;
  reads: number;
  requests: number;
  cpu: { perK: number; cores: number };
  peakRss: number | undefined;
  maxRss: number;
  /** VmRSS when the backfill was added. */
  startRss: number;
  start: WalReading;
  walWritten: number;
  end: WalReading;
  maxRetained: number;
  maxKept: number;
}

/** Adds a backfill and waits for it to complete, sampling RSS and WAL meanwhile. `alongside` runs once the first read has arrived. */
async function runBackfill(bench: Bench, name: string, alongside?: () => Promise<void>): Promise<BackfillRun> {
  const { sink, run, monitor } = bench;
  await sink.reset(alongside !== undefined);
  const walBefore = await walReading(monitor);
  const cpuBefore = cpuSecondsOf(run.pid);
  const startRss = memoryOf(run.pid).rss;
  const hwmReset = resetPeakRss(run.pid);
  const sampler = startSampler(bench);
  const writtenAt = addBackfill(bench, name);
  let state: BackfillStateReport;
  let samples: Samples;
  try {
    if (alongside) {
      await waitFor(
        'the first read at the sink',
        async () => (await sink.stats()).reads > 0,
        60_000,
        () => run.output().slice(-4000),
        20,
      );
      await alongside();
    }
    state = await untilComplete(bench, name);
  } finally {
    samples = await sampler.stop();
  }
  const end = await walReading(monitor);
  const stats = await sink.stats();
  const completedAt = state.completionTime ? Date.parse(state.completionTime) : Date.now();
  const seconds = (completedAt - writtenAt) / 1000;
  return {
    state,
    seconds,
    pickupSeconds: state.startTime ? (Date.parse(state.startTime) - writtenAt) / 1000 : NaN,
    sinkSeconds: (stats.lastAt - stats.firstAt) / 1000,
    reads: stats.reads,
    requests: stats.requests,
    cpu: cpuOver(bench, cpuBefore, seconds, state.rowsRead),
    peakRss: hwmReset ? memoryOf(run.pid).hwm : undefined,
    maxRss: samples.maxRss,
    startRss,
    start: walBefore,
    walWritten: end.at - walBefore.at,
    end,
    maxRetained: samples.maxRetained,
    maxKept: samples.maxKept,
  };
}

interface LiveRate {
  /** Events/s at the sink, first → last receipt. */
  rate: number;
  /** Rows/s the writer committed. */
  writeRate: number;
  cpu: { perK: number; cores: number };
  peakRss: number | undefined;
}

/** The baseline of (1): --live-rows inserts in transactions of 1000 while the dispatcher is caught up. */
async function measureLive(bench: Bench): Promise<LiveRate> {
  const { sink, run, db, options } = bench;
  const n = options.liveRows;
  await sink.reset();
  const cpuBefore = cpuSecondsOf(run.pid);
  const hwmReset = resetPeakRss(run.pid);
  const startedAt = Date.now();
  const writeSeconds = await writeRows(db, n, LIVE_TXN_ROWS);
  const stats = await sinkHas(sink, n, run);
  return {
    rate: n / ((stats.lastAt - stats.firstAt) / 1000),
    writeRate: n / writeSeconds,
    cpu: cpuOver(bench, cpuBefore, (stats.lastAt - startedAt) / 1000, n),
    peakRss: hwmReset ? memoryOf(run.pid).hwm : undefined,
  };
}

async function benchThroughput(bench: Bench): Promise<number> {
  const { options } = bench;
  console.log(
    `\n[1] throughput: a Backfill (batchSize ${options.batchSize}) of the ${options.rows.toLocaleString('en-US')}-row table vs live delivery of ` +
      `${options.liveRows.toLocaleString('en-US')} inserts in transactions of ${LIVE_TXN_ROWS}; trigger batch.maxSize ${options.triggerBatch}, c=${options.concurrency}`,
  );
  const backfill = await runBackfill(bench, 'bench-backfill');
  const rate = backfill.state.rowsRead / backfill.seconds;
  console.log(`  backfill: ${backfill.state.rowsRead.toLocaleString('en-US')} rows read in ${backfill.seconds.toFixed(2)} s (manifest written → Complete)`);
  const live = await measureLive(bench);
  console.log(`  live: ${options.liveRows.toLocaleString('en-US')} events delivered at ${fmtRate(live.rate, 'ev/s')} (the writer committed ${fmtRate(live.writeRate, 'rows/s')})`);
  record({
    figure: `backfill (batchSize ${options.batchSize}), manifest → Complete`,
    value: fmtRate(rate, 'rows/s'),
    baseline: `live batched delivery ${fmtRate(live.rate, 'ev/s')}`,
    ratio: rate / live.rate,
    target: '',
  });
  reportThroughputNotes(backfill, live, options.batchSize);
  reportMemoryAndWal(bench, backfill, '', live.peakRss);
  return live.rate;
}

function reportThroughputNotes(backfill: BackfillRun, live: LiveRate, batchSize: number): void {
  const running = backfill.seconds - backfill.pickupSeconds;
  // The last chunk is the one that reads fewer rows than batchSize (none, when the count is a multiple of it).
  const chunks = Math.floor(backfill.state.rowsRead / batchSize) + 1;
  notes.push(
    `backfill of (1): ${backfill.state.rowsRead.toLocaleString('en-US')} rows read (rowsEstimate ${backfill.state.rowsEstimate ?? '?'}), ${backfill.reads.toLocaleString('en-US')} reads at the sink ` +
      `in ${backfill.requests.toLocaleString('en-US')} requests (${(backfill.reads / Math.max(1, backfill.requests)).toFixed(1)} per request); ` +
      `${backfill.seconds.toFixed(2)} s = ${backfill.pickupSeconds.toFixed(2)} s until the dispatcher noticed the manifest (--watch-config looks every 2 s) + ` +
      `${running.toFixed(2)} s running (${fmtRate(backfill.state.rowsRead / running, 'rows/s')}; ${chunks} chunks, ${((running * 1000) / chunks).toFixed(1)} ms each); first → last read at the sink ${backfill.sinkSeconds.toFixed(2)} s ` +
      `(${fmtRate(backfill.reads / backfill.sinkSeconds, 'rows/s')})`,
  );
  notes.push(
    `dispatcher CPU: backfill ${backfill.cpu.perK.toFixed(0)} ms per 1000 rows (${backfill.cpu.cores.toFixed(2)} cores on average), ` +
      `live ${live.cpu.perK.toFixed(0)} ms per 1000 events (${live.cpu.cores.toFixed(2)} cores)`,
  );
  if (live.rate > 0.9 * live.writeRate) {
    notes.push(
      `live baseline: delivery (${fmtRate(live.rate, 'ev/s')}) kept up with the single writer (${fmtRate(live.writeRate, 'rows/s')} in transactions of ${LIVE_TXN_ROWS}): ` +
        "it is bounded by the writer here, a lower bound of the dispatcher's live capacity",
    );
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Memory and WAL
// ---------------------------------------------------------------------------------------------

function reportMemoryAndWal(bench: Bench, backfill: BackfillRun, label: string, livePeakRss: number | undefined): void {
  const peak = backfill.peakRss ?? backfill.maxRss;
  record({
    figure: `peak RSS during the backfill${label}`,
    value: `${peak.toFixed(1)} MiB`,
    baseline: `idle dispatcher ${bench.idleRss.toFixed(1)} MiB`,
    ratio: peak / bench.idleRss,
    target: '',
  });
  record({
    figure: `WAL retained by the slot at Complete${label}`,
    value: `${fmtBytes(backfill.end.retained)} (max ${fmtBytes(backfill.maxRetained)})`,
    baseline: `WAL written during the backfill ${fmtBytes(backfill.walWritten)}`,
    ratio: backfill.end.retained / backfill.walWritten,
    target: '',
  });
  notes.push(
    `memory and WAL of the backfill${label}: VmRSS ${backfill.startRss.toFixed(1)} MiB when it was added, ` +
      `${backfill.peakRss !== undefined ? 'VmHWM reset then' : 'VmHWM could not be reset: highest sampled VmRSS'}` +
      `${livePeakRss !== undefined ? `; peak RSS during the live baseline of (1) ${livePeakRss.toFixed(1)} MiB` : ''}; ` +
      `WAL retained (current − confirmed_flush_lsn) ${fmtBytes(backfill.start.retained)} when it was added, max is the highest sampled every ${SAMPLE_MS} ms; ` +
      `WAL the server keeps for the slot (current − restart_lsn) at Complete ${fmtBytes(backfill.end.kept)}, highest sampled ${fmtBytes(backfill.maxKept)}`,
  );
}

// ---------------------------------------------------------------------------------------------
// 2. Live latency during a backfill
// ---------------------------------------------------------------------------------------------

interface LiveWindow {
  written: number;
  seconds: number;
  /** Date.now() when the writer started and stopped. */
  startedAt: number;
  endedAt: number;
  latency: LatencySummary;
  commitMs: number[];
}

/** Writes at `rate` rows/s in slices of SLICE_SECONDS for up to `seconds`, while `keepGoing`; waits for every live event at the sink. */
async function liveWindow(bench: Bench, rate: number, seconds: number, keepGoing: () => boolean = () => true): Promise<LiveWindow> {
  const { db, sink, run } = bench;
  const startedAt = Date.now();
  const started = performance.now();
  let written = 0;
  const commitMs: number[] = [];
  while ((performance.now() - started) / 1000 < seconds && keepGoing()) {
    const slice = await writeAtRate(db, rate, Math.min(SLICE_SECONDS, seconds - (performance.now() - started) / 1000));
    written += slice.written;
    commitMs.push(...slice.commitMs);
  }
  const elapsed = (performance.now() - started) / 1000;
  const endedAt = Date.now();
  const stats = await waitFor(
    `${written} live events at the sink`,
    async () => {
      const s = await sink.stats();
      return s.events - s.reads >= written && s;
    },
    BACKFILL_TIMEOUT_MS,
    () => run.output().slice(-4000),
  );
  return { written, seconds: elapsed, startedAt, endedAt, latency: stats.latency!, commitMs };
}

async function benchLatency(bench: Bench, liveRate: number): Promise<void> {
  const { options, sink } = bench;
  const rate = Math.max(10, Math.round(options.liveLoad * liveRate));
  console.log(
    `\n[2] live latency: ${rate} rows/s (${options.liveLoad}× the batched live rate of [1]) in small transactions, for ${options.latencySeconds} s alone, ` +
      'then while a backfill of the whole table runs',
  );
  await sink.reset(true);
  await liveWindow(bench, rate, 1); // warm-up at this rate
  await sink.reset(true);
  const alone = await liveWindow(bench, rate, options.latencySeconds);
  console.log(`  alone: ${alone.written} rows in ${alone.seconds.toFixed(1)} s; p50 ${fmtMs(alone.latency.p50)}, p99 ${fmtMs(alone.latency.p99)}`);

  let during: LiveWindow | undefined;
  let running = true;
  const name = 'bench-backfill-live';
  const backfill = await runBackfill(bench, name, async () => {
    const watcher = watchRunning(bench, name, () => (running = false));
    await sink.reset(true);
    during = await liveWindow(bench, rate, options.latencySeconds, () => running);
    watcher.stop();
  });
  const d = during!;
  const completedAt = backfill.state.completionTime ? Date.parse(backfill.state.completionTime) : d.endedAt;
  const overlap = Math.max(0, Math.min(d.endedAt, completedAt) - d.startedAt) / 1000;
  console.log(
    `  during the backfill: ${d.written} rows in ${d.seconds.toFixed(1)} s, the backfill running for ${overlap.toFixed(1)} s of them; ` +
      `p50 ${fmtMs(d.latency.p50)}, p99 ${fmtMs(d.latency.p99)}; the backfill read ${backfill.state.rowsRead.toLocaleString('en-US')} rows in ${backfill.seconds.toFixed(2)} s`,
  );
  const a = alone.latency;
  record({
    figure: `live p50 commit→delivered @${rate}/s during a backfill`,
    value: fmtMs(d.latency.p50),
    baseline: `live alone ${fmtMs(a.p50)}`,
    ratio: latencyRatio(d.latency.p50, a.p50),
    target: '',
  });
  record({
    figure: `live p99 commit→delivered @${rate}/s during a backfill`,
    value: fmtMs(d.latency.p99),
    baseline: `live alone ${fmtMs(a.p99)}`,
    ratio: latencyRatio(d.latency.p99, a.p99),
    target: '',
  });
  reportLatencyNotes(alone, d, backfill, rate);
  reportMemoryAndWal(bench, backfill, ' of (2), under live writes', undefined);
}

/** Polls /state every 100 ms and calls `onEnd` once the backfill is no longer running. */
function watchRunning(bench: Bench, name: string, onEnd: () => void): { stop(): void } {
  const timer = setInterval(() => {
    void backfillState(bench.run, name).then(
      (state) => state && state.phase !== 'Running' && state.phase !== 'Pending' && onEnd(),
      () => undefined,
    );
  }, 100);
  return { stop: () => clearInterval(timer) };
}

function reportLatencyNotes(alone: LiveWindow, during: LiveWindow, backfill: BackfillRun, rate: number): void {
  const commits = (w: LiveWindow) => summarize(w.commitMs)!;
  notes.push(
    `live latency (${rate} rows/s in ${SLICE_SECONDS} s slices of writeAtRate; sink receipt − ce-time, ms resolution, reads not counted): alone ${alone.written} rows in ${alone.seconds.toFixed(1)} s, ` +
      `max ${fmtMs(alone.latency.max)}; during the backfill ${during.written} rows in ${during.seconds.toFixed(1)} s, max ${fmtMs(during.latency.max)}; ` +
      `writer commit round trip p50/p99: alone ${commits(alone).p50.toFixed(2)}/${commits(alone).p99.toFixed(2)} ms, during ${commits(during).p50.toFixed(2)}/${commits(during).p99.toFixed(2)} ms`,
  );
  notes.push(
    `backfill of (2), with the live writer: ${backfill.state.rowsRead.toLocaleString('en-US')} rows in ${backfill.seconds.toFixed(2)} s ` +
      `(${fmtRate(backfill.state.rowsRead / backfill.seconds, 'rows/s')} manifest → Complete, ${fmtRate(backfill.reads / backfill.sinkSeconds, 'rows/s')} first → last read)`,
  );
}

// ---------------------------------------------------------------------------------------------

const options = backfillOptions();
dispatcherDefaults.profileDir = options.profileDir;
runBench('eventide backfill bench', async ({ pgServer, db, sink }) => {
  const monitor = new pg.Client({ connectionString: pgServer.url });
  let bench: Bench | undefined;
  try {
    await monitor.connect();
    bench = await setUp(pgServer, db, monitor, sink, options);
    const liveRate = await benchThroughput(bench);
    await benchLatency(bench, liveRate);
  } finally {
    if (bench) await stopBenchDispatcher(bench.run);
    await dropSlot(db, SLOT).catch(() => undefined);
    await monitor.end().catch(() => undefined);
  }
});
