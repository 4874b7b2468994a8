/**
 * Backfills as users meet them: a table's existing rows sent through a trigger as `read` events while
 * the table keeps changing, consistent with the live changes; kill -9 in the middle; a filter; cancel;
 * a table without a primary key. Real Postgres, the real `eventide dispatch` process, progress read
 * from its /state, from eventide.backfills and from `eventide backfill status`.
 */
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { BackfillStateReport, DispatcherStateReport } from '../../common/dispatcherState.js';
import { type ControlledSink, type SinkDelivery, startControlledSink } from '../harness/controlledSink.js';
import { runEventide, sleep } from '../harness/deliveryHelpers.js';
import { startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';

const ROWS = 20_000;

function backfillManifest(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'eventide.dev/v1alpha1', kind: 'Backfill', metadata: { name, namespace: 'test' }, spec: { trigger: { name: 'items' }, ...spec } };
}

async function backfillState(proc: DispatcherProcess, name: string): Promise<BackfillStateReport | undefined> {
  const state = (await (await fetch(`http://127.0.0.1:${proc.port}/state`)).json()) as DispatcherStateReport;
  return state.backfills?.[`test/${name}`];
}

const idOf = (d: SinkDelivery) => Number(d.subject.split('/')[1]);
const versionOf = (d: SinkDelivery) => Number(((d.data.new ?? d.data.old) as { version?: number } | null)?.version ?? -1);

describe('backfills', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  async function setUp(options: { rows?: number; trigger?: Record<string, unknown>; answerDelayMs?: number; others?: (sinkUrl: string) => Record<string, unknown>[] } = {}) {
    const db = await startSourceDatabase(
      'CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL DEFAULT 0, note text); CREATE TABLE bare (id int, note text); ALTER TABLE bare REPLICA IDENTITY FULL;',
    );
    cleanups.push(() => db.close());
    await db.sql(`INSERT INTO items SELECT g, 0, 'existing' FROM generate_series(1, ${options.rows ?? ROWS}) g`);
    const sink: ControlledSink = await startControlledSink(async () => {
      if (options.answerDelayMs) await sleep(Math.random() * options.answerDelayMs);
      return { status: 200 };
    });
    cleanups.push(() => sink.close());
    let triggerSpec: Record<string, unknown> = { table: { name: 'items' }, sink: { url: sink.url }, operations: ['insert', 'update', 'delete'], concurrency: 16, ...options.trigger };
    let backfills: Record<string, unknown>[] = [];
    const others = options.others?.(sink.url) ?? [];
    const file = writeManifests([triggerManifest('items', triggerSpec), ...others]);
    let withItems = true;
    const write = () => writeFileSync(file, [...(withItems ? [triggerManifest('items', triggerSpec)] : []), ...others, ...backfills].map((m) => stringify(m)).join('---\n'));
    const withBackfills = (...next: Record<string, unknown>[]) => {
      backfills = next;
      write();
    };
    const withTrigger = (spec: Record<string, unknown>) => {
      triggerSpec = { ...triggerSpec, ...spec };
      write();
    };
    /** The trigger and the backfills leave the manifests together, as a `kubectl delete -f` of their file does. */
    const removeTriggerAndBackfills = () => {
      withItems = false;
      backfills = [];
      write();
    };
    const start = async () => {
      const proc = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--watch-config']);
      cleanups.push(() => proc.kill('SIGKILL'));
      await proc.ready(60_000);
      return proc;
    };
    return { db, sink, file, withBackfills, withTrigger, removeTriggerAndBackfills, start };
  }

  it('sends every existing row as a read, never older than a live change already sent, while the table changes', async () => {
    const { db, sink, withBackfills, start } = await setUp({ answerDelayMs: 2 });
    const proc = await start();
    withBackfills(backfillManifest('all-items', { batchSize: 500 }));
    const deleted = new Set<number>();
    let writing = true;
    let nextId = ROWS + 1;
    const writer = (async () => {
      let round = 0;
      // A few hundred changes a second: live traffic the function keeps up with (a saturated function
      // leaves no room for reads, and the backfill then waits, by design).
      while (writing) {
        await sleep(2);
        round += 1;
        const id = 1 + Math.floor(Math.random() * ROWS);
        if (round % 7 === 0 && !deleted.has(id)) {
          deleted.add(id);
          await db.sql('DELETE FROM items WHERE id = $1', [id]);
        } else if (round % 5 === 0) {
          await db.sql("INSERT INTO items VALUES ($1, 0, 'new')", [nextId++]);
        } else {
          // Several rows in one transaction, some near the backfill's cursor.
          await db.sql('UPDATE items SET version = version + 1 WHERE id = ANY($1)', [[id, (id % ROWS) + 1, ((id * 7) % ROWS) + 1]]);
        }
      }
    })();
    let lastState: BackfillStateReport | undefined;
    const done = await eventually(
      async () => {
        lastState = await backfillState(proc, 'all-items');
        return lastState?.phase === 'Complete' ? lastState : undefined;
      },
      120_000,
      'the backfill complete',
    ).catch((error: Error) => {
      throw new Error(
        `${error.message}: ${JSON.stringify(lastState)}\n${proc
          .output()
          .split('\n')
          .filter((l) => /warn|error|backfill/i.test(l))
          .slice(-20)
          .join('\n')}`,
      );
    });
    writing = false;
    await writer;
    // The estimate is the count when it started (the writer was already at work); every row then was read, and the rows inserted beyond them since.
    expect(done.trigger).toBe('test/items');
    expect(done.rowsEstimate).toBeGreaterThanOrEqual(ROWS - 20);
    expect(done.rowsEstimate).toBeLessThanOrEqual(ROWS + 100);
    expect(done.rowsRead).toBeGreaterThanOrEqual(ROWS - deleted.size);
    // Let the last live changes arrive.
    const final = new Map<number, number>(((await db.sql('SELECT id, version FROM items')).rows as { id: number; version: number }[]).map((r) => [r.id, r.version]));
    await eventually(
      () => {
        const last = new Map<number, SinkDelivery>();
        for (const d of sink.deliveries) last.set(idOf(d), d);
        for (const [id, version] of final) if (last.get(id) === undefined || versionOf(last.get(id)!) !== version) return false;
        // The writer's last deletes may still be on their way.
        for (const id of deleted) if (last.get(id)?.type !== 'dev.eventide.row.delete') return false;
        return true;
      },
      30_000,
      "every row's last event at its current version (or its delete)",
    );

    const byKey = new Map<number, SinkDelivery[]>();
    for (const d of sink.deliveries) (byKey.get(idOf(d)) ?? byKey.set(idOf(d), []).get(idOf(d))!).push(d);
    const problems: string[] = [];
    for (let id = 1; id <= ROWS; id++) {
      const events = byKey.get(id) ?? [];
      if (!deleted.has(id) && !events.some((d) => d.type === 'dev.eventide.row.read')) problems.push(`${id}: no read`);
      let previous = -1;
      let gone = false;
      for (const d of events) {
        if (gone) problems.push(`${id}: ${d.type} after its delete`);
        if (d.type === 'dev.eventide.row.delete') gone = true;
        else if (versionOf(d) < previous) problems.push(`${id}: ${d.type} at version ${versionOf(d)} after version ${previous}`);
        else previous = versionOf(d);
      }
      if (deleted.has(id)) {
        if (events.at(-1)?.type !== 'dev.eventide.row.delete') problems.push(`${id}: deleted, but its last event is ${events.at(-1)?.type}`);
      } else if (versionOf(events.at(-1)!) !== final.get(id)) problems.push(`${id}: last event at version ${versionOf(events.at(-1)!)}, row at ${final.get(id)}`);
    }
    expect(problems.slice(0, 20)).toEqual([]);
    // Live changes in commit order per row: versions only go up.
    const reads = sink.deliveries.filter((d) => d.type === 'dev.eventide.row.read');
    expect(reads[0]!.data).toMatchObject({ op: 'read', old: null, table: { schema: 'public', name: 'items' } });
    expect(reads[0]!.id).toMatch(/^read-[0-9a-f]{32}$/);
    const row = (await db.sql("SELECT count(*)::int AS n FROM eventide.backfills WHERE name = 'test/all-items' AND phase = 'Complete'")).rows[0] as { n: number };
    expect(row.n).toBe(1);
    console.log(`backfill: ${reads.length} reads, ${sink.deliveries.length - reads.length} live events, ${deleted.size} deletes`);
  }, 240_000);

  it('kill -9 in the middle: a restart resumes from the last completed chunk and completes; a row read twice keeps its event id', async () => {
    const { db, sink, withBackfills, start } = await setUp({ answerDelayMs: 3 });
    withBackfills(backfillManifest('resumed', { batchSize: 500 }));
    const first = await start();
    await eventually(async () => ((await backfillState(first, 'resumed'))?.rowsRead ?? 0) >= 5000, 60_000, '5000 rows read');
    await first.kill('SIGKILL');
    const durable = (await db.sql("SELECT cursor, rows_read::int AS rows FROM eventide.backfills WHERE name = 'test/resumed'")).rows[0] as { cursor: string[]; rows: number };
    expect(durable.rows).toBeGreaterThanOrEqual(5000);
    expect(Number(durable.cursor[0])).toBe(durable.rows); // no row deleted: the cursor is the last key of the completed chunks
    const readBefore = sink.deliveries.length;
    const second = await start();
    const done = await eventually(
      async () => {
        const state = await backfillState(second, 'resumed');
        return state?.phase === 'Complete' ? state : undefined;
      },
      90_000,
      'the backfill complete after the restart',
    );
    // Counted once per row: the chunk cut off by the kill was recorded by the second run only.
    expect(done).toMatchObject({ rowsRead: ROWS, rowsSent: ROWS, rowsEstimate: ROWS, cursor: String(ROWS) });
    expect(second.output()).toMatch(new RegExp(`"from":\\["${durable.cursor[0]}"\\],"msg":"backfill running"`));
    const ids = new Map<number, Set<string>>();
    for (const d of sink.deliveries) (ids.get(idOf(d)) ?? ids.set(idOf(d), new Set()).get(idOf(d))!).add(d.id);
    const missing = Array.from({ length: ROWS }, (_, i) => i + 1).filter((id) => !ids.has(id));
    expect(missing).toEqual([]);
    // Duplicates (rows in flight at the kill, read again) carry the same id: same key, same row version.
    expect([...ids.values()].filter((set) => set.size > 1)).toEqual([]);
    // The restart resumed rather than starting over: far fewer than ROWS were sent again.
    expect(sink.deliveries.length - readBefore).toBeLessThan(ROWS - 4000);
  }, 240_000);

  it("a filter limits the rows; the trigger's own filter and format apply; a suspended trigger makes the backfill wait", async () => {
    const { sink, withBackfills, withTrigger, start } = await setUp({ rows: 2000, trigger: { filter: 'new.id <= 1000', format: 'hasura', suspend: true } });
    const proc = await start();
    withBackfills(backfillManifest('tenth', { filter: 'new.id % 10 == 0' }));
    await eventually(async () => (await backfillState(proc, 'tenth'))?.message?.includes('suspended'), 30_000, 'the backfill waiting for the suspended trigger');
    await sleep(1000);
    expect(sink.deliveries).toHaveLength(0);
    expect(await backfillState(proc, 'tenth')).toMatchObject({ phase: 'Pending', rowsRead: 0, message: 'waiting: EventTrigger test/items is suspended (spec.suspend)' });
    withTrigger({ suspend: false });
    const done = await eventually(
      async () => {
        const state = await backfillState(proc, 'tenth');
        return state?.phase === 'Complete' ? state : undefined;
      },
      60_000,
      'the backfill complete once the trigger resumed',
    );
    // Read every row; sent the ones both filters pass: id a multiple of 10, at most 1000.
    expect(done).toMatchObject({ rowsRead: 2000, rowsSent: 100, rowsEstimate: 2000 });
    await eventually(() => sink.deliveries.length >= 100, 10_000, '100 deliveries');
    await sleep(500);
    const events = sink.deliveries.map((d) => d.data as { event: { op: string; data: { old: unknown; new: { id: number } } }; trigger: { name: string } });
    expect(events).toHaveLength(100);
    expect(events.map((e) => e.event.data.new.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => (i + 1) * 10));
    expect(events[0]).toMatchObject({ event: { op: 'MANUAL', data: { old: null } }, trigger: { name: 'items' } });
  }, 120_000);

  it('cancel stops a running backfill (CLI, or its resource removed); status shows progress; a table without a primary key is refused', async () => {
    const { db, sink, withBackfills, start } = await setUp({
      rows: 3000,
      others: (url) => [triggerManifest('bare', { table: { name: 'bare' }, sink: { url }, operations: ['insert'] })],
    });
    const proc = await start();
    withBackfills(backfillManifest('slow', { rowsPerSecond: 200, batchSize: 100 }), backfillManifest('removed', { rowsPerSecond: 200, batchSize: 100 }), {
      ...backfillManifest('no-key', {}),
      spec: { trigger: { name: 'bare' } },
    });
    const refused = await eventually(
      async () => {
        const state = await backfillState(proc, 'no-key');
        return state?.phase === 'Failed' ? state : undefined;
      },
      30_000,
      'the backfill of a table without a primary key failed',
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(await backfillState(proc, 'no-key'))}`);
    });
    expect(refused.message).toBe(
      'table public.bare has no primary key: a backfill reads a table in primary-key order, chunk by chunk, and needs the key to tell which live change touches which row it read; add one (ALTER TABLE "public"."bare" ADD PRIMARY KEY (...))',
    );
    await eventually(async () => ((await backfillState(proc, 'slow'))?.rowsRead ?? 0) >= 300, 30_000, 'the slow backfill under way');

    const status = await runEventide(['backfill', 'status', '--database-url', db.url, 'test/slow']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/Running/);
    expect(status.stdout).toMatch(/\d+(\.\d+)?%/);
    const list = await runEventide(['backfill', 'status', '--database-url', db.url]);
    expect(list.stdout).toMatch(/^test\/no-key\s+test\/bare\s+Failed/m);

    const cancelled = await runEventide(['backfill', 'cancel', '--database-url', db.url, 'test/slow']);
    expect(cancelled.code).toBe(0);
    withBackfills(backfillManifest('slow', { rowsPerSecond: 200, batchSize: 100 }), { ...backfillManifest('no-key', {}), spec: { trigger: { name: 'bare' } } });
    for (const name of ['slow', 'removed']) {
      await eventually(async () => (await backfillState(proc, name))?.phase === 'Cancelled', 30_000, `${name} cancelled`);
    }
    const readsNow = () => sink.deliveries.filter((d) => d.type === 'dev.eventide.row.read').length;
    await sleep(500);
    const settled = readsNow();
    await sleep(2000);
    expect(readsNow()).toBe(settled); // nothing more after the cancel
    expect(settled).toBeLessThan(2 * 3000);
    const rows = (await db.sql('SELECT name, phase, message FROM eventide.backfills ORDER BY name')).rows;
    expect(rows).toEqual([
      { name: 'test/no-key', phase: 'Failed', message: refused.message },
      { name: 'test/removed', phase: 'Cancelled', message: 'cancelled: its Backfill resource was deleted' },
      { name: 'test/slow', phase: 'Cancelled', message: expect.any(String) },
    ]);
    // A cancelled resource still in the manifests stays cancelled (it is the same object).
    await sleep(3000);
    expect((await backfillState(proc, 'slow'))?.phase).toBe('Cancelled');
  }, 120_000);

  it('a changed filter starts the backfill afresh; a backfill removed with its trigger is cancelled', async () => {
    const { db, sink, withBackfills, removeTriggerAndBackfills, start } = await setUp({
      rows: 2000,
      others: (url) => [triggerManifest('other', { table: { name: 'bare' }, sink: { url }, operations: ['insert'] })],
    });
    const proc = await start();
    withBackfills(backfillManifest('changing', { filter: 'new.id > 0', rowsPerSecond: 100, batchSize: 50 }));
    await eventually(async () => ((await backfillState(proc, 'changing'))?.rowsRead ?? 0) >= 100, 30_000, 'the first run under way');
    const firstRun = (await db.sql("SELECT run FROM eventide.backfills WHERE name = 'test/changing'")).rows[0] as { run: string };
    withBackfills(backfillManifest('changing', { filter: 'new.id > 1500', batchSize: 500 }));
    const done = await eventually(
      async () => {
        const state = await backfillState(proc, 'changing');
        return state?.phase === 'Complete' ? state : undefined;
      },
      60_000,
      'the second run complete',
    );
    expect(done).toMatchObject({ rowsRead: 2000, rowsSent: 500 });
    const row = (await db.sql("SELECT run, filter FROM eventide.backfills WHERE name = 'test/changing'")).rows[0] as { run: string; filter: string };
    expect(row).toEqual({ run: expect.not.stringMatching(firstRun.run), filter: 'new.id > 1500' });
    const fresh = sink.deliveries.filter((d) => d.type === 'dev.eventide.row.read' && idOf(d) > 1500);
    expect(new Set(fresh.map(idOf)).size).toBe(500);

    // The trigger and its backfill leave the manifests together (kubectl delete -f of one file): cancelled, not forgotten.
    withBackfills(backfillManifest('gone', { rowsPerSecond: 50, batchSize: 50 }));
    await eventually(async () => (await backfillState(proc, 'gone'))?.phase === 'Running', 30_000, 'the second backfill running');
    removeTriggerAndBackfills();
    await eventually(async () => ((await db.sql("SELECT phase FROM eventide.backfills WHERE name = 'test/gone'")).rows[0] as { phase: string }).phase === 'Cancelled', 30_000, 'cancelled');
  }, 120_000);
});
