/**
 * 2. End to end: `eventide dispatch` (bin/eventide.mjs, a child process) drains a backlog of M inserts
 *    (--e2e-rows) to the sink, unbatched at each --concurrency and with batch.maxSize --batch-size. Rates
 *    are taken at the sink, first to last receipt. Baselines: a bare undici client (the Agent of
 *    bench/sink.ts's bareAgent) sending the dispatcher's own request (headers and body, captured at the
 *    sink) with the same concurrency; for batched delivery the raw decode rate of (1). The unbatched rates
 *    are the capacity the latency phase sets its rate from.
 */
import type pg from 'pg';
import { request } from 'undici';
import type { EmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { cpuSecondsOf, createSlots, dropSlot, sinkHas, startBenchDispatcher, stopBenchDispatcher, triggerManifest, writeRows } from '../harness.js';
import { fmtRate, notes, record } from '../report.js';
import { bareAgent, replayOf, type Sink, type SinkRequest, type SinkStats } from '../sink.js';

export interface EndToEndBenchOptions {
  e2eRows: number;
  concurrencies: number[];
  batchSize: number;
}

/** Unbatched events/s at the sink, by concurrency. */
export type UnbatchedRates = Map<number, number>;

/**
 * Delivers the slot's backlog of `n` events with `bin` (default: this checkout's); the rate is taken at
 * the sink, first to last receipt, the CPU is the dispatcher's.
 */
export async function drainBacklog(
  url: string,
  sink: Sink,
  slot: string,
  n: number,
  spec: { concurrency: number; batchSize: number },
  bin?: string,
): Promise<{ rate: number; cpuPerK: number; stats: SinkStats }> {
  await sink.reset();
  const run = await startBenchDispatcher(url, slot, [triggerManifest(sink.url, spec)], bin ? { bin } : {});
  const pid = run.pid;
  const cpuBefore = cpuSecondsOf(pid);
  try {
    const stats = await sinkHas(sink, n, run);
    const cpu = cpuSecondsOf(pid) - cpuBefore;
    return { rate: n / ((stats.lastAt - stats.firstAt) / 1000), cpuPerK: (cpu * 1000) / (n / 1000), stats };
  } finally {
    await stopBenchDispatcher(run);
  }
}

/**
 * The unbatched capacity at `concurrency` on its own: `n` inserts written (transactions of 10k) to a
 * fresh slot, then drained as in the end-to-end phase; events/s at the sink.
 */
export async function unbatchedCapacity(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, n: number, concurrency: number): Promise<number> {
  const slot = `capacity_c${concurrency}`;
  await createSlots(db, [slot]);
  try {
    await writeRows(db, n);
    return (await drainBacklog(pgServer.url, sink, slot, n, { concurrency, batchSize: 1 })).rate;
  } finally {
    await dropSlot(db, slot);
  }
}

/** A bare undici client: `total` POSTs of the same request with `concurrency` in flight. Rate taken at the sink. */
async function bareClient(sink: Sink, total: number, concurrency: number, outgoing: SinkRequest): Promise<{ rate: number; cpuPerK: number }> {
  await sink.reset();
  const cpuBefore = process.cpuUsage();
  const agent = bareAgent();
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

/** Returns the unbatched rates it measured, by concurrency. */
export async function benchEndToEnd(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: EndToEndBenchOptions, rawDecodeRate: number | undefined): Promise<UnbatchedRates> {
  const n = options.e2eRows;
  console.log(`\n[2] end to end: a backlog of ${n.toLocaleString('en-US')} inserts drained by \`eventide dispatch\` to the sink`);
  const configs = [
    ...options.concurrencies.map((concurrency) => ({ slot: `e2e_c${concurrency}`, concurrency, batchSize: 1 })),
    { slot: `e2e_b${options.batchSize}`, concurrency: 64, batchSize: options.batchSize },
  ];
  await createSlots(
    db,
    configs.map((c) => c.slot),
  );
  const writeSeconds = await writeRows(db, n);
  console.log(`  wrote ${n.toLocaleString('en-US')} rows in ${writeSeconds.toFixed(1)} s`);
  const unbatched: UnbatchedRates = new Map();
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
        target: '≥ 0.40×',
        ...(rawDecodeRate ? { check: result.rate / rawDecodeRate >= 0.4 } : {}),
      });
      continue;
    }
    unbatched.set(config.concurrency, result.rate);
    const outgoing = replayOf(result.stats);
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
  return unbatched;
}
