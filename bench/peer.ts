/**
 * eventide beside a peer, Debezium Server, on the same Postgres, the same rows and the same local HTTP
 * sink: `npm run bench:peer [-- --quick] [--only unbatched,batched,latency] [--rows 100000] [--txn-rows 1000]
 * [--batch-size 100] [--latency-rate 500] [--latency-seconds 10] [--runs 2] [--warmup-rows 1000]
 * [--eventide-concurrency 64] [--java-home DIR] [--debezium-props "k=v,k=v"]`. Every flag can also be
 * given as an environment variable (BENCH_ROWS=20000, ...).
 *
 * Debezium Server 3.6.1.Final's distribution (io.debezium:debezium-server-dist, tar.gz, ~780 MB) is
 * downloaded from Maven Central once into .cache/debezium/ and unpacked there; it runs on the newest
 * Java 21+ runtime found on the machine (bench/peer/debezium.ts), with the JVM's defaults.
 *
 * Each system is alone on the machine while measured: one is started, measured and stopped, then the
 * other, in alternating order (run 1 eventide first, run 2 Debezium first, ...), --runs times each.
 * Every start uses a fresh replication slot (pgoutput) of its own, created just before (eventide reads
 * publication "bench", Debezium "dbz_bench", both FOR TABLE public.orders), and Debezium a fresh offsets
 * file; once the slot is active, --warmup-rows rows are written and waited for at the sink, uncounted.
 *
 * 1. Unbatched throughput: the process is frozen (SIGSTOP), --rows inserts are written in transactions
 *    of --txn-rows, then it is woken; events/s at the sink, first to last receipt.
 * 2. Batched throughput: the same with eventide's batch.maxSize --batch-size and Debezium's HTTP sink
 *    batch mode (debezium.sink.http.batch.enabled, batch.max-size --batch-size).
 * 3. Latency: --latency-rate rows/s, one row per transaction, for --latency-seconds, unbatched and
 *    batched; sink receipt time minus the event's commit time (eventide's ce-time, Debezium's CloudEvents
 *    `time`, which is the source's ts_ms: both the transaction's commit timestamp), ms resolution.
 * 4. Resources, from /proc/<pid>: CPU time (user + system, every thread) per 1000 events, taken from
 *    just before the process is woken (or the writer starts) to the last event; peak RSS is VmHWM, the
 *    process's peak over its life (start-up included), read when the last event has arrived.
 *
 * The sink (bench/sink.ts) answers every request 200 at once with an empty body, for both; each run
 * checks that the sink counted exactly the rows written, a second after the last one arrived.
 */

import type pg from 'pg';
import { runBench } from './benchMain.js';
import { benchFlags } from './flags.js';
import { cpuSecondsOf, createSlots, dropSlot, memoryOf, SCHEMA, sinkHas, sleep, slotActive, waitFor, writeAtRate, writeRows } from './harness.js';
import { DEBEZIUM_DIST_URL, DEBEZIUM_VERSION, debeziumProperties, ensureDebeziumServer, findJava, jvmDefaults } from './peer/debezium.js';
import { DEBEZIUM_PUBLICATION, debeziumPeer, eventidePeer, type PeerProcess, type PeerSystem } from './peer/systems.js';
import { fmtMs, fmtRate, latencyRatio, notes, record } from './report.js';
import type { Sink, SinkStats } from './sink.js';

const PHASES = 'unbatched,batched,latency';

interface Options {
  phases: Set<string>;
  rows: number;
  txnRows: number;
  batchSize: number;
  latencyRate: number;
  latencySeconds: number;
  runs: number;
  warmupRows: number;
  eventideConcurrency: number;
  javaHome: string | undefined;
  debeziumProps: Record<string, string>;
}

function options(): Options {
  const { text, number, given } = benchFlags([
    'only',
    'rows',
    'txn-rows',
    'batch-size',
    'latency-rate',
    'latency-seconds',
    'runs',
    'warmup-rows',
    'eventide-concurrency',
    'java-home',
    'debezium-props',
  ]);
  const phases = new Set(text('only', PHASES, PHASES).split(','));
  for (const phase of phases) if (!PHASES.split(',').includes(phase)) throw new Error(`--only: unknown phase "${phase}" (phases: ${PHASES})`);
  const debeziumProps: Record<string, string> = {};
  for (const pair of (given('debezium-props') ?? '').split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--debezium-props: "${pair}" is not name=value`);
    debeziumProps[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return {
    phases,
    rows: number('rows', 100_000, 20_000),
    txnRows: number('txn-rows', 1000, 1000),
    batchSize: number('batch-size', 100, 100),
    latencyRate: number('latency-rate', 500, 500),
    latencySeconds: number('latency-seconds', 10, 5),
    runs: number('runs', 2, 1),
    warmupRows: number('warmup-rows', 1000, 1000),
    eventideConcurrency: number('eventide-concurrency', 64, 64),
    javaHome: given('java-home'),
    debeziumProps,
  };
}

// ---------------------------------------------------------------------------------------------
// One measured run of one system
// ---------------------------------------------------------------------------------------------

interface Scenario {
  key: string;
  label: string;
  kind: 'throughput' | 'latency';
  batchSize: number | undefined;
}

interface RunResult {
  /** Events the sink counted a second after the last expected one, and how many rows were written. */
  events: number;
  expected: number;
  requests: number;
  cpuMsPerK: number;
  peakRssMiB: number;
  idleRssMiB: number;
  rate?: number;
  latency?: { p50: number; p99: number; max: number };
  /** Latency runs: the rate the writer reached (rows/s), which falls short when commits take over 1/rate s. */
  writtenRate?: number;
  /** Bytes of body of the first request, and its content type. */
  sample?: { bytes: number; contentType: string };
}

interface Context {
  db: pg.Client;
  sink: Sink;
  options: Options;
}

async function untilStreaming(db: pg.Client, system: PeerSystem, proc: PeerProcess, slot: string): Promise<void> {
  await waitFor(
    `${system.name} to stream from slot ${slot}`,
    async () => {
      if (proc.exited()) throw new Error(`${system.name} exited:\n${proc.output().slice(-4000)}`);
      return slotActive(db, slot);
    },
    180_000,
    () => proc.output().slice(-4000),
    200,
  );
}

async function measure(ctx: Context, system: PeerSystem, scenario: Scenario, run: number): Promise<RunResult> {
  const { db, sink, options } = ctx;
  const slot = `${system.slotPrefix}_${scenario.key}_${run}`;
  await createSlots(db, [slot]);
  await sink.reset();
  const proc = await system.start(slot, sink.url, scenario.batchSize);
  try {
    await untilStreaming(db, system, proc, slot);
    await writeRows(db, options.warmupRows, options.txnRows);
    await sinkHas(sink, options.warmupRows, proc, 180_000);
    await sleep(1000);
    const idleRssMiB = memoryOf(proc.pid).rss;
    let expected: number;
    let cpuBefore: number;
    let stats: SinkStats;
    let writtenRate: number | undefined;
    if (scenario.kind === 'throughput') {
      await sink.reset(false);
      cpuBefore = cpuSecondsOf(proc.pid);
      process.kill(proc.pid, 'SIGSTOP');
      try {
        await writeRows(db, options.rows, options.txnRows);
        // Background work on the fresh rows would otherwise compete with the delivery.
        await db.query('VACUUM ANALYZE public.orders');
        await db.query('CHECKPOINT');
      } finally {
        process.kill(proc.pid, 'SIGCONT');
      }
      expected = options.rows;
      stats = await sinkHas(sink, expected, proc);
    } else {
      await sink.reset(true);
      cpuBefore = cpuSecondsOf(proc.pid);
      const written = await writeAtRate(db, options.latencyRate, options.latencySeconds, 'orders', 1);
      expected = written.written;
      writtenRate = expected / options.latencySeconds;
      stats = await sinkHas(sink, expected, proc, 180_000);
    }
    const cpu = cpuSecondsOf(proc.pid) - cpuBefore;
    const peakRssMiB = memoryOf(proc.pid).hwm;
    await sleep(1000);
    const settled = await sink.stats();
    const result: RunResult = {
      events: settled.events,
      expected,
      requests: settled.requests,
      cpuMsPerK: (cpu * 1000) / (expected / 1000),
      peakRssMiB,
      idleRssMiB,
      ...(settled.sample ? { sample: { bytes: Buffer.byteLength(settled.sample.body), contentType: settled.sample.headers['content-type'] ?? '' } } : {}),
    };
    if (scenario.kind === 'throughput') result.rate = expected / ((stats.lastAt - stats.firstAt) / 1000);
    else {
      if (settled.latency) result.latency = { p50: settled.latency.p50, p99: settled.latency.p99, max: settled.latency.max };
      result.writtenRate = writtenRate;
    }
    return result;
  } finally {
    await proc.stop();
    await waitFor(`slot ${slot} to be released`, async () => !(await slotActive(db, slot)), 60_000);
    await dropSlot(db, slot);
  }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** The mean, with the range over runs when there is more than one. */
function spread(xs: number[], fmt: (x: number) => string): string {
  if (xs.length === 1) return fmt(xs[0]!);
  return `${fmt(mean(xs))} (${fmt(Math.min(...xs))} – ${fmt(Math.max(...xs))})`;
}
const fmtMiB = (x: number) => `${x.toFixed(1)} MiB`;
const fmtCpu = (x: number) => `${x.toFixed(0)} ms`;

function report(scenarios: Scenario[], results: Map<string, Map<string, RunResult[]>>, systems: PeerSystem[], options: Options): void {
  const [ev, dbz] = systems.map((s) => s.name) as [string, string];
  const of = (scenario: Scenario, system: string) => results.get(scenario.key)?.get(system) ?? [];
  for (const scenario of scenarios) {
    const a = of(scenario, ev);
    const b = of(scenario, dbz);
    if (!a.length || !b.length) continue;
    if (scenario.kind === 'throughput') {
      const ra = a.map((r) => r.rate!);
      const rb = b.map((r) => r.rate!);
      record({
        figure: `${scenario.label}: events/s at the sink`,
        value: spread(ra, (x) => fmtRate(x, 'ev/s')),
        baseline: spread(rb, (x) => fmtRate(x, 'ev/s')),
        ratio: mean(ra) / mean(rb),
        target: '',
      });
    } else {
      for (const q of ['p50', 'p99'] as const) {
        const la = a.map((r) => r.latency?.[q] ?? NaN);
        const lb = b.map((r) => r.latency?.[q] ?? NaN);
        record({ figure: `${scenario.label}: commit → sink ${q}`, value: spread(la, fmtMs), baseline: spread(lb, fmtMs), ratio: latencyRatio(mean(la), mean(lb)), target: '' });
      }
    }
  }
  for (const scenario of scenarios) {
    const a = of(scenario, ev);
    const b = of(scenario, dbz);
    if (!a.length || !b.length) continue;
    const ca = a.map((r) => r.cpuMsPerK);
    const cb = b.map((r) => r.cpuMsPerK);
    record({ figure: `${scenario.label}: CPU per 1000 events`, value: spread(ca, fmtCpu), baseline: spread(cb, fmtCpu), ratio: mean(ca) / mean(cb), target: '' });
  }
  for (const scenario of scenarios.filter((s) => s.kind === 'throughput')) {
    const a = of(scenario, ev);
    const b = of(scenario, dbz);
    if (!a.length || !b.length) continue;
    const pa = Math.max(...a.map((r) => r.peakRssMiB));
    const pb = Math.max(...b.map((r) => r.peakRssMiB));
    record({ figure: `${scenario.label}: peak RSS (VmHWM, highest run)`, value: fmtMiB(pa), baseline: fmtMiB(pb), ratio: pa / pb, target: '' });
  }
  const idle = systems.map((s) => [...results.values()].flatMap((bySystem) => bySystem.get(s.name) ?? []).map((r) => r.idleRssMiB));
  if (idle[0]!.length && idle[1]!.length) {
    record({ figure: 'RSS after start-up and warm-up (mean of all runs)', value: fmtMiB(mean(idle[0]!)), baseline: fmtMiB(mean(idle[1]!)), ratio: mean(idle[0]!) / mean(idle[1]!), target: '' });
  }
  const exactness = (system: string) => {
    const all = scenarios.flatMap((s) => of(s, system).map((r) => ({ s, r })));
    const off = all.filter(({ r }) => r.events !== r.expected);
    const total = all.reduce((sum, { r }) => sum + r.events, 0);
    return off.length === 0 ? `all ${all.length} runs exact (${total.toLocaleString('en-US')} events)` : `MISMATCH: ${off.map(({ s, r }) => `${s.key} ${r.events}/${r.expected}`).join(', ')}`;
  };
  record({ figure: 'events at the sink = rows written', value: exactness(ev), baseline: exactness(dbz), ratio: NaN, target: '' });
  for (const scenario of scenarios) {
    for (const system of systems) {
      const runs = of(scenario, system.name);
      if (!runs.length) continue;
      const r = runs[0]!;
      notes.push(
        `${scenario.label}, ${system.name}: ${(mean(runs.map((x) => x.events / x.requests))).toFixed(1)} events per request; first request ${r.sample?.bytes ?? '?'} bytes of body, ${r.sample?.contentType ?? '?'}` +
          (r.latency ? `; latency max ${runs.map((x) => fmtMs(x.latency?.max ?? NaN)).join(', ')}; writer reached ${runs.map((x) => fmtRate(x.writtenRate ?? NaN, 'rows/s')).join(', ')}` : ''),
      );
    }
  }
  const short = scenarios.flatMap((s) => systems.flatMap((system) => of(s, system.name))).filter((r) => r.writtenRate !== undefined && r.writtenRate < 0.95 * options.latencyRate);
  if (short.length) {
    notes.push(`WARNING: in ${short.length} latency run(s) the writer fell below 95 % of ${options.latencyRate} rows/s (one commit per row is slower than 1/rate here: the machine is busy)`);
  }
  notes.push(`ratio = eventide ÷ Debezium Server (rates: higher is better for eventide; latency, CPU and RSS: lower is). Values are the mean over ${options.runs} run(s), the range in brackets.`);
}

// ---------------------------------------------------------------------------------------------

async function prepare(): Promise<{ opts: ReturnType<typeof options>; java: NonNullable<ReturnType<typeof findJava>>; jvm: string; serverDir: string }> {
  const opts = options();
  const java = findJava(21, opts.javaHome);
  if (!java) {
    console.error(
      'No Java 21+ runtime found (looked at JAVA_HOME, /usr/lib/jvm/*, /opt/*): Debezium Server 3.x needs Java 21. ' + 'Install one (e.g. a Temurin 21+ JDK) or pass --java-home DIR; stopping.',
    );
    process.exit(2);
  }
  const jvm = jvmDefaults(java);
  console.log(`Java for Debezium Server: ${java.home} (${java.version}); JVM defaults here: ${jvm}`);
  const serverDir = await ensureDebeziumServer();
  console.log(`Debezium Server: ${serverDir} (from ${DEBEZIUM_DIST_URL})`);

  return { opts, java, jvm, serverDir };
}

void prepare().then(({ opts, java, jvm, serverDir }) =>
  runBench(
    `eventide vs Debezium Server ${DEBEZIUM_VERSION}`,
    async ({ pgServer, db, sink }) => {
      await db.query(SCHEMA);
      await db.query(`CREATE PUBLICATION ${DEBEZIUM_PUBLICATION} FOR TABLE public.orders`);
      const user = new URL(pgServer.url).username;
      const debeziumBase = {
        java,
        serverDir,
        database: { host: '127.0.0.1', port: pgServer.port, user, dbname: 'postgres' },
        table: 'public.orders',
        extra: opts.debeziumProps,
      };
      const systems = [eventidePeer(pgServer.url, opts.eventideConcurrency), debeziumPeer(debeziumBase)];

      const shown = debeziumProperties({ ...debeziumBase, slot: '<fresh slot per run>', publication: DEBEZIUM_PUBLICATION, sinkUrl: sink.url, batchSize: opts.batchSize }, '<fresh dir per run>', 0);
      console.log(`\nDebezium Server config/application.properties (batch.* only in the batched runs; quarkus.http.port a free port):`);
      for (const [k, v] of Object.entries(shown)) console.log(`  ${k}=${v}`);
      console.log(
        `eventide: \`eventide dispatch\`, one EventTrigger on inserts of public.orders, concurrency ${opts.eventideConcurrency}, ` +
          `batch.maxSize 1 (unbatched) or ${opts.batchSize}, CloudEvents binary mode (the trigger's default format), started as \`npx eventide dispatch\` is (the command sizes its heap)`,
      );

      const scenarios: Scenario[] = [];
      const txn = `${opts.rows.toLocaleString('en-US')} inserts in ${opts.txnRows}-row txns`;
      if (opts.phases.has('unbatched')) scenarios.push({ key: 'unbatched', label: `unbatched, ${txn}`, kind: 'throughput', batchSize: undefined });
      if (opts.phases.has('batched')) scenarios.push({ key: 'batched', label: `batched (${opts.batchSize}), ${txn}`, kind: 'throughput', batchSize: opts.batchSize });
      if (opts.phases.has('latency')) {
        const at = `@${opts.latencyRate} rows/s, 1 row/txn, ${opts.latencySeconds} s`;
        scenarios.push({ key: 'lat_unbatched', label: `latency unbatched ${at}`, kind: 'latency', batchSize: undefined });
        scenarios.push({ key: 'lat_batched', label: `latency batched (${opts.batchSize}) ${at}`, kind: 'latency', batchSize: opts.batchSize });
      }
      const results = new Map<string, Map<string, RunResult[]>>();
      const ctx: Context = { db, sink, options: opts };
      for (let run = 0; run < opts.runs; run++) {
        const order = run % 2 === 0 ? systems : [...systems].reverse();
        console.log(`\nrun ${run + 1} of ${opts.runs}: ${order.map((s) => s.name).join(' then ')} in each scenario`);
        for (const scenario of scenarios) {
          for (const system of order) {
            const t0 = Date.now();
            const result = await measure(ctx, system, scenario, run);
            const bySystem = results.get(scenario.key) ?? new Map<string, RunResult[]>();
            results.set(scenario.key, bySystem);
            bySystem.set(system.name, [...(bySystem.get(system.name) ?? []), result]);
            const figure =
              result.rate !== undefined
                ? fmtRate(result.rate, 'ev/s')
                : `p50 ${fmtMs(result.latency?.p50 ?? NaN)} p99 ${fmtMs(result.latency?.p99 ?? NaN)} (writer reached ${fmtRate(result.writtenRate ?? NaN, 'rows/s')})`;
            console.log(
              `  ${scenario.label} — ${system.name}: ${figure}, ${result.events.toLocaleString('en-US')}/${result.expected.toLocaleString('en-US')} events in ${result.requests.toLocaleString('en-US')} requests, ` +
                `CPU ${fmtCpu(result.cpuMsPerK)}/1000 ev, VmHWM ${fmtMiB(result.peakRssMiB)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
            );
          }
        }
      }
      console.log('');
      report(scenarios, results, systems, opts);
      notes.push(
        `Debezium Server's HTTP sink sends one request at a time (java.net.http.HttpClient.send, synchronous; it has no concurrency setting); eventide keeps up to ${opts.eventideConcurrency} requests in flight (the trigger's concurrency)`,
        'Debezium Server runs with its defaults besides the properties printed above: poll.interval.ms 500 and max.batch.size 2048 (a poll returns when 2048 events are queued or 500 ms have passed), ' +
          'offset.flush.interval.ms 60000, decimal.handling.mode precise (numeric as base64 bytes); its HTTP client offers h2c on the first request and the sink stays on HTTP/1.1',
        `JVM: ${java.version}, no JAVA_OPTS (${jvm}); eventide: node ${process.version}, no NODE_OPTIONS`,
      );
    },
    { value: 'eventide', baseline: 'Debezium Server', target: '', verdict: '' },
  ),
);
