import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type ControlledSink, lsnToBigInt, type SinkDelivery, startControlledSink } from '../harness/controlledSink.js';
import { backlogEventIds } from '../harness/deliveryHelpers.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * kill -9 while several connections keep committing: transactions interleave in the WAL (the slot
 * sends them in commit order), some are larger than the in-flight window (so a kill can land in the
 * middle of one), and Postgres spills them to disk (logical_decoding_work_mem at its minimum).
 */
describe('kill -9 while concurrent writers commit', () => {
  let db: SourceDatabase;
  let sink: ControlledSink;
  let proc: DispatcherProcess | undefined;
  const writers: pg.Client[] = [];
  afterAll(async () => {
    await proc?.kill('SIGKILL');
    for (const client of writers) await client.end().catch(() => undefined);
    await sink?.close();
    await db?.close();
  });

  it('delivers every committed change at least once, with one id per change and each row in commit order without gaps per run', async () => {
    const rows = 3000;
    db = await startSourceDatabase(`CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL DEFAULT 0, note text);
      INSERT INTO items (id, note) SELECT g, 'row ' || g FROM generate_series(1, ${rows}) g;`);
    await db.sql("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'");
    await db.sql('SELECT pg_reload_conf()');

    const runs: SinkDelivery[][] = [[]];
    sink = await startControlledSink(async (d) => {
      runs.at(-1)!.push(d);
      await sleep(Math.random() * 4);
      return { status: 200 };
    });
    const file = writeManifests([triggerManifest('items', { table: { name: 'items' }, sink: { url: sink.url }, operations: ['update'], ordering: 'key', concurrency: 64 })]);
    const start = async () => {
      const started = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--max-inflight-events', '500']);
      await started.ready(60_000);
      return started;
    };
    proc = await start();

    // Four writers: each transaction locks a random set of rows in id order (no deadlocks) and bumps
    // their version, so a row's versions are its commit order. Every eighth transaction of the first writer is bigger than the window.
    // They go on until the kills are done and at least 20k changes were committed.
    let killsDone = false;
    let committed = 0;
    let changesCommitted = 0;
    const write = async (client: pg.Client, n: number) => {
      for (let t = 0; !killsDone || changesCommitted < 20_000; t++) {
        const big = n === 0 && t % 8 === 7;
        const size = big ? 1000 : 10 + Math.floor(Math.random() * 90);
        const ids = [...new Set(Array.from({ length: size }, () => 1 + Math.floor(Math.random() * rows)))].sort((a, b) => a - b);
        await client.query('BEGIN');
        await client.query('SELECT id FROM items WHERE id = ANY($1::int[]) ORDER BY id FOR UPDATE', [ids]);
        await client.query('UPDATE items SET version = version + 1 WHERE id = ANY($1::int[])', [ids]);
        await client.query('COMMIT');
        committed += 1;
        changesCommitted += ids.length;
        await sleep(100);
      }
    };
    for (let n = 0; n < 4; n++) {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      writers.push(client);
    }
    const writing$ = Promise.all(writers.map((client, n) => write(client, n)));

    // Three kills, each once a few thousand changes went out in the run and the slot moved, while the writers go on.
    // Events parked in the trigger backlog count as handled for the slot: they are delivered from there after a restart.
    const kills: { confirmed: bigint; at: number; parked: Set<string> }[] = [];
    for (let k = 0; k < 3; k++) {
      const before = await db.confirmedLsn();
      await eventually(async () => runs.at(-1)!.length >= 2500 && (await db.confirmedLsn()) > before, 45_000, `run ${k + 1}: 2500 deliveries and a newly confirmed position`);
      const committedAtKill = committed;
      expect(await proc.kill('SIGKILL')).toBeNull();
      kills.push({ confirmed: await db.confirmedLsn(), at: Date.now(), parked: await backlogEventIds(db) });
      runs.push([]);
      proc = await start();
      expect(committed).toBeGreaterThan(committedAtKill); // the writers kept committing across the kill
    }
    await eventually(() => runs.at(-1)!.length >= 1000, 30_000, 'deliveries after the last restart');
    killsDone = true;
    await writing$;
    const finalVersions = new Map<string, number>();
    for (const row of (await db.sql('SELECT id, version FROM items')).rows as { id: number; version: number }[]) finalVersions.set(`public.items/${row.id}`, row.version);
    const wanted = [...finalVersions.values()].reduce((n, v) => n + v, 0);
    console.log(`${committed} transactions, ${wanted} changes, ${sink.deliveries.length} deliveries in ${runs.length} runs`);
    expect(wanted).toBe(changesCommitted);
    expect(wanted).toBeGreaterThanOrEqual(20_000);

    const change = (d: SinkDelivery) => `${d.subject}@${(d.data.new as { version: number }).version}`;
    const delivered200 = () => new Set(sink.deliveries.filter((d) => d.status === 200).map(change));
    // After a restart with events in the backlog every change goes through it until it is empty: slower
    // than the fast path while the writers keep up their pace (see the README's benchmark figures).
    await eventually(() => delivered200().size >= wanted, 180_000, `all ${wanted} changes`);

    // Every committed change (versions 1..final of every row) arrived, and nothing else.
    const got = delivered200();
    const missing: string[] = [];
    for (const [subject, final] of finalVersions) for (let v = 1; v <= final; v++) if (!got.has(`${subject}@${v}`)) missing.push(`${subject}@${v}`);
    expect(missing.slice(0, 20)).toEqual([]);
    expect(got.size).toBe(wanted);

    // One id per change, and no id shared by two changes.
    const idsByChange = new Map<string, Set<string>>();
    const changeById = new Map<string, string>();
    const clashes: string[] = [];
    for (const d of sink.deliveries) {
      (idsByChange.get(change(d)) ?? idsByChange.set(change(d), new Set()).get(change(d))!).add(d.id);
      const other = changeById.get(d.id);
      if (other !== undefined && other !== change(d)) clashes.push(`${d.id}: ${other} and ${change(d)}`);
      changeById.set(d.id, change(d));
    }
    expect(clashes).toEqual([]);
    expect([...idsByChange].filter(([, ids]) => ids.size !== 1)).toEqual([]);

    // In each run every row's changes came in commit order, one version after the other: a run
    // resumes from the confirmed position and skips nothing after it.
    const violations: string[] = [];
    for (const [i, run] of runs.entries()) {
      const last = new Map<string, number>();
      for (const d of run) {
        const version = (d.data.new as { version: number }).version;
        const previous = last.get(d.subject);
        if (previous !== undefined && version !== previous + 1) violations.push(`run ${i + 1} ${d.subject}: version ${version} after ${previous}`);
        last.set(d.subject, version);
      }
    }
    expect(violations.slice(0, 20)).toEqual([]);

    // What the slot had confirmed at a kill had been answered 200 before it or waited in the backlog;
    // the next run started after it, apart from the backlog's events.
    for (const [i, { confirmed, at, parked }] of kills.entries()) {
      const answeredBefore = new Set(
        runs
          .slice(0, i + 1)
          .flat()
          .filter((d) => d.status === 200 && d.answeredAt! <= at)
          .map(change),
      );
      const unanswered = sink.deliveries.filter((d) => lsnToBigInt(String(d.data.lsn)) < confirmed && !answeredBefore.has(change(d)) && !parked.has(d.id)).map(change);
      expect(unanswered.slice(0, 20)).toEqual([]);
      expect(
        runs[i + 1]!.filter((d) => lsnToBigInt(String(d.data.lsn)) < confirmed && !parked.has(d.id))
          .map(change)
          .slice(0, 20),
      ).toEqual([]);
    }
  }, 300_000);
});
