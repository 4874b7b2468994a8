import { describe, expect, it } from 'vitest';
import { ChunkWindow } from './chunkWindow.js';
import { type ReadRow, readEvent, readEventId } from './readEvents.js';
import { parseSnapshot, snapshotMissedAnyOf, snapshotSaw, widenXid } from './snapshot.js';
import { TokenBucket } from './tokenBucket.js';

const table = { schema: 'public', name: 'orders' };

function row(key: string): ReadRow {
  const event = readEvent({
    triggerKey: 'test/orders',
    source: '/eventide/test/orders',
    backfill: { name: 'test/fill' },
    table,
    rowKey: key,
    rowJson: `{"id":${key}}`,
    xmin: '700',
    lsn: '0/1',
    readAt: new Date('2026-01-01T00:00:00Z'),
    ticket: { settled: () => undefined },
  });
  return { key, event };
}

const change = (op: string, rowKey: string, previousRowKey?: string) => ({ op, schema: 'public', table: 'orders', rowKey, ...(previousRowKey ? { previousRowKey } : {}) });

describe('snapshot visibility', () => {
  const snapshot = parseSnapshot('100:110:102,105');

  it('sees what finished before it, not what ran during it or began after it', () => {
    expect(snapshotSaw(snapshot, 99)).toBe(true);
    expect(snapshotSaw(snapshot, 101)).toBe(true);
    expect(snapshotSaw(snapshot, 102)).toBe(false);
    expect(snapshotSaw(snapshot, 105)).toBe(false);
    expect(snapshotSaw(snapshot, 110)).toBe(false);
    expect(snapshotSaw(snapshot, 4000)).toBe(false);
  });

  it('widens a 32-bit xid from the stream next to the snapshot across an epoch boundary', () => {
    const wrapped = parseSnapshot(`${(1n << 32n) - 5n}:${(1n << 32n) + 3n}:${(1n << 32n) + 1n}`);
    expect(widenXid(0xfffffffd, wrapped)).toBe((1n << 32n) - 3n);
    expect(widenXid(2, wrapped)).toBe((1n << 32n) + 2n);
    expect(snapshotSaw(wrapped, 0xfffffffd)).toBe(true);
    expect(snapshotSaw(wrapped, 1)).toBe(false);
    expect(snapshotSaw(wrapped, 2)).toBe(true);
  });

  it('tells whether a transaction it saw running had already committed in the stream', () => {
    expect(snapshotMissedAnyOf(snapshot, [90, 101, 103])).toBe(false);
    expect(snapshotMissedAnyOf(snapshot, [90, 105])).toBe(true);
    expect(snapshotMissedAnyOf(parseSnapshot('100:100:'), [99])).toBe(false);
  });

  it('refuses text that is not a snapshot', () => {
    expect(() => parseSnapshot('100-110')).toThrow('not a pg_snapshot');
  });
});

describe('a chunk window', () => {
  const snapshot = parseSnapshot('100:110:105');

  it('hands a read on before a change its snapshot did not see, once, and keeps it for a change it saw', () => {
    const window = new ChunkWindow(table, snapshot, ['1', '2', '3'].map(row));
    expect(window.readsBefore(change('update', '2'), 101)).toEqual([]); // seen: the row already has it
    expect(window.readsBefore(change('update', '2'), 105).map((r) => r.key)).toEqual(['2']); // running at the snapshot
    expect(window.readsBefore(change('update', '2'), 112)).toEqual([]); // already handed on
    expect(window.readsBefore(change('update', '9'), 112)).toEqual([]); // not in the chunk
    expect(window.readsBefore({ ...change('update', '3'), table: 'other' }, 112)).toEqual([]);
    expect(window.pending).toBe(2);
  });

  it('after the high watermark every change is newer: the read goes first whatever the xid', () => {
    const window = new ChunkWindow(table, snapshot, ['1', '2'].map(row));
    window.closeWindow();
    expect(window.stage).toBe('feeding');
    expect(window.readsBefore(change('delete', '1'), 50).map((r) => r.key)).toEqual(['1']);
  });

  it('a key moved by an update sends the read of its old key; a truncate sends every read', () => {
    const window = new ChunkWindow(table, snapshot, ['1', '2', '3'].map(row));
    expect(window.readsBefore(change('update', '7', '1'), 120).map((r) => r.key)).toEqual(['1']);
    expect(window.readsBefore(change('truncate', ''), 120).map((r) => r.key)).toEqual(['2', '3']);
    expect(window.pending).toBe(0);
  });

  it('hands the rest on in key order, one at a time', () => {
    const window = new ChunkWindow(table, snapshot, ['1', '2', '3'].map(row));
    expect(window.first()?.key).toBe('1');
    window.remove('1');
    expect(window.take(5).map((r) => r.key)).toEqual(['2', '3']);
    expect(window.first()).toBeUndefined();
  });
});

describe('read events', () => {
  it('are op read with the row as new, and the same id for the same row version', () => {
    const event = row('42').event;
    expect(JSON.parse(event.dataJson)).toEqual({ op: 'read', table, old: null, new: { id: 42 }, lsn: '0/1', xid: 700, commitTime: '2026-01-01T00:00:00.000Z' });
    expect(event.attributes).toMatchObject({ type: 'dev.eventide.row.read', subject: 'public.orders/42', source: '/eventide/test/orders' });
    const id = { triggerKey: 'test/orders', backfill: { name: 'test/fill' }, table, rowKey: '42', xmin: '700' };
    expect(event.id).toBe(readEventId(id));
    expect(readEventId({ ...id, xmin: '701' })).not.toBe(event.id);
    expect(readEventId({ ...id, backfill: { name: 'test/fill', uid: 'u2' } })).not.toBe(event.id);
  });
});

describe('a token bucket', () => {
  it('lets a rate through and says how long until the next', () => {
    const bucket = new TokenBucket(10, 0);
    expect(bucket.take(0)).toBe(true);
    expect(bucket.take(0)).toBe(false);
    expect(bucket.waitMs(0)).toBe(100);
    expect(bucket.take(100)).toBe(true);
    expect(bucket.take(2000)).toBe(true);
    let taken = 0;
    while (bucket.take(2000)) taken += 1;
    expect(taken).toBe(9); // a burst of one second's worth at most
  });
});
