import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { type SourceDatabase, startDispatcher, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

describe('dispatcher delivers row changes', () => {
  let db: SourceDatabase;
  let sink: RecordingSink;
  let dispatcher: Dispatcher;
  beforeAll(async () => {
    db = await startSourceDatabase(`CREATE TABLE orders (id bigint PRIMARY KEY, total numeric, is_paid boolean NOT NULL DEFAULT false, note text);
      ALTER TABLE orders REPLICA IDENTITY FULL;`);
    sink = await startRecordingSink();
    const file = writeManifests([triggerManifest('all-orders', { sink: { url: sink.url }, operations: ['insert', 'update', 'delete', 'truncate'] })]);
    dispatcher = await startDispatcher(db.url, file);
  });
  afterAll(async () => {
    await dispatcher?.stop();
    await sink?.close();
    await db?.close();
  });

  it('delivers insert, update, delete and truncate as CloudEvents with exact fields', async () => {
    await db.sql('INSERT INTO orders (id, total, note) VALUES (9007199254740993, 12345678901234567890.123456789, \'héllo "x"\')');
    await db.sql('UPDATE orders SET is_paid = true WHERE id = 9007199254740993');
    await db.sql('DELETE FROM orders');
    await db.sql('TRUNCATE orders');
    await sink.waitFor(4);
    const byType = (op: string) => sink.requests.find((r) => r.headers['ce-type'] === `dev.eventide.row.${op}`);
    const [insert, update, del, truncate] = ['insert', 'update', 'delete', 'truncate'].map(byType);
    expect(insert!.headers['ce-type']).toBe('dev.eventide.row.insert');
    expect(insert!.headers['ce-source']).toBe('/eventide/test/all-orders');
    expect(insert!.headers['ce-subject']).toBe('public.orders/9007199254740993');
    expect(insert!.headers['ce-specversion']).toBe('1.0');
    expect(insert!.body).toContain('"id":9007199254740993');
    expect(insert!.body).toContain('"total":12345678901234567890.123456789');
    const body = JSON.parse(insert!.body) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['op', 'table', 'old', 'new', 'lsn', 'xid', 'commitTime']);
    expect(body.new).toMatchObject({ is_paid: false, note: 'héllo "x"' });
    expect(body.old).toBeNull();
    expect(JSON.parse(update!.body)).toMatchObject({ op: 'update', old: { is_paid: false }, new: { is_paid: true } });
    expect(JSON.parse(del!.body)).toMatchObject({ op: 'delete', old: { is_paid: true }, new: null });
    expect(truncate!.headers['ce-type']).toBe('dev.eventide.row.truncate');
  });
});
