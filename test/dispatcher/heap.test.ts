/**
 * `eventide dispatch` started by hand sizes its own heap, as the operator sizes a pod's with NODE_OPTIONS:
 * run as a command (npx) its shell lines give node the operator's flags; run as `node bin/eventide.mjs`
 * it runs in a worker thread with small limits. Heap flags given by the user win; SIGTERM still drains
 * and exits 0. The real command, as a child process.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { binHeapFlags } from '../../common/binHeapFlags.js';
import { logLines } from '../harness/deliveryHelpers.js';
import { startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually, startRecordingSink } from '../harness/recordingSink.js';

describe('the dispatcher heap', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  it("without heap flags it sizes its heap (as a command: node with the operator's flags; under node: a worker); with them it runs as told; SIGTERM drains and exits 0 every way", async () => {
    const db = await startSourceDatabase('CREATE TABLE orders (id int PRIMARY KEY)');
    cleanups.push(() => db.close());
    const sink = await startRecordingSink();
    cleanups.push(() => sink.close());
    const file = writeManifests([triggerManifest('orders', { sink: { url: sink.url }, operations: ['insert'] })]);
    const heapOf = (output: string) => logLines(output).find((l) => l.msg === 'dispatcher started')?.heapLimitMiB as number | undefined;

    const nodeFlagsOf = (pid: number) =>
      readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        .split('\0')
        .filter((a) => a.startsWith('--max-'));
    for (const { nodeOptions, asCommand, expectLimit, nodeFlags } of [
      // node bin/eventide.mjs: a worker with the small heap of heapLimits.ts
      { nodeOptions: '', asCommand: false, expectLimit: (mib: number) => expect(mib).toBeLessThan(300), nodeFlags: [] },
      // run as a command (npx eventide): node itself gets the heap flags the operator gives a pod
      { nodeOptions: '', asCommand: true, expectLimit: (mib: number) => expect(mib).toBeLessThan(300), nodeFlags: binHeapFlags() },
      // heap flags given by the user win, either way
      { nodeOptions: '--max-old-space-size=1024', asCommand: false, expectLimit: (mib: number) => expect(mib).toBeGreaterThanOrEqual(1024), nodeFlags: [] },
      { nodeOptions: '--max-old-space-size=1024', asCommand: true, expectLimit: (mib: number) => expect(mib).toBeGreaterThanOrEqual(1024), nodeFlags: [] },
    ]) {
      const proc = await startDispatcherProcess(['--database-url', db.url, '-f', file], { NODE_OPTIONS: nodeOptions }, { asCommand });
      cleanups.push(() => proc.kill('SIGKILL'));
      await proc.ready(60_000);
      expectLimit(heapOf(proc.output())!);
      expect(nodeFlagsOf(proc.child.pid!)).toEqual(nodeFlags);
      const before = sink.requests.length;
      await db.sql('INSERT INTO orders SELECT max(id) + 1 FROM (SELECT id FROM orders UNION SELECT 0) k');
      await eventually(() => sink.requests.length > before, 10_000, 'a delivery');
      expect(await proc.kill('SIGTERM')).toBe(0);
      expect(proc.output()).toContain('dispatcher stopped');
    }
  }, 120_000);
});
