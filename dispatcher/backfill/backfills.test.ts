import { describe, expect, it } from 'vitest';
import type { BackfillResource } from '../../api/v1alpha1/index.js';
import { silentLogger } from '../../common/logger.js';
import type { DecodedRowChange } from '../pipeline/changeIntake.js';
import type { ServedConfig } from '../servedConfig.js';
import { planBackfills, requestOf } from './backfills.js';
import { BackfillWindows, type ChunkListener } from './backfillWindows.js';
import { ChunkWindow } from './chunkWindow.js';
import { readEvent } from './readEvents.js';
import { parseSnapshot } from './snapshot.js';
import type { BackfillRecord } from './store.js';

function record(name: string, trigger: string, extra: Partial<BackfillRecord> = {}): BackfillRecord {
  const now = new Date();
  return {
    name,
    run: 'r1',
    origin: 'manifest',
    trigger,
    batchSize: 1000,
    phase: 'Pending',
    cursor: null,
    rowsRead: 0,
    rowsSent: 0,
    rowsEstimate: null,
    message: null,
    createdAt: now,
    startedAt: null,
    finishedAt: null,
    updatedAt: now,
    ...extra,
  };
}

function resource(name: string, trigger: string): BackfillResource {
  return { apiVersion: 'eventide.dev/v1alpha1', kind: 'Backfill', metadata: { name, namespace: 'test', uid: `uid-${name}` }, spec: { trigger: { name: trigger }, batchSize: 500 } };
}

function config(backfills: BackfillResource[], served: string[], aside: string[] = []): Pick<ServedConfig, 'backfills' | 'deliveries' | 'setAside'> {
  return {
    backfills,
    deliveries: new Map(served.map((k) => [k, {} as never])),
    setAside: new Map(aside.map((k) => [k, { problem: { reason: 'TableNotFound', message: 'x' } }])),
  };
}

describe('planning backfills', () => {
  it("runs the unfinished ones of its own triggers, cancels a resource that left the manifests, leaves other dispatchers' alone", () => {
    const records = [
      record('test/a', 'test/orders'),
      record('test/b', 'test/orders', { phase: 'Running' }),
      record('test/c', 'test/orders', { phase: 'Complete' }),
      record('test/cli', 'test/orders', { origin: 'cli' }),
      record('test/other', 'test/elsewhere'),
      record('test/aside', 'test/broken', { origin: 'cli' }),
    ];
    const plan = planBackfills(records, config([resource('a', 'orders'), resource('c', 'orders')], ['test/orders'], ['test/broken']));
    expect(plan.run.map((r) => r.name)).toEqual(['test/a', 'test/cli', 'test/aside']);
    expect(plan.cancel.map((r) => r.name)).toEqual(['test/b']);
    expect(plan.owned.map((r) => r.name)).toEqual(['test/a', 'test/b', 'test/c', 'test/cli', 'test/aside']);
  });

  it('cancels a backfill it runs whose trigger left the manifests with it', () => {
    const records = [record('test/gone', 'test/removed-trigger', { phase: 'Running' })];
    expect(planBackfills(records, config([], ['test/orders'])).cancel).toEqual([]); // not known: not ours to judge
    expect(planBackfills(records, config([], ['test/orders']), new Set(['test/gone'])).cancel.map((r) => r.name)).toEqual(['test/gone']);
  });

  it('asks for a resource by namespace/name, its trigger in the same namespace', () => {
    expect(requestOf(resource('fill', 'orders'))).toEqual({ name: 'test/fill', uid: 'uid-fill', origin: 'manifest', trigger: 'test/orders', batchSize: 500 });
  });
});

describe("the stream's view of chunks", () => {
  const table = { schema: 'public', name: 'orders' };
  const rowOf = (key: string) => ({
    key,
    event: readEvent({ triggerKey: 't', source: 's', backfill: { name: 'b' }, table, rowKey: key, rowJson: '{}', xmin: '1', lsn: '0/1', readAt: new Date(), ticket: { settled: () => undefined } }),
  });
  const watermark = (chunk: string, mark: 'low' | 'high') => Buffer.from(JSON.stringify({ chunk, mark }));
  const change = (rowKey: string) => ({ op: 'update', schema: 'public', table: 'orders', rowKey }) as DecodedRowChange;

  function listener(): ChunkListener & { events: string[] } {
    const events: string[] = [];
    return { events, opened: () => events.push('opened'), stale: () => events.push('stale'), closed: () => events.push('closed'), handedOn: (n) => events.push(`handedOn ${n}`) };
  }

  it('waits at the low watermark for the rows, then places reads just before the change that needs them', async () => {
    const windows = new BackfillWindows(silentLogger());
    const l = listener();
    windows.expect('c1', l);
    expect(windows.watching).toBe(false);
    const opening = windows.logicalMessage('eventide.backfill', watermark('c1', 'low'));
    expect(opening).toBeInstanceOf(Promise);
    windows.provide('c1', new ChunkWindow(table, parseSnapshot('100:110:'), [rowOf('1'), rowOf('2')]), parseSnapshot('100:110:'));
    await opening;
    expect(l.events).toEqual(['opened']);
    expect(windows.watching).toBe(true);
    const reads = windows.readsBefore(change('2'), 200, { commitLsn: 500n, changeLsn: 480n, ordinal: 0 });
    expect(reads.map((r) => [r.orderingKey, r.txn.commitLsn, r.changeLsn])).toEqual([['public.orders/2', 500n, 479n]]);
    expect(l.events).toEqual(['opened', 'handedOn 1']);
    windows.logicalMessage('eventide.backfill', watermark('c1', 'high'));
    expect(l.events.at(-1)).toBe('closed');
    // Someone else's message, an unknown chunk: passed by.
    expect(windows.logicalMessage('other', watermark('c1', 'low'))).toBeUndefined();
    expect(windows.logicalMessage('eventide.backfill', watermark('c9', 'low'))).toBeUndefined();
    windows.forget('c1');
    expect(windows.watching).toBe(false);
  });

  it('gives a chunk up when a transaction its snapshot saw running had already committed before the low watermark', async () => {
    const windows = new BackfillWindows(silentLogger());
    const l = listener();
    windows.committed(105); // committed in the stream before the low watermark...
    windows.expect('c2', l);
    const snapshot = parseSnapshot('100:110:105'); // ...but not yet visible to the chunk's snapshot
    windows.provide('c2', new ChunkWindow(table, snapshot, [rowOf('1')]), snapshot);
    await windows.logicalMessage('eventide.backfill', watermark('c2', 'low'));
    expect(l.events).toEqual(['stale']);
    expect(windows.watching).toBe(false);
  });
});
