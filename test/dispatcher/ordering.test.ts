import { afterEach, describe, expect, it } from 'vitest';
import { type ControlledSink, lsnToBigInt, type SinkDelivery, startControlledSink } from '../harness/controlledSink.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ordering: key at concurrency 64', () => {
  let db: SourceDatabase;
  let sink: ControlledSink;
  let proc: DispatcherProcess;
  // Each test starts its own database, sink and dispatcher; stop them even when the test fails halfway.
  afterEach(async () => {
    await proc?.kill('SIGKILL');
    await sink?.close();
    await db?.close();
  });

  it('delivers each row in commit order while different rows overlap up to the concurrency, with a slow function answering out of order', async () => {
    const concurrency = 64;
    db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL);');
    // The function takes 0-50 ms per event, so answers come back in a different order than requests went out.
    sink = await startControlledSink(async () => {
      await sleep(Math.random() * 50);
      return { status: 200 };
    });
    const file = writeManifests([triggerManifest('items', { table: { name: 'items' }, sink: { url: sink.url }, operations: ['insert', 'update'], ordering: 'key', concurrency })]);
    proc = await startDispatcherProcess(['--database-url', db.url, '-f', file]);
    await proc.ready(60_000);

    // 400 rows; 60 transactions each bump a random third of them (a row's versions are its commit order).
    const keys = 400;
    await db.sql(`INSERT INTO items SELECT g, 0 FROM generate_series(1, ${keys}) g`);
    const expected = new Map<number, number>();
    for (let id = 1; id <= keys; id++) expected.set(id, 0);
    for (let t = 0; t < 60; t++) {
      const ids = [...expected.keys()].filter(() => Math.random() < 1 / 3);
      await db.sql('UPDATE items SET version = version + 1 WHERE id = ANY($1::int[])', [ids]);
      for (const id of ids) expected.set(id, expected.get(id)! + 1);
    }
    const total = [...expected.values()].reduce((n, v) => n + v + 1, 0);
    await eventually(() => sink.deliveries.filter((d) => d.status === 200).length >= total, 75_000, `all ${total} changes`);
    await sleep(200);
    expect(sink.deliveries.length).toBe(total); // no retries, no duplicates: the function always answered 200

    const byRow = new Map<string, SinkDelivery[]>();
    for (const d of sink.deliveries) (byRow.get(d.subject) ?? byRow.set(d.subject, []).get(d.subject)!).push(d);
    expect(byRow.size).toBe(keys);
    const violations: string[] = [];
    for (const [subject, deliveries] of byRow) {
      const id = Number(subject.split('/')[1]);
      // Received in commit order: versions 0, 1, 2 ... (and commit LSNs rising).
      const versions = deliveries.map((d) => (d.data.new as { version: number }).version);
      const want = Array.from({ length: expected.get(id)! + 1 }, (_, i) => i);
      if (versions.join() !== want.join()) violations.push(`${subject}: ${versions.join()} (want ${want.join()})`);
      for (let i = 1; i < deliveries.length; i++) {
        const previous = deliveries[i - 1]!;
        const current = deliveries[i]!;
        if (lsnToBigInt(String(current.data.lsn)) <= lsnToBigInt(String(previous.data.lsn))) violations.push(`${subject}: commit LSN not rising at #${i}`);
        // One at a time per row: the next change is sent only once the previous one was answered.
        if (current.receivedAt < previous.answeredAt!) violations.push(`${subject}: #${i} sent before #${i - 1} was answered`);
      }
    }
    expect(violations).toEqual([]);

    // Different rows proceeded concurrently, close to the configured concurrency and never above it.
    console.log(`peak concurrent deliveries: ${sink.peakOpen} of ${concurrency}`);
    expect(sink.peakOpen).toBeLessThanOrEqual(concurrency);
    expect(sink.peakOpen).toBeGreaterThanOrEqual(concurrency / 2);
    // And they were answered out of order across rows: later commits often finished before earlier ones.
    const answerOrder = [...sink.deliveries].sort((a, b) => a.answeredAt! - b.answeredAt!);
    let overtaken = 0;
    for (let i = 1; i < answerOrder.length; i++) if (lsnToBigInt(String(answerOrder[i]!.data.lsn)) < lsnToBigInt(String(answerOrder[i - 1]!.data.lsn))) overtaken++;
    expect(overtaken).toBeGreaterThan(total / 20);
  }, 90_000);

  it('keeps each row in commit order when attempts fail and are retried: a row waits for its own retry, other rows pass', async () => {
    db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL);');
    // One attempt in five fails (503); each is retried after a short backoff.
    sink = await startControlledSink(async () => {
      await sleep(Math.random() * 10);
      return { status: Math.random() < 0.2 ? 503 : 200 };
    });
    const file = writeManifests([
      triggerManifest('items', {
        table: { name: 'items' },
        sink: { url: sink.url },
        operations: ['insert', 'update'],
        ordering: 'key',
        concurrency: 64,
        delivery: { retries: 20, backoff: { policy: 'constant', delay: '30ms', maxDelay: '30ms' } },
      }),
    ]);
    proc = await startDispatcherProcess(['--database-url', db.url, '-f', file]);
    await proc.ready(60_000);
    const keys = 200;
    const versions = 8;
    await db.sql(`INSERT INTO items SELECT g, 0 FROM generate_series(1, ${keys}) g`);
    for (let v = 1; v < versions; v++) await db.sql('UPDATE items SET version = version + 1');
    const total = keys * versions;
    await eventually(() => sink.deliveries.filter((d) => d.status === 200).length >= total, 60_000, `all ${total} changes`);
    const failed = sink.deliveries.filter((d) => d.status === 503).length;
    expect(failed).toBeGreaterThan(total / 10); // the retries really happened

    const violations: string[] = [];
    const byRow = new Map<string, SinkDelivery[]>();
    for (const d of sink.deliveries) (byRow.get(d.subject) ?? byRow.set(d.subject, []).get(d.subject)!).push(d);
    for (const [subject, attempts] of byRow) {
      // Attempts of a row, in the order they arrived: 0 (failed...) 0 (ok) 1 ... - never a later version before an earlier one succeeded.
      let current = 0;
      for (const attempt of attempts) {
        const version = (attempt.data.new as { version: number }).version;
        if (version !== current) violations.push(`${subject}: version ${version} attempted while ${current} was not delivered`);
        if (attempt.status === 200) current += 1;
      }
      if (current !== versions) violations.push(`${subject}: ${current} of ${versions} versions delivered`);
    }
    expect(violations).toEqual([]);
    // The event id of a retried change is the same on every attempt.
    const idsByChange = new Map<string, Set<string>>();
    for (const d of sink.deliveries) {
      const change = `${d.subject}@${(d.data.new as { version: number }).version}`;
      (idsByChange.get(change) ?? idsByChange.set(change, new Set()).get(change)!).add(d.id);
    }
    expect([...idsByChange.values()].filter((ids) => ids.size !== 1)).toEqual([]);
    expect(sink.peakOpen).toBeGreaterThan(16);
  }, 60_000);
  it.each(['DEFAULT', 'FULL'])(
    "keeps a row in commit order across a change of its primary key (REPLICA IDENTITY %s): the move waits for the row's earlier changes, later ones wait for the move",
    async (identity) => {
      db = await startSourceDatabase(`CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL); ALTER TABLE items REPLICA IDENTITY ${identity};`);
      // The function is slow for the row's first update under its old key, fast otherwise.
      sink = await startControlledSink(async (d) => {
        if (d.subject === 'public.items/1' && (d.data.new as { version: number }).version === 1) await sleep(1500);
        return { status: 200 };
      });
      const file = writeManifests([triggerManifest('items', { table: { name: 'items' }, sink: { url: sink.url }, operations: ['insert', 'update', 'delete'], ordering: 'key', concurrency: 8 })]);
      proc = await startDispatcherProcess(['--database-url', db.url, '-f', file]);
      await proc.ready(60_000);
      await db.sql('INSERT INTO items VALUES (1, 0), (2, 0)');
      await db.sql('UPDATE items SET version = 1 WHERE id = 1'); // slow to deliver
      await db.sql('UPDATE items SET id = 1001, version = 2 WHERE id = 1'); // the same row under a new key
      await db.sql('UPDATE items SET version = 3 WHERE id = 1001');
      await db.sql('INSERT INTO items VALUES (1, 100)'); // a new row that reuses the old key
      await db.sql('DELETE FROM items WHERE id = 1001');
      await eventually(() => sink.deliveries.filter((d) => d.status === 200).length >= 7, 15_000, 'all 7 changes');
      const order = sink.deliveries.map((d) => `${d.type.split('.').at(-1)} ${d.subject} v${(d.data.new as { version?: number } | null)?.version ?? '-'}`);
      const at = (what: string) => sink.deliveries.findIndex((_, i) => order[i] === what);
      const slow = sink.deliveries[at('update public.items/1 v1')]!;
      const move = sink.deliveries[at('update public.items/1001 v2')]!;
      expect(at('update public.items/1001 v2'), order.join('; ')).toBeGreaterThan(at('update public.items/1 v1'));
      expect(move.receivedAt).toBeGreaterThanOrEqual(slow.answeredAt!);
      expect(at('update public.items/1001 v3')).toBeGreaterThan(at('update public.items/1001 v2'));
      expect(at('delete public.items/1001 v-')).toBeGreaterThan(at('update public.items/1001 v3'));
      // Row 2 was never held up by row 1.
      expect(at('insert public.items/2 v0')).toBeLessThan(at('update public.items/1001 v2'));
    },
    30_000,
  );
  it('keeps a TRUNCATE in commit order with the rows it removes: it waits for their earlier changes, and later changes wait for it', async () => {
    db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL);');
    sink = await startControlledSink(async (d) => {
      if (d.subject === 'public.items/1') await sleep(1000); // slow for row 1's changes before the truncate
      return { status: 200 };
    });
    const file = writeManifests([triggerManifest('items', { table: { name: 'items' }, sink: { url: sink.url }, operations: ['insert', 'update', 'truncate'], ordering: 'key', concurrency: 8 })]);
    proc = await startDispatcherProcess(['--database-url', db.url, '-f', file]);
    await proc.ready(60_000);
    await db.sql('INSERT INTO items VALUES (1, 0), (2, 0), (3, 0)');
    await db.sql('UPDATE items SET version = 1 WHERE id = 1');
    await db.sql('TRUNCATE items');
    await db.sql('INSERT INTO items VALUES (2, 10), (4, 10)'); // after the truncate: must not overtake it
    await eventually(() => sink.deliveries.filter((d) => d.status === 200).length >= 7, 15_000, 'all 7 changes');
    const names = sink.deliveries.map((d) => `${d.type.split('.').at(-1)} ${d.subject} v${(d.data.new as { version?: number } | null)?.version ?? '-'}`);
    const truncate = sink.deliveries.find((d) => d.type === 'dev.eventide.row.truncate')!;
    const before = sink.deliveries.filter((d) => d !== truncate && (d.data.new as { version: number }).version < 10);
    const after = sink.deliveries.filter((d) => d !== truncate && (d.data.new as { version: number }).version >= 10);
    expect(before.length, names.join('; ')).toBe(4);
    for (const d of before) expect(truncate.receivedAt, names.join('; ')).toBeGreaterThanOrEqual(d.answeredAt!);
    for (const d of after) expect(d.receivedAt, names.join('; ')).toBeGreaterThanOrEqual(truncate.answeredAt!);
    // Before the truncate, rows 2 and 3 did not wait for slow row 1.
    const row1Update = sink.deliveries.find((d) => d.subject === 'public.items/1' && (d.data.new as { version: number }).version === 1)!;
    for (const d of before.filter((d) => d.subject !== 'public.items/1')) expect(d.answeredAt!).toBeLessThan(row1Update.answeredAt!);
  }, 30_000);
});
