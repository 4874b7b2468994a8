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
import { startSourceDatabase, triggerManifest, writeManifests, type SourceDatabase } from '../harness/dispatcherFixture.js';
import { startDispatcherProcess, type DispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';
import { startControlledSink, type ControlledSink, type SinkDelivery } from '../harness/controlledSink.js';
import { runEventide, sleep } from '../harness/deliveryHelpers.js';

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

  async function setUp(options: { rows?: number; trigger?: Record<string, unknown>; answerDelayMs?: number } = {}) {
    const db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL DEFAULT 0, note text); CREATE TABLE bare (id int, note text);');
    cleanups.push(() => db.close());
    await db.sql(`INSERT INTO items SELECT g, 0, 'existing' FROM generate_series(1, ${options.rows ?? ROWS}) g`);
    const sink: ControlledSink = await startControlledSink(async () => {
      if (options.answerDelayMs) await sleep(Math.random() * options.answerDelayMs);
      return { status: 200 };
    });
    cleanups.push(() => sink.close());
    const trigger = triggerManifest('items', { table: { name: 'items' }, sink: { url: sink.url }, operations: ['insert', 'update', 'delete'], concurrency: 16, ...options.trigger });
    const file = writeManifests([trigger]);
    const withBackfills = (...backfills: Record<string, unknown>[]) => writeFileSync(file, [trigger, ...backfills].map((m) => stringify(m)).join('---\n'));
    const start = async () => {
      const proc = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--watch-config']);
      cleanups.push(() => proc.kill('SIGKILL'));
      await proc.ready(60_000);
      return proc;
    };
    return { db, sink, file, withBackfills, start };
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
    const done = await eventually(async () => {
      lastState = await backfillState(proc, 'all-items');
      return lastState?.phase === 'Complete' ? lastState : undefined;
    }, 120_000, 'the backfill complete').catch((error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(lastState)}\n${proc.output().split('\n').filter((l) => /warn|error|backfill/i.test(l)).slice(-20).join('\n')}`);
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
    await eventually(() => {
      const last = new Map<number, SinkDelivery>();
      for (const d of sink.deliveries) last.set(idOf(d), d);
      for (const [id, version] of final) if (last.get(id) === undefined || versionOf(last.get(id)!) !== version) return false;
      return true;
    }, 30_000, 'every row\'s last event at its current version');

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
});
