/**
 * The one-command demo: `npm run demo [-- --rate 10 --duration 30s --payment-failure-rate 0.2 --quiet]`
 * (`--duration` takes a duration as the manifests do, 500ms, 30s, 1m, or a bare number of seconds).
 * A throwaway Postgres, the four food-ordering functions and the dispatcher as local processes,
 * started from the same manifests a cluster uses; orders placed at a steady rate and shown moving
 * validate → pay → approve → assign, live.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { InvalidDurationError, parseDuration } from '../../api/v1alpha1/duration.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { freePort } from '../../common/loopback.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FUNCTIONS = ['validate-order', 'process-payment', 'approve-restaurant', 'assign-agent'] as const;

export interface DemoOptions {
  ratePerSecond: number;
  durationSeconds: number;
  paymentFailureRate: number;
  /** No live view; for tests and CI logs. */
  quiet?: boolean;
  /** How long to wait after the last order for the pipeline to finish. */
  settleSeconds?: number;
  out?: (text: string) => void;
}

export interface DemoSummary {
  placed: number;
  completed: number;
  deadLetters: number;
  retries: number;
  deliveries: number;
  /** Order placed → agent assigned, in milliseconds. */
  p50Ms: number;
  p99Ms: number;
  /** Events a function handled more than once for the same order (must be 0). */
  processedTwice: number;
  /** Orders paid more than once (must be 0). */
  paidTwice: number;
}

interface Counts {
  placed: number;
  validated: number;
  paid: number;
  approved: number;
  assigned: number;
}

/** Starts a child process and remembers it so nothing outlives the demo. */
class Processes {
  private readonly children: ChildProcess[] = [];
  private readonly logs = new Map<ChildProcess, string>();

  start(name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
    const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.logs.set(child, '');
    const logDir = process.env.EVENTIDE_DEMO_LOG_DIR;
    const keep = (d: Buffer) => {
      this.logs.set(child, (this.logs.get(child)! + d.toString()).slice(-4000));
      if (logDir) appendFileSync(`${logDir}/${name}.log`, d);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.once('exit', (code) => {
      if (code && code !== 0 && !this.stopping) process.stderr.write(`${name} exited with ${code}:\n${this.logs.get(child)}\n`);
    });
    this.children.push(child);
    return child;
  }

  stopping = false;

  async stopAll(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }
}

async function waitReady(url: string, what: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before it was ready`);
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${what} was not ready within 30s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sums a Prometheus counter's samples, optionally those whose labels contain `match`. */
function metricSum(text: string, name: string, match = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(match)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function bar(n: number, total: number, width = 24): string {
  const filled = total ? Math.round((n / total) * width) : 0;
  return `${'█'.repeat(filled)}${'·'.repeat(width - filled)}`;
}

/** Thrown by runDemo when Ctrl-C (SIGINT) stopped it; everything it started is stopped by then. */
export class DemoInterrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

/**
 * Runs the demo and returns its summary; everything it started is stopped before it returns or throws.
 * SIGINT ends it early (DemoInterrupted): in a terminal Ctrl-C also reaches the functions, the dispatcher
 * and Postgres, which stop by themselves, so whatever fails after it is part of stopping, not an error.
 */
export async function runDemo(options: DemoOptions): Promise<DemoSummary> {
  const out = options.out ?? ((t: string) => process.stdout.write(t));
  const live = !options.quiet && process.stdout.isTTY;
  const processes = new Processes();
  let server: EmbeddedPostgres | undefined;
  let pool: pg.Pool | undefined;
  let ticker: NodeJS.Timeout | undefined;
  const interrupted = new AbortController();
  const onSignal = () => {
    if (interrupted.signal.aborted) return; // a second Ctrl-C while stopping: stopping is bounded anyway
    out('\nstopping…\n');
    processes.stopping = true;
    interrupted.abort();
  };
  /** Waits, or returns early when interrupted; then throws if interrupted. */
  const pause = async (ms: number) => {
    if (ms > 0 && !interrupted.signal.aborted) {
      await new Promise<void>((resolve) => {
        // The listener goes with the timer: one left behind per pause would pile up on the signal.
        const onAbort = () => (clearTimeout(timer), resolve());
        const timer = setTimeout(() => {
          interrupted.signal.removeEventListener('abort', onAbort);
          resolve();
        }, ms);
        interrupted.signal.addEventListener('abort', onAbort, { once: true });
      });
    }
    if (interrupted.signal.aborted) throw new DemoInterrupted();
  };
  process.on('SIGINT', onSignal);
  try {
    out('starting PostgreSQL (wal_level=logical)…\n');
    server = await startEmbeddedPostgres();
    pool = new pg.Pool({ connectionString: server.url, max: 4 });
    // An idle connection that Postgres closes (it stops on Ctrl-C too) is no reason to crash.
    pool.on('error', () => undefined);
    await pool.query(readFileSync(`${HERE}/schema.sql`, 'utf8'));

    const functionUrls: string[] = [];
    for (const name of FUNCTIONS) {
      const port = await freePort();
      const child = processes.start(name, ['--import', 'tsx', `${HERE}/main.ts`, name], {
        PORT: String(port),
        DATABASE_URL: server.url,
        PAYMENT_FAILURE_RATE: String(options.paymentFailureRate),
      });
      await waitReady(`http://127.0.0.1:${port}/readyz`, name, child);
      await pause(0);
      functionUrls.push('--function-url', `food/${name}=http://127.0.0.1:${port}/`);
      out(`  function ${name} on :${port}\n`);
    }
    const metricsPort = await freePort();
    const dispatcher = processes.start(
      'dispatcher',
      [`${ROOT}/bin/eventide.mjs`, 'dispatch', '--database-url', server.url, '-f', `${HERE}/manifests`, ...functionUrls, '--port', String(metricsPort), '--host', '127.0.0.1'],
      {},
    );
    await waitReady(`http://127.0.0.1:${metricsPort}/readyz`, 'dispatcher', dispatcher);
    out(`  dispatcher on :${metricsPort} (/metrics)\n\nplacing ${options.ratePerSecond} orders/s for ${options.durationSeconds}s, payment failure rate ${options.paymentFailureRate}\n\n`);

    const db = pool;
    const counts = async (): Promise<Counts> => {
      const { rows } = await db.query<Record<keyof Counts, string>>(
        'SELECT count(*) AS placed, count(*) FILTER (WHERE is_validated) AS validated, count(*) FILTER (WHERE is_paid) AS paid, count(*) FILTER (WHERE is_approved) AS approved, count(*) FILTER (WHERE is_agent_assigned) AS assigned FROM orders',
      );
      const r = rows[0]!;
      return { placed: Number(r.placed), validated: Number(r.validated), paid: Number(r.paid), approved: Number(r.approved), assigned: Number(r.assigned) };
    };
    const metrics = async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return {
        deliveries: metricSum(text, 'eventide_dispatcher_deliveries_total', 'outcome="success"'),
        retries: metricSum(text, 'eventide_dispatcher_retries_total'),
        deadLetters: metricSum(text, 'eventide_dispatcher_dead_letters_total'),
      };
    };
    let lines = 0;
    const render = async (final = false) => {
      const [c, m] = await Promise.all([counts(), metrics()]);
      const rows = [
        `orders placed     ${String(c.placed).padStart(6)}`,
        `  validated       ${String(c.validated).padStart(6)}  ${bar(c.validated, c.placed)}`,
        `  paid            ${String(c.paid).padStart(6)}  ${bar(c.paid, c.placed)}`,
        `  approved        ${String(c.approved).padStart(6)}  ${bar(c.approved, c.placed)}`,
        `  agent assigned  ${String(c.assigned).padStart(6)}  ${bar(c.assigned, c.placed)}`,
        `deliveries ${m.deliveries}   retries ${m.retries}   dead letters ${m.deadLetters}`,
      ];
      if (live) {
        out(`${lines ? `\x1b[${lines}A` : ''}${rows.map((r) => `\x1b[2K${r}`).join('\n')}\n`);
        lines = rows.length;
      } else if (final || !options.quiet) out(`${rows.join(' | ').replace(/\s+/g, ' ')}\n`);
      return { c, m };
    };

    ticker = setInterval(() => void render().catch(() => undefined), live ? 250 : 2000);
    const total = Math.round(options.ratePerSecond * options.durationSeconds);
    const started = Date.now();
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / options.ratePerSecond;
      await pause(due - Date.now());
      const dishes = ['pad thai', 'ramen', 'burrito', 'dosa', 'pho'];
      await db.query('INSERT INTO orders (customer, items, total) VALUES ($1, $2, $3)', [
        `customer-${i % 50}`,
        JSON.stringify([{ dish: dishes[i % dishes.length], qty: 1 + (i % 3) }]),
        (9.5 + (i % 7) * 2.25).toFixed(2),
      ]);
    }
    // Let the pipeline finish: every order assigned, or stuck in the dead letters.
    const settleDeadline = Date.now() + (options.settleSeconds ?? 60) * 1000;
    for (;;) {
      const { c, m } = await render();
      if (c.assigned + m.deadLetters >= c.placed || Date.now() > settleDeadline) break;
      await pause(200);
    }
    clearInterval(ticker);
    const { c, m } = await render(true);
    await pause(0);
    const latency = await db.query<{ ms: number }>(
      'SELECT extract(epoch FROM assigned_at - created_at) * 1000 AS ms FROM orders WHERE is_agent_assigned ORDER BY 1',
    );
    const sorted = latency.rows.map((r) => Number(r.ms));
    const twice = await db.query<{ n: string }>('SELECT count(*) AS n FROM (SELECT function_name, order_id FROM processed_events GROUP BY 1, 2 HAVING count(*) > 1) d');
    const paidTwice = await db.query<{ n: string }>('SELECT count(*) AS n FROM (SELECT order_id FROM payments GROUP BY 1 HAVING count(*) > 1) d');
    const summary: DemoSummary = {
      placed: c.placed,
      completed: c.assigned,
      deadLetters: m.deadLetters,
      retries: m.retries,
      deliveries: m.deliveries,
      p50Ms: Math.round(percentile(sorted, 50)),
      p99Ms: Math.round(percentile(sorted, 99)),
      processedTwice: Number(twice.rows[0]!.n),
      paidTwice: Number(paidTwice.rows[0]!.n),
    };
    out(
      `\nsummary: ${summary.completed}/${summary.placed} orders completed, ${summary.retries} retries, ${summary.deadLetters} dead letters, ` +
        `order → agent assigned p50 ${summary.p50Ms} ms, p99 ${summary.p99Ms} ms, processed twice: ${summary.processedTwice}\n`,
    );
    return summary;
  } catch (error) {
    throw interrupted.signal.aborted ? new DemoInterrupted() : error;
  } finally {
    clearInterval(ticker);
    await processes.stopAll();
    await pool?.end().catch(() => undefined);
    await server?.destroy();
    process.removeListener('SIGINT', onSignal);
  }
}

function positive(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!(n >= 0) || !Number.isFinite(n)) throw new Error(`${flag} must be a non-negative number, got "${text}"`);
  return n;
}

/** A bare number is seconds, as the flag always took; anything else is a duration as in the manifests. */
export function parseDemoDurationSeconds(text: string): number {
  if (/^(\d+\.?\d*|\.\d+)$/.test(text)) return Number(text);
  try {
    return parseDuration(text) / 1000;
  } catch (error) {
    if (!(error instanceof InvalidDurationError)) throw error;
    throw new Error(`--duration must be a duration such as 20s, 1m or 500ms, or a number of seconds, got "${text}"`);
  }
}

/** The demo's options from its command line; throws a message naming the flag that is wrong. */
export function parseDemoArgs(argv: string[]): DemoOptions {
  const { values } = parseArgs({
    args: argv,
    options: { rate: { type: 'string' }, duration: { type: 'string' }, 'payment-failure-rate': { type: 'string' }, quiet: { type: 'boolean' } },
  });
  const paymentFailureRate = positive('--payment-failure-rate', values['payment-failure-rate'], 0.2);
  if (paymentFailureRate > 1) throw new Error('--payment-failure-rate must be between 0 and 1');
  return {
    ratePerSecond: positive('--rate', values.rate, 5),
    durationSeconds: values.duration === undefined ? 20 : parseDemoDurationSeconds(values.duration),
    paymentFailureRate,
    quiet: values.quiet ?? false,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const summary = await runDemo(parseDemoArgs(process.argv.slice(2)));
    process.exitCode = summary.completed + summary.deadLetters === summary.placed && summary.processedTwice === 0 ? 0 : 1;
  } catch (error) {
    if (error instanceof DemoInterrupted) {
      process.exitCode = 130; // the shell's code for "ended by SIGINT"
    } else {
      process.stderr.write(`demo: ${(error as Error).message}\n`);
      process.exitCode = 1;
    }
  }
}
