/**
 * 4. Memory: a dispatcher child is started on an empty slot and its idle VmRSS read; it is then frozen
 *    (SIGSTOP) while R rows (--rss-rows) are written (transactions of 10k), woken, and sampled every
 *    100 ms until the sink has every event. Peak = VmHWM. Baseline: the same process's idle RSS. Twice:
 *    with V8's default heap and with the NODE_OPTIONS the operator gives dispatcher pods.
 */
import type pg from 'pg';
import type { EmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { DEFAULT_DISPATCHER_RESOURCES } from '../../operator/eventtrigger/dispatcher.js';
import { dispatcherNodeOptions } from '../../operator/eventtrigger/nodeHeap.js';
import { createSlots, dropSlot, memoryOf, sinkHas, sleep, startBenchDispatcher, stopBenchDispatcher, TXN_ROWS, triggerManifest, writeWhileFrozen } from '../harness.js';
import { fmtRate, notes, record } from '../report.js';
import type { Sink, SinkStats } from '../sink.js';

export interface MemoryBenchOptions {
  rssRows: number;
  rssBatchSize: number;
}

/**
 * The V8 flags the operator gives dispatcher pods with the default resources (NODE_OPTIONS from the
 * memory limit: a small young generation, old space capped at half the limit), so the second memory
 * run measures the dispatcher as deployed.
 */
const MEMORY_CAPPED_V8_FLAGS = dispatcherNodeOptions(DEFAULT_DISPATCHER_RESOURCES).split(' ');

export async function benchMemory(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: MemoryBenchOptions): Promise<void> {
  for (const v8Flags of [[], MEMORY_CAPPED_V8_FLAGS]) await benchMemoryWith(pgServer, db, sink, options, v8Flags);
}

async function benchMemoryWith(pgServer: EmbeddedPostgres, db: pg.Client, sink: Sink, options: MemoryBenchOptions, v8Flags: readonly string[]): Promise<void> {
  const n = options.rssRows;
  const batchSize = options.rssBatchSize;
  const flagsLabel = v8Flags.length
    ? `operator's NODE_OPTIONS for ${DEFAULT_DISPATCHER_RESOURCES.limits?.memory ?? 'no'} limit (${v8Flags.join(' ')})`
    : '`npx eventide dispatch` as a user starts it (no NODE_OPTIONS: the command sizes the heap)';
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
    const { seconds: writeSeconds } = await writeWhileFrozen(db, run, n);
    console.log(`  wrote ${n.toLocaleString('en-US')} rows in ${writeSeconds.toFixed(1)} s while the dispatcher was frozen`);
    let maxRss = 0;
    const sampler = setInterval(() => (maxRss = Math.max(maxRss, memoryOf(pid).rss)), 100);
    let stats: SinkStats;
    try {
      stats = await sinkHas(sink, n, run, 20 * 60_000);
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
