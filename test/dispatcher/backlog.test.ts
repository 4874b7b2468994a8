/**
 * The trigger backlog as users meet it: suspend and resume, `eventide invoke` and `eventide events`
 * through the real command, and the backlog surviving kill -9 (while parking and while draining) and
 * a Postgres restart while draining. Real Postgres, the real `eventide dispatch` process.
 */
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { metricSum, parsePrometheusText, type SinkDelivery, startControlledSink } from '../harness/controlledSink.js';
import { backlogEventIds, deadLetterRows, runEventide, sleep } from '../harness/deliveryHelpers.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';

const version = (d: SinkDelivery) => Number((d.data.new as { version: number }).version);
const change = (d: SinkDelivery) => `${d.subject}@${version(d)}`;

/** Deliveries answered 200 whose version did not go up over the row's previous one in the same run. */
function orderViolations(deliveries: SinkDelivery[]): string[] {
  const last = new Map<string, number>();
  const violations: string[] = [];
  for (const d of deliveries) {
    const previous = last.get(d.subject);
    if (previous !== undefined && version(d) <= previous) violations.push(`${d.subject}: version ${version(d)} after ${previous}`);
    last.set(d.subject, version(d));
  }
  return violations;
}

const backlogCount = async (db: SourceDatabase) => Number((await db.sql('SELECT count(*) AS n FROM eventide.backlog')).rows[0].n);
const walLsn = async (db: SourceDatabase) => BigInt(String((await db.sql("SELECT (pg_current_wal_lsn() - '0/0')::bigint AS lsn")).rows[0].lsn));

describe('the trigger backlog', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  async function setUp(answer: (d: SinkDelivery) => Promise<{ status: number }> | { status: number }, spec: Record<string, unknown> = {}) {
    const db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL DEFAULT 0, note text);');
    cleanups.push(() => db.close());
    const runs: SinkDelivery[][] = [[]];
    const sink = await startControlledSink(async (d) => {
      const reply = await answer(d);
      if (reply.status === 200) runs.at(-1)!.push(d);
      return reply;
    });
    cleanups.push(() => sink.close());
    const manifest = (suspend: boolean) =>
      triggerManifest('items', {
        table: { name: 'items' },
        sink: { url: sink.url },
        operations: ['insert', 'update'],
        suspend,
        delivery: { retries: 100, backoff: { delay: '50ms', maxDelay: '200ms' } },
        ...spec,
      });
    const file = writeManifests([manifest(false)]);
    const setSuspended = (suspend: boolean) => writeFileSync(file, stringify(manifest(suspend)));
    const start = async (extra: string[] = []) => {
      const proc = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--watch-config', '--retry-in-memory', '1s', ...extra]);
      cleanups.push(() => proc.kill('SIGKILL'));
      await proc.ready(60_000);
      return proc;
    };
    return { db, sink, runs, file, setSuspended, start };
  }

  it('suspend parks every event without holding the slot, `events list` shows them, resume delivers them in order per row', async () => {
    const { db, sink, runs, file, setSuspended, start } = await setUp(() => ({ status: 200 }));
    const proc = await start();
    await db.sql("INSERT INTO items SELECT g, 0, 'before' FROM generate_series(1, 10) g");
    await eventually(() => sink.deliveries.length >= 10, 10_000, 'the first 10 rows');

    setSuspended(true);
    await eventually(async () => metricSum(parsePrometheusText(await proc.metrics()), 'eventide_dispatcher_trigger_suspended', { trigger: 'test/items' }) === 1, 15_000, 'the trigger suspended');
    await db.sql("INSERT INTO items SELECT g, 0, 'while suspended' FROM generate_series(11, 510) g");
    for (let v = 0; v < 3; v++) await db.sql('UPDATE items SET version = version + 1 WHERE id <= 10');
    const walAfterWrites = await walLsn(db);
    await eventually(async () => (await backlogCount(db)) === 530, 10_000, '530 events parked');
    await sleep(1000);
    expect(sink.deliveries).toHaveLength(10); // nothing sent while suspended
    // Parked is handled as far as the slot is concerned: it moved past the writes.
    await eventually(async () => (await db.confirmedLsn()) >= walAfterWrites, 10_000, 'the slot past the writes');

    const list = await runEventide(['events', 'list', '--database-url', db.url, '--trigger', 'test/items']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^test\/items {2}530 event\(s\) waiting, oldest committed \d+s ago$/m);
    // The first waiting event of each row, in stream order: the rows inserted while suspended come first.
    expect(list.stdout).toMatch(/^ {2}#\d+ {2}public\.items\/11 {2}event \S+ {2}1 waiting {2}attempts 0 {2}suspended$/m);
    expect(list.stdout.split('\n').filter((l) => l.startsWith('  #'))).toHaveLength(20);
    const json = JSON.parse((await runEventide(['events', 'list', '--database-url', db.url, '--json'])).stdout) as { triggers: { trigger: string; events: number }[] };
    expect(json.triggers).toEqual([expect.objectContaining({ trigger: 'test/items', events: 530 })]);

    setSuspended(false);
    await eventually(() => sink.deliveries.length >= 540, 20_000, 'every parked event after the resume');
    expect(new Set(sink.deliveries.map(change)).size).toBe(540);
    expect(orderViolations(runs.flat())).toEqual([]);
    for (let id = 1; id <= 10; id++) expect(sink.deliveries.filter((d) => d.subject === `public.items/${id}`).map(version)).toEqual([0, 1, 2, 3]);
    await eventually(async () => (await backlogCount(db)) === 0, 10_000, 'an empty backlog');
    // Back on the fast path: a new row goes straight through.
    await eventually(async () => metricSum(parsePrometheusText(await proc.metrics()), 'eventide_dispatcher_trigger_parking', { trigger: 'test/items' }) === 0, 15_000, 'the fast path');
    await db.sql("INSERT INTO items VALUES (999, 0, 'after')");
    await eventually(() => sink.deliveries.some((d) => d.subject === 'public.items/999'), 5_000, 'the row after the resume');
    expect(file).toBeTruthy();
  }, 120_000);

  it('`eventide invoke` sends a row as it is now (op manual) through the trigger; `events redeliver` gives waiting events fresh retries', async () => {
    const { db, sink, file, setSuspended, start } = await setUp(() => ({ status: 200 }));
    await start();
    await db.sql("INSERT INTO items VALUES (5, 0, 'first'), (6, 0, 'x'), (8, 0, 'x')");
    await db.sql("UPDATE items SET version = 7, note = 'current' WHERE id = 5");
    await eventually(() => sink.deliveries.length >= 4, 10_000, 'the live changes');

    const invoked = await runEventide(['invoke', '--database-url', db.url, '-f', file, '--trigger', 'test/items', '--key', 'id=5', '--wait', '20s']);
    expect(invoked.stderr).toBe('');
    expect(invoked.code).toBe(0);
    expect(invoked.stdout).toMatch(/^queued event manual-[0-9a-f-]{36} for test\/items \(public\.items\/5\)\ndelivered\n$/);
    const manual = sink.deliveries.find((d) => d.type === 'dev.eventide.row.manual')!;
    expect(manual).toMatchObject({ subject: 'public.items/5', data: { op: 'manual', old: null, new: { id: 5, version: 7, note: 'current' }, table: { schema: 'public', name: 'items' } } });
    expect(manual.id).toBe(/queued event (\S+)/.exec(invoked.stdout)![1]);

    // Bad input: a clear line, nothing queued.
    const refused = async (args: string[]) => {
      const result = await runEventide(['invoke', '--database-url', db.url, '-f', file, '--trigger', 'test/items', ...args]);
      expect(result.code).toBe(1);
      return result.stderr.trim();
    };
    expect(await refused(['--key', 'nope=1'])).toBe('eventide: --key nope: table public.items has no column "nope"');
    expect(await refused(['--key', 'id=4242'])).toBe('eventide: no row of public.items has id = "4242"');
    expect(await refused(['--key', 'version=0'])).toBe('eventide: more than one row of public.items has version = "0"; name its key: --key id=<value>');
    expect((await runEventide(['invoke', '--database-url', db.url, '-f', file, '--trigger', 'test/other', '--key', 'id=5'])).stderr.trim()).toBe(`eventide: EventTrigger test/other is not in ${file}`);
    expect(await backlogCount(db)).toBe(0);

    // Redeliver: a waiting event that had used up some of its retries gets them all back.
    setSuspended(true);
    await sleep(3000);
    await db.sql("INSERT INTO items VALUES (7, 0, 'waits')");
    await eventually(async () => (await backlogCount(db)) === 1, 10_000, 'the parked row');
    await db.sql('UPDATE eventide.backlog SET attempts = 60, first_attempt_at = now()');
    const before = (await db.sql('SELECT id, event_id FROM eventide.backlog')).rows[0] as { id: string; event_id: string };
    const redeliver = await runEventide(['events', 'redeliver', '--database-url', db.url, '--trigger', 'test/items', '--id', String(before.id)]);
    expect(redeliver.stdout.trim()).toBe('requeued 1 event(s) of test/items with fresh retries');
    const after = (await db.sql('SELECT id, event_id, attempts, first_attempt_at, reason FROM eventide.backlog')).rows[0] as Record<string, unknown>;
    expect(after).toMatchObject({ event_id: before.event_id, attempts: 0, first_attempt_at: null, reason: 'redeliver' });
    expect(Number(after.id)).toBeGreaterThan(Number(before.id));
    const missing = await runEventide(['events', 'redeliver', '--database-url', db.url, '--trigger', 'test/items', '--id', '999999']);
    expect([missing.code, missing.stdout.trim().split('\n')]).toEqual([
      1,
      ['requeued 0 event(s) of test/items with fresh retries', "1 of the given ids were not waiting for test/items (delivered already, or another trigger's)"],
    ]);
    setSuspended(false);
    await eventually(() => sink.deliveries.some((d) => d.subject === 'public.items/7'), 15_000, 'the redelivered event');
    expect(sink.deliveries.find((d) => d.subject === 'public.items/7')!.id).toBe(before.event_id);
  }, 120_000);

  it('kill -9 while parking and again while draining: every change arrives, one id per change, each row in order within a run', async () => {
    let down = true;
    const { db, sink, runs, start } = await setUp(
      async () => {
        if (down) return { status: 503 };
        await sleep(Math.random() * 3);
        return { status: 200 };
      },
      { concurrency: 32 },
    );
    let proc = await start(['--max-inflight-events', '500']);
    const rows = 1000;
    const versions = 6;
    // Inserts, then updates, in transactions of 250 rows, while the function is down.
    const writer = (async () => {
      for (let v = 0; v < versions; v++) {
        for (let from = 1; from <= rows; from += 250) {
          if (v === 0) await db.sql("INSERT INTO items SELECT g, 0, 'row' FROM generate_series($1::int, $2::int) g", [from, from + 249]);
          else await db.sql('UPDATE items SET version = version + 1 WHERE id BETWEEN $1 AND $2', [from, from + 249]);
          await sleep(100);
        }
      }
    })();
    // Kill while events are being parked.
    await eventually(async () => (await backlogCount(db)) > 1500, 30_000, 'events parking');
    expect(await proc.kill('SIGKILL')).toBeNull();
    const parkedAtFirstKill = await backlogEventIds(db);
    runs.push([]);
    proc = await start(['--max-inflight-events', '500']);
    await writer;
    // The function recovers; kill again while the backlog drains.
    down = false;
    await eventually(() => runs.at(-1)!.length > 1500, 30_000, 'draining under way');
    expect(await proc.kill('SIGKILL')).toBeNull();
    runs.push([]);
    proc = await start(['--max-inflight-events', '500']);
    const wanted = rows * versions;
    await eventually(() => new Set(sink.deliveries.filter((d) => d.status === 200).map(change)).size >= wanted, 90_000, `all ${wanted} changes`);
    const delivered = runs.flat();
    const changes = new Set(delivered.map(change));
    for (let id = 1; id <= rows; id++) for (let v = 0; v < versions; v++) if (!changes.has(`public.items/${id}@${v}`)) expect.fail(`change ${id}@${v} never delivered`);
    // A change delivered more than once (after a kill) carries one id.
    const ids = new Map<string, Set<string>>();
    for (const d of delivered) (ids.get(change(d)) ?? ids.set(change(d), new Set()).get(change(d))!).add(d.id);
    expect([...ids].filter(([, set]) => set.size !== 1)).toEqual([]);
    for (const run of runs) expect(orderViolations(run)).toEqual([]);
    expect(parkedAtFirstKill.size).toBeGreaterThan(1000);
    expect(await deadLetterRows(db)).toEqual([]);
    await eventually(async () => (await backlogCount(db)) === 0, 10_000, 'an empty backlog');
  }, 180_000);

  it('Postgres restarting while the backlog drains: the drainer and the backlog writer reconnect, every event arrives, nothing is dead-lettered', async () => {
    const { db, sink, setSuspended, start } = await setUp(
      async () => {
        await sleep(2);
        return { status: 200 };
      },
      { concurrency: 8 },
    );
    await start();
    setSuspended(true);
    await sleep(3000);
    await db.sql("INSERT INTO items SELECT g, 0, 'parked' FROM generate_series(1, 5000) g");
    await eventually(async () => (await backlogCount(db)) === 5000, 20_000, '5000 events parked');
    setSuspended(false);
    await eventually(() => sink.deliveries.length > 800, 20_000, 'draining under way');
    await db.server.stop('fast');
    await sleep(1500);
    await db.server.start();
    await eventually(() => new Set(sink.deliveries.map((d) => d.subject)).size >= 5000, 60_000, 'every parked event after the restart');
    expect(await deadLetterRows(db)).toEqual([]);
    await eventually(async () => (await backlogCount(db)) === 0, 15_000, 'an empty backlog');
  }, 120_000);
});
