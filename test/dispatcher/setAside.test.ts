/**
 * One bad trigger never stops its siblings, through the real `eventide dispatch --watch-config`
 * process: a trigger on a table that does not exist yet, one on a table without a primary key, and one
 * with a filter that does not compile are set aside with their reasons on /state while the good one
 * delivers; creating the missing table starts its trigger without a restart; a column dropped while
 * running sets its trigger aside (no filter error per row); a database that refuses connections at
 * start is waited for, not fatal.
 */

import { writeFileSync } from 'node:fs';
import { createServer, type Server, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { DispatcherStateReport } from '../../common/dispatcherState.js';
import { freePort } from '../../common/loopback.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually, type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

const SCHEMA = `
  CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total int NOT NULL);
  CREATE TABLE audit_log (at timestamptz, line text);
`;

async function stateOf(dispatcher: DispatcherProcess): Promise<DispatcherStateReport> {
  return (await (await fetch(`http://127.0.0.1:${dispatcher.port}/state`)).json()) as DispatcherStateReport;
}

describe('a trigger that cannot be served is set aside; its siblings are served', () => {
  let db: SourceDatabase;
  let good: RecordingSink;
  let other: RecordingSink;
  let dispatcher: DispatcherProcess;
  let file: string;

  const manifests = () => [
    triggerManifest('orders-good', { operations: ['insert', 'update'], sink: { url: good.url } }),
    triggerManifest('refunds-later', { table: { name: 'refunds' }, sink: { url: other.url } }),
    triggerManifest('audit-no-key', { table: { name: 'audit_log' }, sink: { url: other.url } }),
    triggerManifest('orders-by-status', { operations: ['update'], filter: 'new.status == "paid"', sink: { url: other.url } }),
  ];

  beforeAll(async () => {
    db = await startSourceDatabase(SCHEMA);
    good = await startRecordingSink();
    other = await startRecordingSink();
    file = writeManifests(manifests());
    dispatcher = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--watch-config']);
    await dispatcher.ready();
  }, 60_000);

  afterAll(async () => {
    await dispatcher?.kill('SIGTERM');
    await good?.close();
    await other?.close();
    await db?.close();
  });

  it('/state names each set-aside trigger with its reason and message; the good one is serving and delivers', async () => {
    const state = await stateOf(dispatcher);
    expect(state.triggers['test/orders-good']).toMatchObject({ state: 'serving' });
    expect(state.triggers['test/orders-by-status']).toMatchObject({ state: 'serving' });
    expect(state.triggers['test/refunds-later']).toMatchObject({
      state: 'set-aside',
      reason: 'TableNotFound',
      message: 'EventTrigger test/refunds-later: table public.refunds does not exist',
    });
    expect(state.triggers['test/audit-no-key']).toMatchObject({ state: 'set-aside', reason: 'NoReplicaIdentity' });
    expect(state.triggers['test/audit-no-key']!.message).toContain('public.audit_log has no primary key');
    expect(state.source).toMatchObject({ slot: 'eventide', publication: 'eventide', phase: 'streaming', connected: true });
    // The same for alerting: a gauge per set-aside trigger, labelled with the reason.
    const metrics = await dispatcher.metrics();
    expect(metrics).toContain('eventide_dispatcher_trigger_set_aside{trigger="test/refunds-later",reason="TableNotFound"} 1');
    expect(metrics).toContain('eventide_dispatcher_trigger_set_aside{trigger="test/audit-no-key",reason="NoReplicaIdentity"} 1');
    expect(metrics).not.toContain('eventide_dispatcher_trigger_set_aside{trigger="test/orders-good"');
    // The table without a key is not published: the application's updates and deletes on it keep working.
    await db.sql("INSERT INTO audit_log VALUES (now(), 'x'); UPDATE audit_log SET line = 'y'");
    await db.sql("INSERT INTO orders VALUES (1, 'new', 10)");
    await good.waitFor(1);
    expect(good.events().map((e) => e.data.new)).toEqual([{ id: 1, status: 'new', total: 10 }]);
    expect((await stateOf(dispatcher)).triggers['test/orders-good']!.lastDeliveryTime).toBeDefined();
  });

  it('creating the missing table starts its trigger without a restart', async () => {
    // Qualified: the test role's search_path puts the eventide schema first once it exists.
    await db.sql('CREATE TABLE public.refunds (id int PRIMARY KEY, amount int)');
    await eventually(async () => (await stateOf(dispatcher)).triggers['test/refunds-later']!.state === 'serving', 40_000, 'refunds-later served');
    expect(await dispatcher.metrics()).not.toContain('eventide_dispatcher_trigger_set_aside{trigger="test/refunds-later"');
    await db.sql('INSERT INTO refunds VALUES (1, 5)');
    await eventually(() => other.events().some((e) => (e.data.new as { amount?: number } | null)?.amount === 5), 20_000, 'the refund delivered');
  });

  it('a column a filter reads, dropped while running: the trigger is set aside (ColumnNotFound), no row fails its filter, siblings go on', async () => {
    const before = other.requests.length;
    await db.sql("UPDATE orders SET status = 'paid' WHERE id = 1");
    await eventually(() => other.requests.length > before, 20_000, 'the paid update delivered');
    await db.sql('ALTER TABLE orders DROP COLUMN status');
    await db.sql('UPDATE orders SET total = 11 WHERE id = 1');
    await eventually(async () => (await stateOf(dispatcher)).triggers['test/orders-by-status']!.reason === 'ColumnNotFound', 20_000, 'set aside for the dropped column');
    const state = (await stateOf(dispatcher)).triggers['test/orders-by-status']!;
    expect(state).toMatchObject({ state: 'set-aside' });
    expect(state.message).toContain('no longer has column "status"');
    await eventually(() => good.events().some((e) => (e.data.new as { total?: number } | null)?.total === 11), 20_000, 'the sibling got the update');
    const { rows } = await db.sql('SELECT count(*)::int AS n FROM eventide.dead_letters');
    expect(rows[0].n).toBe(0);
    // Putting the column back serves the trigger again.
    await db.sql("ALTER TABLE orders ADD COLUMN status text DEFAULT 'new'");
    await eventually(async () => (await stateOf(dispatcher)).triggers['test/orders-by-status']!.state === 'serving', 40_000, 'served again');
  });

  it('a reload with a trigger whose filter does not compile sets that one aside; the rest stay served', async () => {
    writeFileSync(file, [...manifests(), triggerManifest('broken-filter', { filter: 'new.total >', sink: { url: other.url } })].map((m) => stringify(m)).join('---\n'));
    await eventually(async () => (await stateOf(dispatcher)).triggers['test/broken-filter']?.reason === 'InvalidFilter', 20_000, 'broken-filter set aside');
    const before = good.requests.length;
    await db.sql('INSERT INTO orders (id, total) VALUES (2, 20)');
    await eventually(() => good.requests.length > before, 20_000, 'good still delivers');
    expect(dispatcher.child.exitCode).toBeNull();
  });

  it('a removed trigger is freed: it leaves /state and its per-trigger gauges go', async () => {
    const gauge = 'eventide_dispatcher_trigger_parking{trigger="test/refunds-later"}';
    await eventually(async () => (await dispatcher.metrics()).includes(gauge), 20_000, 'the gauge while served');
    writeFileSync(
      file,
      manifests()
        .filter((m) => (m.metadata as { name: string }).name !== 'refunds-later')
        .map((m) => stringify(m))
        .join('---\n'),
    );
    await eventually(async () => (await stateOf(dispatcher)).triggers['test/refunds-later'] === undefined, 20_000, 'refunds-later gone');
    await eventually(async () => !(await dispatcher.metrics()).includes(gauge), 20_000, 'its flow freed');
  });

  it('reloads in quick succession apply in order: the last file written is what is served', async () => {
    const names = ['v1', 'v2', 'v3', 'v4', 'v5'];
    for (const name of names) {
      writeFileSync(file, [...manifests(), triggerManifest(`extra-${name}`, { sink: { url: other.url } })].map((m) => stringify(m)).join('---\n'));
      await new Promise((r) => setTimeout(r, 150));
    }
    await eventually(async () => (await stateOf(dispatcher)).triggers['test/extra-v5']?.state === 'serving', 20_000, 'the last version served');
    // Held for a few reload rounds: an older version never comes back after the newest.
    await new Promise((r) => setTimeout(r, 3000));
    const extras = Object.keys((await stateOf(dispatcher)).triggers).filter((k) => k.startsWith('test/extra-'));
    expect(extras).toEqual(['test/extra-v5']);
  });

  it('a table dropped while its trigger runs: set aside as TableNotFound (no change of the stream says so: the periodic look does)', async () => {
    await db.sql('CREATE TABLE public.notes (id int PRIMARY KEY)');
    writeFileSync(file, [...manifests(), triggerManifest('notes', { table: { name: 'notes' }, sink: { url: other.url } })].map((m) => stringify(m)).join('---\n'));
    await eventually(async () => (await stateOf(dispatcher)).triggers['test/notes']?.state === 'serving', 20_000, 'notes served');
    await db.sql('DROP TABLE public.notes');
    await eventually(async () => (await stateOf(dispatcher)).triggers['test/notes']?.reason === 'TableNotFound', 60_000, 'notes set aside');
    expect((await stateOf(dispatcher)).triggers['test/orders-good']!.state).toBe('serving');
  }, 90_000);
});

describe('a database that refuses connections at start is waited for', () => {
  let db: SourceDatabase;
  let sink: RecordingSink;
  let proxy: Server | undefined;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    db = await startSourceDatabase('CREATE TABLE orders (id int PRIMARY KEY)');
    sink = await startRecordingSink();
  }, 60_000);

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
    await sink?.close();
    await db?.close();
  });

  /** Forwards a port to the database, like a database that comes up late. */
  function openProxy(port: number): Promise<void> {
    proxy = createServer((client) => {
      const upstream = new Socket();
      sockets.add(client).add(upstream);
      upstream.connect(db.server.port, '127.0.0.1');
      client.pipe(upstream).pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    return new Promise((resolve) => proxy!.listen(port, '127.0.0.1', () => resolve()));
  }

  it('stays up, says why on /readyz and /state (password hidden), connects once the database answers, and SIGTERM while waiting exits 0', async () => {
    const port = await freePort();
    const url = new URL(db.url);
    url.port = String(port);
    url.password = 'hidden-pw';
    const file = writeManifests([triggerManifest('orders', { operations: ['insert'], sink: { url: sink.url } })]);

    const quitter = await startDispatcherProcess(['--database-url', url.toString(), '-f', file]);
    await eventually(() => quitter.output().includes('connection refused; retrying'), 20_000, 'the first refusal logged');
    expect(await quitter.kill('SIGTERM')).toBe(0);

    const dispatcher = await startDispatcherProcess(['--database-url', url.toString(), '-f', file]);
    try {
      await eventually(() => dispatcher.output().includes('connection refused; retrying'), 20_000, 'the refusal logged');
      const readyz = await fetch(`http://127.0.0.1:${dispatcher.port}/readyz`);
      expect(readyz.status).toBe(503);
      expect(await readyz.text()).toBe(`not ready: cannot connect to the database at postgres://${url.username}:***@127.0.0.1:${port}${url.pathname}: connection refused`);
      const state = await stateOf(dispatcher);
      expect(state.source.phase).toBe('connecting');
      expect(state.triggers['test/orders']).toMatchObject({ state: 'waiting', reason: 'DatabaseUnreachable' });
      expect(dispatcher.output()).not.toContain('hidden-pw');
      await openProxy(port);
      await dispatcher.ready(60_000);
      await db.sql('INSERT INTO orders VALUES (1)');
      await sink.waitFor(1);
      expect((await stateOf(dispatcher)).triggers['test/orders']!.state).toBe('serving');
    } finally {
      expect(await dispatcher.kill('SIGTERM')).toBe(0);
    }
  });
});
