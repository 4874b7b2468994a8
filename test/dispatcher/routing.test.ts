/**
 * Routing through the real `eventide dispatch` command: column filters, CEL row filters over old and
 * new, operation subsets, several triggers on one table, filters that fail on some rows (dead letters,
 * the rest keeps flowing) and the REPLICA IDENTITY warning.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DispatcherStateReport } from '../../common/dispatcherState.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually, type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

const SCHEMA = `
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'new', amount numeric, is_paid boolean NOT NULL DEFAULT false, note text);
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE TABLE plain (id integer PRIMARY KEY, v integer, w integer);
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Order Items" (id bigint PRIMARY KEY, "Qty" integer, "unit price" numeric);
ALTER TABLE "Shop"."Order Items" REPLICA IDENTITY FULL;
CREATE TABLE measurements (id integer, region text, reading numeric, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu');
CREATE TABLE measurements_us PARTITION OF measurements FOR VALUES IN ('us');
CREATE TABLE calc (id integer PRIMARY KEY, divisor integer, doc jsonb);
ALTER TABLE calc REPLICA IDENTITY FULL;
-- No primary key: tables a trigger must not bring into the publication (see the refusal test).
CREATE TABLE keyless (id integer, note text);
CREATE TABLE keyless_full (id integer, note text);
ALTER TABLE keyless_full REPLICA IDENTITY FULL;
CREATE TABLE logs (at date NOT NULL, msg text) PARTITION BY RANGE (at);
CREATE TABLE logs_2024 PARTITION OF logs FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
`;

/** Trigger name → spec (table, operations, columns, filter); every one delivers to the same sink. */
const TRIGGERS: Record<string, Record<string, unknown>> = {
  'paid-updates': { operations: ['update'], columns: ['is_paid'] },
  'paid-or-amount-any-op': { operations: ['insert', 'update', 'delete'], columns: ['is_paid', 'amount'] },
  shipped: { operations: ['update'], filter: 'old.status != new.status && new.status == "shipped"' },
  'big-inserts': { operations: ['insert'], filter: 'new.amount > 100' },
  'note-x': { operations: ['insert', 'update'], filter: 'new.note.startsWith("x")' },
  'deletes-only': { operations: ['delete'] },
  // Integer columns are CEL ints: arithmetic with int literals works (a double would have no such overload).
  'even-ids': { operations: ['insert'], filter: 'new.id % 2 == 0 && new.id * 100 + 1 == 201 && new.amount > 100' },
  'big-deletes-and-truncates': { operations: ['delete', 'truncate'], filter: 'old.amount > 50' },
  'plain-watch': { table: { name: 'plain' }, operations: ['update'], columns: ['v'] },
  'plain-old': { table: { name: 'plain' }, operations: ['delete'], filter: 'old.id > 0' },
  'plain-inserts': { table: { name: 'plain' }, operations: ['insert'], filter: 'new.v > 0' },
  // A partitioned table: its partitions' changes are the parent's.
  partitioned: { table: { name: 'measurements' }, operations: ['insert', 'update', 'delete'], filter: 'op == "delete" || new.reading > 1.0' },
  // Quoted, mixed-case names; an int8 beyond 2^53 compared exactly; a column with a space read by index.
  'shop-items': {
    table: { schema: 'Shop', name: 'Order Items' },
    operations: ['insert', 'update'],
    columns: ['Qty'],
    filter: 'new.id == 9007199254740993 && new.Qty > 1 && new["unit price"] > 2.0',
  },
  // Without REPLICA IDENTITY FULL old still holds the key columns, so a filter can read them.
  'plain-same-key': { table: { name: 'plain' }, operations: ['update'], filter: 'old.id == new.id && new.w == 5' },
  // Needs no old values: "old" appears only inside a string.
  'plain-word-old': { table: { name: 'plain' }, operations: ['update'], filter: 'new.w == 99 || new.v == size("old")' },
  // Filters failing at run time on some rows: a division by zero, a key a JSON document lacks, a result that is no boolean.
  'calc-div': { table: { name: 'calc' }, operations: ['insert'], filter: '100 / new.divisor > 10' },
  'calc-doc': { table: { name: 'calc' }, operations: ['insert'], filter: 'new.doc.kind == "a"' },
  'calc-doc-guarded': { table: { name: 'calc' }, operations: ['insert'], filter: 'has(new.doc.kind) && new.doc.kind == "a"' },
  'calc-not-bool': { table: { name: 'calc' }, operations: ['delete'], filter: 'old.divisor' },
  // A REPLICA IDENTITY FULL table needs no primary key; its subject then has no key part.
  'keyless-full': { table: { name: 'keyless_full' }, operations: ['insert', 'update'], columns: ['note'] },
};

/** The subject a binary-mode event names (the header percent-encodes spaces and non-ASCII, CloudEvents HTTP binding §3.1.3.2). */
const subjectOf = (headers: Record<string, unknown>) => decodeURIComponent(String(headers['ce-subject']));

describe('routing: columns, filters, operations, several triggers per table', () => {
  let db: SourceDatabase;
  let sink: RecordingSink;
  let dispatcher: DispatcherProcess;

  beforeAll(async () => {
    db = await startSourceDatabase(SCHEMA);
    sink = await startRecordingSink();
    const file = writeManifests(Object.entries(TRIGGERS).map(([name, spec]) => triggerManifest(name, { sink: { url: sink.url }, ...spec })));
    dispatcher = await startDispatcherProcess(['--database-url', db.url, '-f', file]);
    await dispatcher.ready();
  });
  afterAll(async () => {
    await dispatcher?.kill('SIGTERM');
    await sink?.close();
    await db?.close();
  });

  /** What one trigger received, as "op subject" in arrival order. */
  const received = (trigger: string) =>
    sink.requests.filter((r) => r.headers['ce-source'] === `/eventide/test/${trigger}`).map((r) => `${String(r.headers['ce-type']).replace('dev.eventide.row.', '')} ${subjectOf(r.headers)}`);

  /** Waits until the slot confirms past everything written so far: every matching event was delivered or dead-lettered. */
  async function settled(): Promise<void> {
    const { rows } = await db.sql('SELECT pg_current_wal_lsn()::text AS lsn');
    const [hi, lo] = (rows[0] as { lsn: string }).lsn.split('/');
    const target = (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
    await eventually(async () => (await db.confirmedLsn()) >= target, 30_000, 'the slot to confirm every change');
  }

  it('warns, naming the table, only for triggers that need old values on a table without REPLICA IDENTITY FULL', () => {
    const warnings = dispatcher
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; msg: string })
      .filter((entry) => entry.level === 40 && /REPLICA IDENTITY/.test(entry.msg));
    const about = (trigger: string) => warnings.filter((w) => w.msg.includes(`EventTrigger test/${trigger}:`));
    // spec.columns on updates and a filter reading old on updates or deletes need the old row.
    for (const trigger of ['plain-watch', 'plain-old', 'plain-same-key']) {
      expect(about(trigger), `warning for ${trigger}`).toHaveLength(1);
      expect(about(trigger)[0]!.msg).toContain('public.plain lacks REPLICA IDENTITY FULL');
      expect(about(trigger)[0]!.msg).toContain('ALTER TABLE "public"."plain" REPLICA IDENTITY FULL');
    }
    // Inserts never have an old row; orders has REPLICA IDENTITY FULL.
    expect(warnings.map((w) => w.msg).filter((m) => !/test\/plain-(watch|old|same-key):/.test(m))).toEqual([]);
  });

  it('delivers to each trigger exactly its own matches; a filter failing on a row dead-letters that event and the rest flows', async () => {
    await db.sql("INSERT INTO orders (id, status, amount, note) VALUES (1, 'new', 50, 'x-first'), (2, 'new', 150, NULL), (3, 'new', 500, 'y')");
    await db.sql("UPDATE orders SET status = 'packed' WHERE id = 1"); // status only
    await db.sql('UPDATE orders SET is_paid = true WHERE id = 2'); // is_paid changes
    await db.sql('UPDATE orders SET is_paid = true WHERE id = 2'); // an update that changes nothing
    await db.sql("UPDATE orders SET amount = 600.00, note = 'xx' WHERE id = 3"); // amount changes
    await db.sql("UPDATE orders SET status = 'shipped' WHERE id = 1"); // becomes shipped
    await db.sql("UPDATE orders SET status = 'shipped', note = 'x' WHERE id = 1"); // was already shipped
    await db.sql('UPDATE orders SET amount = 150 WHERE id = 2'); // 150 → 150: numerically unchanged
    await db.sql('DELETE FROM orders WHERE id = 3');
    await db.sql('TRUNCATE orders');
    await db.sql('INSERT INTO plain VALUES (1, 1, 1), (2, -1, 0)');
    await db.sql('UPDATE plain SET w = 5 WHERE id = 1');
    await db.sql('DELETE FROM plain WHERE id = 2');
    await db.sql('INSERT INTO "Shop"."Order Items" VALUES (9007199254740993, 2, 2.5), (9007199254740992, 2, 2.5), (9007199254740994, 2, 2.5)');
    await db.sql('UPDATE "Shop"."Order Items" SET "unit price" = 3 WHERE id = 9007199254740993'); // Qty unchanged
    await db.sql('UPDATE "Shop"."Order Items" SET "Qty" = 5'); // Qty changed on all three
    await db.sql("INSERT INTO measurements VALUES (1, 'eu', 2.5), (2, 'us', 0.5), (3, 'us', 7)");
    await db.sql("UPDATE measurements SET region = 'eu' WHERE id = 3"); // moves to another partition
    await db.sql('DELETE FROM measurements WHERE id = 1');
    await db.sql(`INSERT INTO calc VALUES (1, 5, '{"kind": "a"}'), (2, 0, '{"kind": "b"}'), (3, 50, '{"other": 1}'), (4, 2, NULL), (5, 0, '{"kind": "a"}')`);
    await db.sql('DELETE FROM calc WHERE id = 1');
    await db.sql("INSERT INTO keyless_full VALUES (1, 'a'), (1, 'b')");
    await db.sql("UPDATE keyless_full SET note = 'c' WHERE note = 'a'");
    await db.sql('UPDATE keyless_full SET id = 2');
    await settled();

    const o = (id: number) => `public.orders/${id}`;
    const sorted = (list: string[]) => [...list].sort();
    expect(received('paid-updates')).toEqual([`update ${o(2)}`]);
    // Columns apply to updates only: inserts and deletes fire whatever they hold.
    expect(sorted(received('paid-or-amount-any-op'))).toEqual(sorted([`insert ${o(1)}`, `insert ${o(2)}`, `insert ${o(3)}`, `update ${o(2)}`, `update ${o(3)}`, `delete ${o(3)}`]));
    expect(received('shipped')).toEqual([`update ${o(1)}`]);
    expect(sorted(received('big-inserts'))).toEqual([`insert ${o(2)}`, `insert ${o(3)}`]);
    // Row 2's note is NULL, so the filter cannot be evaluated for it: those events are dead letters, not deliveries.
    expect(sorted(received('note-x'))).toEqual(sorted([`insert ${o(1)}`, `update ${o(1)}`, `update ${o(1)}`, `update ${o(1)}`, `update ${o(3)}`]));
    expect(received('deletes-only')).toEqual([`delete ${o(3)}`]);
    expect(received('even-ids')).toEqual([`insert ${o(2)}`]);
    // A filter is not applied to truncates (no row to test).
    expect(received('big-deletes-and-truncates')).toEqual([`delete ${o(3)}`, 'truncate public.orders/']);
    // Without REPLICA IDENTITY FULL nothing tells whether v changed, so every update counts (as the warning says).
    expect(received('plain-watch')).toEqual(['update public.plain/1']);
    expect(received('plain-old')).toEqual(['delete public.plain/2']);
    expect(received('plain-inserts')).toEqual(['insert public.plain/1']);
    expect(received('plain-same-key')).toEqual(['update public.plain/1']);
    expect(received('plain-word-old')).toEqual([]);
    const partitioned = (key: string) =>
      sink.requests
        .filter((r) => r.headers['ce-source'] === '/eventide/test/partitioned' && subjectOf(r.headers) === `public.measurements/${key}`)
        .map((r) => JSON.parse(r.body) as { op: string; table: unknown; new: unknown; old: unknown })
        .map((e) => [e.op, e.table, e.old, e.new]);
    const measurements = { schema: 'public', name: 'measurements' };
    expect(partitioned('eu,1')).toEqual([
      ['insert', measurements, null, { id: 1, region: 'eu', reading: 2.5 }],
      ['delete', measurements, { id: 1, region: 'eu' }, null],
    ]);
    // Moving a row to another partition is a delete from one and an insert into the other.
    expect(partitioned('us,3')).toEqual([
      ['insert', measurements, null, { id: 3, region: 'us', reading: 7 }],
      ['delete', measurements, { id: 3, region: 'us' }, null],
    ]);
    expect(partitioned('eu,3')).toEqual([['insert', measurements, null, { id: 3, region: 'eu', reading: 7 }]]);
    expect(received('partitioned')).toHaveLength(5);
    expect(received('shop-items')).toEqual(['insert Shop.Order Items/9007199254740993', 'update Shop.Order Items/9007199254740993']);
    const plainUpdate = sink.requests.find((r) => r.headers['ce-source'] === '/eventide/test/plain-same-key')!;
    expect(JSON.parse(plainUpdate.body)).toMatchObject({ op: 'update', old: { id: 1 }, new: { id: 1, v: 1, w: 5 } });
    expect(Object.keys((JSON.parse(plainUpdate.body) as { old: object }).old)).toEqual(['id']);

    // Row 1's events reached note-x in commit order, each with its own values.
    const notes = sink.events().filter((e) => e.subject === o(1) && sink.requests.find((r) => r.headers['ce-id'] === e.id)?.headers['ce-source'] === '/eventide/test/note-x');
    expect(notes.map((e) => (e.data.new as { status: string; note: string }).status)).toEqual(['new', 'packed', 'shipped', 'shipped']);

    const c = (id: number) => `public.calc/${id}`;
    // 100 / 5 = 20 passes, 100 / 50 = 2 does not; rows 2 and 5 divide by zero.
    expect(sorted(received('calc-div'))).toEqual([`insert ${c(1)}`, `insert ${c(4)}`]);
    expect(sorted(received('calc-doc'))).toEqual([`insert ${c(1)}`, `insert ${c(5)}`]);
    expect(sorted(received('calc-doc-guarded'))).toEqual([`insert ${c(1)}`, `insert ${c(5)}`]);
    expect(received('calc-not-bool')).toEqual([]);
    expect(received('keyless-full')).toEqual(['insert public.keyless_full/', 'insert public.keyless_full/', 'update public.keyless_full/']);
    const keylessUpdate = sink.requests.filter((r) => r.headers['ce-source'] === '/eventide/test/keyless-full').map((r) => JSON.parse(r.body) as { old: unknown; new: unknown })[2];
    expect(keylessUpdate).toMatchObject({ old: { id: 1, note: 'a' }, new: { id: 1, note: 'c' } });

    const calcLetters = await db.sql(
      `SELECT trigger, reason, attempts, last_error, event->>'subject' AS subject, event->>'type' AS type FROM eventide.dead_letters WHERE trigger LIKE 'test/calc-%' ORDER BY trigger, event->>'subject'`,
    );
    expect(
      (calcLetters.rows as { trigger: string; reason: string; attempts: number; last_error: string; subject: string; type: string }[]).map((l) => [
        l.trigger,
        l.subject,
        l.reason,
        l.attempts,
        l.last_error,
      ]),
    ).toEqual([
      ['test/calc-div', c(2), 'filter-error', 0, 'filter "100 / new.divisor > 10" failed: division by zero'],
      ['test/calc-div', c(5), 'filter-error', 0, 'filter "100 / new.divisor > 10" failed: division by zero'],
      ['test/calc-doc', c(3), 'filter-error', 0, 'filter "new.doc.kind == "a"" failed: No such key: kind'],
      ['test/calc-doc', c(4), 'filter-error', 0, 'filter "new.doc.kind == "a"" failed: No such key: kind'],
      ['test/calc-not-bool', c(1), 'filter-error', 0, 'filter "old.divisor" returned bigint, expected a boolean'],
    ]);

    const { rows } = await db.sql(
      `SELECT trigger, reason, attempts, last_error, event->>'subject' AS subject, event->>'type' AS type, event->'data'->'new' AS new, event_id
         FROM eventide.dead_letters WHERE trigger NOT LIKE 'test/calc-%' ORDER BY id`,
    );
    const letters = rows as { trigger: string; reason: string; attempts: number; last_error: string; subject: string; type: string; new: Record<string, unknown>; event_id: string }[];
    expect(letters.map((l) => [l.trigger, l.reason, l.type, l.subject, l.attempts])).toEqual([
      ['test/note-x', 'filter-error', 'dev.eventide.row.insert', o(2), 0],
      ['test/note-x', 'filter-error', 'dev.eventide.row.update', o(2), 0],
      ['test/note-x', 'filter-error', 'dev.eventide.row.update', o(2), 0],
      ['test/note-x', 'filter-error', 'dev.eventide.row.update', o(2), 0],
    ]);
    for (const letter of letters) {
      expect(letter.last_error).toContain('new.note.startsWith("x")');
      expect(letter.new).toMatchObject({ id: 2, note: null });
      // Dead-lettered, never sent.
      expect(sink.requests.some((r) => r.headers['ce-id'] === letter.event_id)).toBe(false);
    }
    expect(new Set(letters.map((l) => l.event_id)).size).toBe(4);
  });

  it('sets aside a trigger on a table without primary key or replica identity, even for inserts only, leaves the table unpublished, and serves the others', async () => {
    // A publication publishes every operation of its tables: once one held keyless, Postgres would refuse the application's updates.
    const file = writeManifests([
      triggerManifest('keyless-inserts', { table: { name: 'keyless' }, operations: ['insert'], sink: { url: sink.url } }),
      triggerManifest('log-inserts', { table: { name: 'logs' }, operations: ['insert'], sink: { url: sink.url } }),
      triggerManifest('keyless-full-ok', { table: { name: 'keyless_full' }, operations: ['insert'], sink: { url: sink.url } }),
    ]);
    const child = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--slot', 'eventide_keyless', '--publication', 'eventide_keyless']);
    try {
      await child.ready();
      const state = (await (await fetch(`http://127.0.0.1:${child.port}/state`)).json()) as DispatcherStateReport;
      expect(state.triggers['test/keyless-inserts']).toMatchObject({
        state: 'set-aside',
        reason: 'NoReplicaIdentity',
        message:
          'EventTrigger test/keyless-inserts: public.keyless has no primary key (nor replica identity index); Postgres then refuses its updates and deletes under a publication; add a primary key or run ALTER TABLE "public"."keyless" REPLICA IDENTITY FULL',
      });
      expect(state.triggers['test/log-inserts']).toMatchObject({
        state: 'set-aside',
        reason: 'NoReplicaIdentity',
        message:
          'EventTrigger test/log-inserts: public.logs_2024 has no primary key (nor replica identity index); Postgres then refuses its updates and deletes under a publication; add a primary key or run ALTER TABLE "public"."logs_2024" REPLICA IDENTITY FULL',
      });
      expect(state.triggers['test/keyless-full-ok']).toMatchObject({ state: 'serving' });
      const published = await db.sql("SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = 'eventide_keyless'");
      expect(published.rows).toEqual([{ t: 'public.keyless_full' }]);
      // The application's updates and deletes still work.
      await db.sql("INSERT INTO keyless VALUES (1, 'a')");
      await db.sql("UPDATE keyless SET note = 'b'");
      await db.sql('DELETE FROM keyless');
      await db.sql("INSERT INTO logs VALUES ('2024-05-01', 'x')");
      await db.sql("UPDATE logs SET msg = 'y'");
    } finally {
      expect(await child.kill('SIGTERM')).toBe(0);
    }
  });
});
