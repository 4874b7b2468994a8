import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlledSink, lsnToBigInt, startControlledSink } from '../harness/controlledSink.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';

/**
 * "No WAL bloat when idle": the slot's confirmed_flush_lsn follows the WAL when nothing the triggers
 * want happens, so Postgres can recycle it.
 */
describe('the slot advances past traffic no trigger wants, and while idle', () => {
  let db: SourceDatabase;
  let sink: ControlledSink;
  let proc: DispatcherProcess;
  let file: string;

  beforeAll(async () => {
    db = await startSourceDatabase(`
      CREATE TABLE orders (id int PRIMARY KEY, kind text NOT NULL);
      CREATE TABLE audit (id serial PRIMARY KEY, entry text NOT NULL);`);
    await db.sql('CREATE DATABASE elsewhere');
    sink = await startControlledSink(() => ({ status: 200 }));
    file = writeManifests([triggerManifest('kept-orders', { table: { name: 'orders' }, sink: { url: sink.url }, operations: ['insert', 'update'], filter: "new.kind == 'keep'" })]);
    proc = await startDispatcherProcess(['--database-url', db.url, '-f', file]);
    await proc.ready(60_000);
    // One event goes through first, so the slot has moved once under load.
    await db.sql("INSERT INTO orders VALUES (1, 'keep')");
    await eventually(() => sink.deliveries.length === 1, 15_000, 'the first order');
  });
  afterAll(async () => {
    await proc?.kill('SIGKILL');
    await sink?.close();
    await db?.close();
  });

  const currentLsn = async () => lsnToBigInt(String((await db.sql('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn));
  async function slotReaches(lsn: bigint, what: string): Promise<void> {
    await eventually(async () => (await db.confirmedLsn()) >= lsn, 15_000, `confirmed_flush_lsn past ${what}`);
  }

  it('(a) past changes to a table no trigger routes (not even published)', async () => {
    await db.sql("INSERT INTO audit (entry) SELECT 'entry ' || g FROM generate_series(1, 5000) g");
    const after = await currentLsn();
    await slotReaches(after, '5000 audit rows');
    expect(sink.deliveries.length).toBe(1);
  });

  it('(a) past changes a trigger filter drops', async () => {
    await db.sql("INSERT INTO orders SELECT g, 'drop' FROM generate_series(2, 5001) g");
    await db.sql("UPDATE orders SET kind = 'still-drop' WHERE id BETWEEN 2 AND 1000");
    const after = await currentLsn();
    await slotReaches(after, '6000 filtered-out changes');
    expect(sink.deliveries.length).toBe(1);
    // ...while a change the filter passes is still delivered.
    await db.sql("UPDATE orders SET kind = 'keep' WHERE id = 2");
    await eventually(() => sink.deliveries.length === 2, 15_000, 'the order the filter passes');
    expect(sink.deliveries[1]!.subject).toBe('public.orders/2');
  });

  it('(b) while idle, past WAL written by others: a non-transactional logical message, another database', async () => {
    const message = lsnToBigInt(String((await db.sql("SELECT pg_logical_emit_message(false, 'not-for-eventide', 'x')::text AS lsn")).rows[0].lsn));
    // The commit in another database also flushes the message (a walsender reads flushed WAL only).
    const other = new pg.Client({ connectionString: db.server.urlFor('elsewhere') });
    await other.connect();
    try {
      await other.query('CREATE TABLE noise (id int); INSERT INTO noise SELECT generate_series(1, 2000)');
    } finally {
      await other.end();
    }
    const after = await currentLsn();
    expect(after).toBeGreaterThan(message);
    const started = Date.now();
    await slotReaches(after, 'a logical message and writes in another database');
    expect(Date.now() - started).toBeLessThan(8000); // keepalive, then the next status: about a second
    expect(sink.deliveries.length).toBe(2);
  });

  it('(b) while idle, it keeps following the WAL the server writes on its own (checkpoints), and stays current', async () => {
    await db.sql('CHECKPOINT');
    const after = await currentLsn();
    await slotReaches(after, 'a checkpoint');
    // Idle: the reported lag is small and the slot is where the WAL is.
    const { rows } = await db.sql("SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint AS behind FROM pg_replication_slots WHERE slot_name = 'eventide'");
    expect(Number(rows[0].behind)).toBeLessThan(64 * 1024);
  });
  it('moves past the start of a transaction still open elsewhere, and that transaction is delivered when it commits, also after a kill -9', async () => {
    const writer = new pg.Client({ connectionString: db.url });
    await writer.connect();
    try {
      await writer.query('BEGIN');
      await writer.query("INSERT INTO orders VALUES (100001, 'keep')");
      const openedAt = lsnToBigInt(String((await writer.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn));
      // Other traffic goes by; the slot follows it past the open transaction's first change.
      await db.sql("INSERT INTO audit (entry) SELECT 'while open ' || g FROM generate_series(1, 1000) g");
      await slotReaches(await currentLsn(), 'traffic after the open transaction began');
      expect(await db.confirmedLsn()).toBeGreaterThan(openedAt);
      // The dispatcher dies and comes back; only then does the transaction commit.
      expect(await proc.kill('SIGKILL')).toBeNull();
      proc = await startDispatcherProcess(['--database-url', db.url, '-f', file]);
      await proc.ready(60_000);
      const before = sink.deliveries.length;
      await writer.query("INSERT INTO orders VALUES (100002, 'keep')");
      await writer.query('COMMIT');
      await eventually(() => sink.deliveries.length >= before + 2, 15_000, 'both changes of the late commit');
      expect(sink.deliveries.slice(before).map((d) => d.subject)).toEqual(['public.orders/100001', 'public.orders/100002']);
      await slotReaches(await currentLsn(), 'the late commit');
    } finally {
      await writer.end();
    }
  });
});
