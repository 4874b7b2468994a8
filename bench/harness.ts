/**
 * What the bench phases share: the schema and its writers, replication slots, `eventide dispatch` as a
 * child process (with its metrics), and a few /proc readings.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type pg from 'pg';
import { binHeapFlags, EVENTIDE_BIN } from '../common/binHeapFlags.js';
import { freePort } from '../common/loopback.js';
import { metricSum, parsePrometheusText } from '../test/harness/controlledSink.js';
import { removeDir, writeManifests } from '../test/harness/dispatcherFixture.js';
import type { LatencySummary, Sink, SinkStats } from './sink.js';

// ---------------------------------------------------------------------------------------------
// Database
// ---------------------------------------------------------------------------------------------

/**
 * The bench server's settings: no checkpoint in the middle of a measurement, and a walsender that keeps
 * waiting while the memory phase freezes the dispatcher (SIGSTOP) as its backlog is written.
 */
export const PG_SETTINGS = { wal_sender_timeout: '10min', max_wal_size: '8GB', checkpoint_timeout: '30min' };

export const PUBLICATION = 'bench';
export const TXN_ROWS = 10_000;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The bench's table (bigserial key, int, numeric, text, boolean, timestamptz, jsonb), in schema public:
 * the bench's role is called eventide, so once the dispatcher has created its schema eventide, an
 * unqualified name would be created in that schema ("$user" comes first in the search_path).
 */
export function tableSql(name: string): string {
  return `
  CREATE TABLE public.${name} (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL,
    amount numeric(12,2) NOT NULL,
    status text NOT NULL,
    is_paid boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    items jsonb NOT NULL
  );`;
}

export const SCHEMA = `${tableSql('orders')}
  CREATE PUBLICATION ${PUBLICATION} FOR TABLE public.orders;`;

function insertRows(table: string): string {
  return `
  INSERT INTO public.${table} (customer_id, amount, status, items)
  SELECT g % 5000, (g % 100000) / 100.0, 'placed', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g % 97), 'qty', 1 + g % 3))
    FROM generate_series(1, $1::int) g`;
}

/** Writes `total` rows in transactions of `perTxn` (one big transaction would be a different case). */
export async function writeRows(db: pg.Client, total: number, perTxn = TXN_ROWS, table = 'orders'): Promise<number> {
  const sql = insertRows(table);
  const started = performance.now();
  for (let written = 0; written < total; written += perTxn) await db.query(sql, [Math.min(perTxn, total - written)]);
  return (performance.now() - started) / 1000;
}

/**
 * Commits small transactions so that `rate` rows/s are written (each takes the rows due, at most
 * `maxRowsPerTxn`: 1 gives one row per transaction); returns rows written and commit latencies.
 */
export async function writeAtRate(db: pg.Client, rate: number, seconds: number, table = 'orders', maxRowsPerTxn = 500): Promise<{ written: number; commitMs: number[] }> {
  const sql = insertRows(table);
  const started = performance.now();
  let written = 0;
  const commitMs: number[] = [];
  for (;;) {
    const elapsed = performance.now() - started;
    if (elapsed >= seconds * 1000) break;
    const due = Math.floor((rate * elapsed) / 1000) - written;
    if (due <= 0) {
      await sleep(1);
      continue;
    }
    const rows = Math.min(due, maxRowsPerTxn);
    const t0 = performance.now();
    await db.query(sql, [rows]);
    commitMs.push(performance.now() - t0);
    written += rows;
  }
  return { written, commitMs };
}

export async function createSlots(db: pg.Client, names: string[]): Promise<void> {
  for (const name of names) await db.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [name]);
}

/** Whether a replication slot is in use (a walsender streams from it). */
export async function slotActive(db: pg.Client, name: string): Promise<boolean> {
  const result = await db.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [name]);
  return result.rows[0]?.active === true;
}

export async function dropSlot(db: pg.Client, name: string): Promise<void> {
  await db.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [name]);
}

/** Asks `check` every `intervalMs` until it returns something truthy. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number, describeFailure?: () => string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${describeFailure ? `\n${describeFailure()}` : ''}`);
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/** VmRSS and VmHWM of a process, in MiB. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** Resets a process's VmHWM to its VmRSS now (clear_refs 5), so the next VmHWM is the peak from here on; false when the kernel refuses. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** CPU seconds (user + system) a process has used. */
export function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after "pid (comm) ", in clock ticks (100 Hz on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * An EventTrigger for the bench (namespace "bench", so its key is "bench/<name>"): inserts of `orders`
 * unless `extra` names another table; `extra` may add any spec field (suspend, delivery, ...).
 */
export function triggerManifest(
  sinkUrl: string,
  spec: { concurrency: number; batchSize: number },
  extra: { name?: string; table?: string; spec?: Record<string, unknown> } = {},
): Record<string, unknown> {
  return {
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name: extra.name ?? 'bench-orders', namespace: 'bench' },
    spec: {
      source: { connectionSecretRef: { name: 'db' } },
      table: { name: extra.table ?? 'orders' },
      operations: ['insert'],
      sink: { url: sinkUrl },
      concurrency: spec.concurrency,
      batch: { maxSize: spec.batchSize },
      ...extra.spec,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// `eventide dispatch` as a child process
// ---------------------------------------------------------------------------------------------

/** Set once from the command line: a CPU profile directory, extra `eventide dispatch` arguments and extra node flags for every run. */
export const dispatcherDefaults: { profileDir: string | undefined; extraArgs: string[]; nodeFlags: string[] } = { profileDir: undefined, extraArgs: [], nodeFlags: [] };

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** `eventide dispatch` (bin/eventide.mjs run as a command) as a child process, ready when /readyz answers 200. */
export interface DispatcherRun {
  child: ChildProcess;
  pid: number;
  /** Its ops port (/metrics, /readyz). */
  port: number;
  output(): string;
  /** The manifest file it serves (rewrite it to reconfigure a run started with --watch-config). */
  manifestFile: string;
  manifestDir: string;
  /** The sum of a metric's samples whose labels include `labels` (0 when there is none). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

export async function startBenchDispatcher(
  url: string,
  slot: string,
  manifests: Record<string, unknown>[],
  options: { v8Flags?: readonly string[]; args?: readonly string[]; bin?: string } = {},
): Promise<DispatcherRun> {
  const bin = options.bin ?? EVENTIDE_BIN;
  const manifestFile = writeManifests(manifests);
  const manifestDir = manifestFile.replace(/\/[^/]+$/, '');
  const port = await freePort();
  const { profileDir, extraArgs } = dispatcherDefaults;
  const nodeFlags = [...dispatcherDefaults.nodeFlags, ...(options.v8Flags ?? [])];
  const args = [
    'dispatch',
    ...['--database-url', url, '-f', manifestFile, '--slot', slot, '--publication', PUBLICATION, '--port', String(port), '--host', '127.0.0.1'],
    ...(options.args ?? []),
    ...extraArgs,
  ];
  // Run as a user runs it (npx eventide: the bin as a command, which sizes the heap unless NODE_OPTIONS
  // does), with node flags in NODE_OPTIONS as the operator gives them. --cpu-prof is not allowed there:
  // a profiled run starts node itself, with the heap flags the command would have given it.
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'warn', NODE_OPTIONS: nodeFlags.join(' ') };
  const [command, commandArgs] = profileDir ? [process.execPath, ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, ...binHeapFlags(), ...nodeFlags, bin, ...args]] : [bin, args];
  const child = spawn(command, commandArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let log = '';
  const keep = (d: Buffer) => (log = (log + d.toString()).slice(-16_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  await waitFor(
    'the dispatcher to be ready',
    async () => {
      if (child.exitCode !== null) throw new Error(`dispatcher exited with ${child.exitCode}:\n${log}`);
      return fetch(`http://127.0.0.1:${port}/readyz`).then(
        (res) => res.status === 200,
        () => false,
      );
    },
    60_000,
    () => log,
  );
  const metric = async (name: string, labels: Record<string, string> = {}) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return metricSum(parsePrometheusText(text), name, labels) ?? 0;
  };
  return { child, pid: child.pid!, port, output: () => log, manifestFile, manifestDir, metric };
}

/**
 * Runs `measure` at `rate`, and again at half the rate while the run queued, twice at most: a median
 * commit → delivery ten times an HTTP hop (about 1 ms here) is events waiting behind each other, the rate
 * past what the machine carries, not the dispatcher's latency. The rates phases derive come from drains of
 * large transactions with nothing writing beside them; their writers' small transactions cost more.
 * Returns the last run, its rate, and a line per halving.
 */
export async function atRateThatDoesNotQueue<T>(rate: number, measure: (rate: number) => Promise<T>, latencyOf: (run: T) => LatencySummary): Promise<{ run: T; rate: number; halvings: string[] }> {
  const halvings: string[] = [];
  let run = await measure(rate);
  while (halvings.length < 2 && latencyOf(run).p50 > 10) {
    const halved = Math.max(10, Math.round(rate / 2));
    halvings.push(`at ${rate}/s the run queued (p50 ${latencyOf(run).p50} ms): again at ${halved}/s`);
    console.log(`  ${halvings.at(-1)}`);
    rate = halved;
    run = await measure(rate);
  }
  return { run, rate, halvings };
}

/**
 * Waits until the sink has counted `n` events (reads of a backfill included); its stats then. `run` is
 * the delivering process (a dispatcher, or any child with its output kept), whose output a timeout shows.
 */
export async function sinkHas(sink: Sink, n: number, run: Pick<DispatcherRun, 'output'>, timeoutMs = 15 * 60_000): Promise<SinkStats> {
  return waitFor(
    `${n} events at the sink`,
    async () => {
      const s = await sink.stats();
      return s.events >= n && s;
    },
    timeoutMs,
    () => run.output().slice(-4000),
  );
}

/**
 * Writes `n` rows (transactions of 10k) while the dispatcher is frozen (SIGSTOP), so it wakes to all of
 * them waiting in the WAL; the seconds the writes took, and Date.now() when it was woken (SIGCONT).
 */
export async function writeWhileFrozen(db: pg.Client, run: DispatcherRun, n: number): Promise<{ seconds: number; wokeAt: number }> {
  process.kill(run.pid, 'SIGSTOP');
  let seconds: number;
  try {
    seconds = await writeRows(db, n);
  } finally {
    process.kill(run.pid, 'SIGCONT');
  }
  return { seconds, wokeAt: Date.now() };
}

/** SIGTERM (the dispatcher drains and exits; a CPU profile is written then). */
export async function stopBenchDispatcher(run: DispatcherRun): Promise<void> {
  if (run.child.exitCode === null && run.child.signalCode === null) {
    const exited = new Promise((resolve) => run.child.once('exit', resolve));
    run.child.kill('SIGTERM');
    await exited;
  }
  removeDir(run.manifestDir);
}
