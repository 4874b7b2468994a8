/**
 * `eventide dispatch` started by hand sizes its own heap (a worker thread with small limits), as the
 * operator sizes a pod's with NODE_OPTIONS; heap flags given by the user win; SIGTERM still drains and
 * exits 0 through the worker. The real command, as a child process.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { logLines } from '../harness/deliveryHelpers.js';
import { startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually, startRecordingSink } from '../harness/recordingSink.js';

describe('the dispatcher heap', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  it('without heap flags it runs in a worker with a small heap; with them it runs as told; SIGTERM drains and exits 0 either way', async () => {
    const db = await startSourceDatabase('CREATE TABLE orders (id int PRIMARY KEY)');
    cleanups.push(() => db.close());
    const sink = await startRecordingSink();
    cleanups.push(() => sink.close());
    const file = writeManifests([triggerManifest('orders', { sink: { url: sink.url }, operations: ['insert'] })]);
    const heapOf = (output: string) => logLines(output).find((l) => l.msg === 'dispatcher started')?.heapLimitMiB as number | undefined;

    for (const [nodeOptions, expectLimit] of [
      ['', (mib: number) => expect(mib).toBeLessThan(600)],
      ['--max-old-space-size=1024', (mib: number) => expect(mib).toBeGreaterThanOrEqual(1024)],
    ] as const) {
      const proc = await startDispatcherProcess(['--database-url', db.url, '-f', file], { NODE_OPTIONS: nodeOptions });
      cleanups.push(() => proc.kill('SIGKILL'));
      await proc.ready(60_000);
      expectLimit(heapOf(proc.output())!);
      const before = sink.requests.length;
      await db.sql('INSERT INTO orders SELECT max(id) + 1 FROM (SELECT id FROM orders UNION SELECT 0) k');
      await eventually(() => sink.requests.length > before, 10_000, 'a delivery');
      expect(await proc.kill('SIGTERM')).toBe(0);
      expect(proc.output()).toContain('dispatcher stopped');
    }
  }, 120_000);
});
