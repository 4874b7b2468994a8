/**
 * The one-command demo: `npm run demo [-- --rate 10 --duration 30s --payment-failure-rate 0.2 --quiet
 * --idle-timeout 5s --no-until-idle]` (`--duration` and `--idle-timeout` take a duration as the
 * manifests do, 500ms, 30s, 1m, or a bare number of seconds).
 * A throwaway Postgres, the dispatcher and the four food-ordering functions as local processes, started
 * from the same manifests a cluster uses; orders placed at a steady rate and shown moving validate →
 * pay → approve → assign, live.
 *
 * The functions scale as in a cluster (spec.scale in manifests/functions.yaml): each starts at zero
 * replicas behind a stable local address that refuses connections while none is ready (localService.ts),
 * and every second the operator's own decider sizes it from the dispatcher's GET /state
 * (localScaler.ts), so replicas rise as the orders arrive and fall back to zero once idle. By default
 * the demo waits for that after the last order (the manifests' idleTimeout, 30 s); `--idle-timeout 5s`
 * shortens it locally, `--no-until-idle` ends as soon as every order is through.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { InvalidDurationError, parseDuration } from '../../api/v1alpha1/duration.js';
import { loadManifests } from '../../api/v1alpha1/manifests.js';
import type { FunctionResource } from '../../api/v1alpha1/resources.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { freePort } from '../../common/loopback.js';
import { type DeliveryCounts, FUNCTION_NAMES, progressRows, quietLine, replicaSummary, type StageCounts } from './demoView.js';
import { LocalFunctions } from './localFunctions.js';
import { LocalProcesses, waitReady } from './localProcesses.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface DemoOptions {
  ratePerSecond: number;
  durationSeconds: number;
  paymentFailureRate: number;
  /** No live view; for tests and CI logs. */
  quiet?: boolean;
  /** How long to wait after the last order for the pipeline to finish. */
  settleSeconds?: number;
  /** Once every order is through, keep going until every function is back at zero replicas. */
  untilIdle?: boolean;
  /** Replaces the manifests' spec.scale.idleTimeout locally (and caps scaleDownDelay at it). */
  idleTimeoutMs?: number;
  out?: (text: string) => void;
}

/** A function's replicas over the run. */
export interface ReplicaSummary {
  /** The most replicas ready at once. */
  peak: number;
  /** Replicas ready at the end. */
  final: number;
  /** Replicas that died unasked (each was replaced). */
  restarts: number;
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
  /** Per function (by name). */
  replicas: Record<string, ReplicaSummary>;
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

/** Thrown by runDemo when Ctrl-C (SIGINT) stopped it; everything it started is stopped by then. */
export class DemoInterrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

/** The demo's Functions from its manifests, in the order of an order's journey; throws naming one that is missing. */
function demoFunctions(): FunctionResource[] {
  const { functions } = loadManifests([`${HERE}/manifests`]);
  return FUNCTION_NAMES.map((name) => {
    const found = functions.find((fn) => fn.metadata.name === name);
    if (!found) throw new Error(`${HERE}manifests has no Function named ${name}`);
    return found;
  });
}

/**
 * Runs the demo and returns its summary; everything it started is stopped before it returns or throws.
 * SIGINT ends it early (DemoInterrupted): in a terminal Ctrl-C also reaches the functions, the dispatcher
 * and Postgres, which stop by themselves, so whatever fails after it is part of stopping, not an error.
 */
export async function runDemo(options: DemoOptions): Promise<DemoSummary> {
  const out = options.out ?? ((t: string) => process.stdout.write(t));
  const live = !options.quiet && process.stdout.isTTY;
  const processes = new LocalProcesses(process.env.EVENTIDE_DEMO_LOG_DIR);
  let server: EmbeddedPostgres | undefined;
  let pool: pg.Pool | undefined;
  let functions: LocalFunctions | undefined;
  let dispatcher: ReturnType<LocalProcesses['start']> | undefined;
  let ticker: NodeJS.Timeout | undefined;
  const interrupted = new AbortController();
  const onSignal = () => {
    if (interrupted.signal.aborted) return; // a second Ctrl-C while stopping: stopping is bounded anyway
    out('\nstopping…\n');
    processes.expectExits();
    interrupted.abort();
  };
  /** Waits, or returns early when interrupted; then throws if interrupted. */
  const pause = async (ms: number) => {
    if (ms > 0 && !interrupted.signal.aborted) {
      await new Promise<void>((resolve) => {
        // The listener goes with the timer: one left behind per pause would pile up on the signal.
        const onAbort = () => {
          clearTimeout(timer);
          resolve();
        };
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
    const resources = demoFunctions();
    out('starting PostgreSQL (wal_level=logical)…\n');
    server = await startEmbeddedPostgres();
    pool = new pg.Pool({ connectionString: server.url, max: 4 });
    // An idle connection that Postgres closes (it stops on Ctrl-C too) is no reason to crash.
    pool.on('error', () => undefined);
    await pool.query(readFileSync(`${HERE}/schema.sql`, 'utf8'));

    functions = await LocalFunctions.start({
      functions: resources,
      processes,
      args: (name) => ['--import', 'tsx', `${HERE}/main.ts`, name],
      env: { DATABASE_URL: server.url, PAYMENT_FAILURE_RATE: String(options.paymentFailureRate) },
      ...(options.idleTimeoutMs !== undefined ? { overrides: { idleTimeoutMs: options.idleTimeoutMs } } : {}),
      signal: interrupted.signal,
    });
    await pause(0);
    for (const fn of functions.functions) {
      const scaling = fn.scale
        ? `scales ${fn.scale.min}–${fn.scale.max}, ${fn.scale.target} pending per replica, to zero after ${fn.scale.idleTimeoutMs / 1000}s idle`
        : `${fn.deployment.desired} replica(s)`;
      out(`  function ${fn.key} at ${fn.service.url} (${scaling})\n`);
    }
    const metricsPort = await freePort();
    dispatcher = processes.start(
      'dispatcher',
      [`${ROOT}/bin/eventide.mjs`, 'dispatch', '--database-url', server.url, '-f', `${HERE}/manifests`, ...functions.functionUrlFlags(), '--port', String(metricsPort), '--host', '127.0.0.1'],
      {},
    );
    await waitReady(`http://127.0.0.1:${metricsPort}/readyz`, 'dispatcher', dispatcher);
    await pause(0);
    functions.startScaling(`http://127.0.0.1:${metricsPort}/state`);
    out(`  dispatcher on :${metricsPort} (/metrics, /state)\n\nplacing ${options.ratePerSecond} orders/s for ${options.durationSeconds}s, payment failure rate ${options.paymentFailureRate}\n\n`);

    const db = pool;
    const running = functions;
    const counts = async (): Promise<StageCounts> => {
      const { rows } = await db.query<Record<keyof StageCounts, string>>(
        'SELECT count(*) AS placed, count(*) FILTER (WHERE is_validated) AS validated, count(*) FILTER (WHERE is_paid) AS paid, count(*) FILTER (WHERE is_approved) AS approved, count(*) FILTER (WHERE is_agent_assigned) AS assigned FROM orders',
      );
      const r = rows[0]!;
      return { placed: Number(r.placed), validated: Number(r.validated), paid: Number(r.paid), approved: Number(r.approved), assigned: Number(r.assigned) };
    };
    const metrics = async (): Promise<DeliveryCounts> => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return {
        deliveries: metricSum(text, 'eventide_dispatcher_deliveries_total', 'outcome="success"'),
        retries: metricSum(text, 'eventide_dispatcher_retries_total'),
        deadLetters: metricSum(text, 'eventide_dispatcher_dead_letters_total'),
      };
    };
    let lines = 0;
    /** What the demo waits for now, under the live view's rows. */
    let waitingFor: string | undefined;
    // One render at a time: the ticker and the waits below both ask for one, and two interleaved would
    // query the database twice and garble the live view's cursor moves.
    let rendering: ReturnType<typeof drawView> | undefined;
    const render = async (final = false): ReturnType<typeof drawView> => {
      // A render under way serves a caller that only wants the numbers; the final one draws after it.
      while (rendering) {
        const done = await rendering.catch(() => undefined);
        if (!final && done) return done;
      }
      const current = drawView(final);
      rendering = current;
      try {
        return await current;
      } finally {
        if (rendering === current) rendering = undefined;
      }
    };
    const drawView = async (final: boolean) => {
      const [c, m] = await Promise.all([counts(), metrics()]);
      const rows = progressRows(c, m, running.status(), running.problems());
      if (live) {
        if (waitingFor && !final) rows.push(waitingFor);
        // The rows may shrink (a problem line goes away): clear what is below them too.
        out(`${lines ? `\x1b[${lines}A` : ''}${rows.map((r) => `\x1b[2K${r}`).join('\n')}\n\x1b[J`);
        lines = rows.length;
      } else if (final || !options.quiet) out(`${quietLine(rows)}\n`);
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
    if (options.untilIdle) {
      // Zero comes once the demand has been gone for the idle timeout and the scale-down delay.
      const longestWaitMs = Math.max(0, ...running.functions.map((fn) => (fn.scale ? Math.max(fn.scale.idleTimeoutMs, fn.scale.scaleDownDelayMs) : 0)));
      waitingFor = `every order is through; waiting for the functions to scale to zero (after ${Math.ceil(longestWaitMs / 1000)}s idle)…`;
      if (!live) out(`${options.quiet ? '' : '\n'}${waitingFor}\n`);
      await render();
      const idleDeadline = Date.now() + longestWaitMs + 30_000;
      while (!running.scaledToZero() && Date.now() < idleDeadline) await pause(200);
    }
    clearInterval(ticker);
    const { c, m } = await render(true);
    await pause(0);
    const latency = await db.query<{ ms: number }>('SELECT extract(epoch FROM assigned_at - created_at) * 1000 AS ms FROM orders WHERE is_agent_assigned ORDER BY 1');
    const sorted = latency.rows.map((r) => Number(r.ms));
    const twice = await db.query<{ n: string }>('SELECT count(*) AS n FROM (SELECT function_name, order_id FROM processed_events GROUP BY 1, 2 HAVING count(*) > 1) d');
    const paidTwice = await db.query<{ n: string }>('SELECT count(*) AS n FROM (SELECT order_id FROM payments GROUP BY 1 HAVING count(*) > 1) d');
    const replicas = running.status();
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
      replicas: Object.fromEntries([...replicas].map(([name, r]) => [name, { peak: r.peakReady, final: r.ready, restarts: r.restarts }])),
    };
    out(
      `\nsummary: ${summary.completed}/${summary.placed} orders completed, ${summary.retries} retries, ${summary.deadLetters} dead letters, ` +
        `order → agent assigned p50 ${summary.p50Ms} ms, p99 ${summary.p99Ms} ms, processed twice: ${summary.processedTwice}\n` +
        `${replicaSummary(replicas)}\n`,
    );
    return summary;
  } catch (error) {
    // Ctrl-C reaches Postgres at the same moment: its "terminating connection" can be read before this
    // process has run its own SIGINT handler. Give a signal already delivered the moment it needs.
    if (!interrupted.signal.aborted) await new Promise((resolve) => setTimeout(resolve, 100));
    throw interrupted.signal.aborted ? new DemoInterrupted() : error;
  } finally {
    clearInterval(ticker);
    // The dispatcher first, while the functions still answer its deliveries in flight; then the
    // replicas, each finishing its requests; the sweep after catches anything left.
    await functions?.stopScaling();
    if (dispatcher) await processes.stop(dispatcher, 15_000);
    await functions?.stop();
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
export function parseDemoDurationSeconds(text: string, flag = '--duration'): number {
  if (/^(\d+\.?\d*|\.\d+)$/.test(text)) return Number(text);
  try {
    return parseDuration(text) / 1000;
  } catch (error) {
    if (!(error instanceof InvalidDurationError)) throw error;
    throw new Error(`${flag} must be a duration such as 20s, 1m or 500ms, or a number of seconds, got "${text}"`);
  }
}

/** The demo's options from its command line; throws a message naming the flag that is wrong. */
export function parseDemoArgs(argv: string[]): DemoOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      rate: { type: 'string' },
      duration: { type: 'string' },
      'payment-failure-rate': { type: 'string' },
      quiet: { type: 'boolean' },
      'idle-timeout': { type: 'string' },
      'until-idle': { type: 'boolean' },
      'no-until-idle': { type: 'boolean' },
    },
  });
  const paymentFailureRate = positive('--payment-failure-rate', values['payment-failure-rate'], 0.2);
  if (paymentFailureRate > 1) throw new Error('--payment-failure-rate must be between 0 and 1');
  if (values['until-idle'] && values['no-until-idle']) throw new Error('--until-idle and --no-until-idle contradict each other: give one');
  const idleTimeout = values['idle-timeout'];
  return {
    ratePerSecond: positive('--rate', values.rate, 5),
    durationSeconds: values.duration === undefined ? 20 : parseDemoDurationSeconds(values.duration),
    paymentFailureRate,
    quiet: values.quiet ?? false,
    // Scale-to-zero is half the story: shown unless asked not to.
    untilIdle: !values['no-until-idle'],
    ...(idleTimeout !== undefined ? { idleTimeoutMs: Math.round(parseDemoDurationSeconds(idleTimeout, '--idle-timeout') * 1000) } : {}),
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
