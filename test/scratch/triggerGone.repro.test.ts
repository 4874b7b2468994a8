import { writeFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { startControlledSink } from '../harness/controlledSink.js';

it('repro: the trigger of a running Backfill leaves the config together with the Backfill', async () => {
  const db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY); CREATE TABLE other (id int PRIMARY KEY)');
  await db.sql('INSERT INTO items SELECT g FROM generate_series(1, 2000) g');
  const sink = await startControlledSink(async () => ({ status: 200 }));
  const a = triggerManifest('a', { table: { name: 'items' }, sink: { url: sink.url } });
  const b = triggerManifest('b', { table: { name: 'other' }, sink: { url: sink.url } });
  const bf = { apiVersion: 'eventide.dev/v1alpha1', kind: 'Backfill', metadata: { name: 'bf', namespace: 'test', uid: 'u1', generation: 1 }, spec: { trigger: { name: 'a' }, batchSize: 100, rowsPerSecond: 20 } };
  const file = writeManifests([a, b, bf]);
  const proc = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--watch-config']);
  try {
    await proc.ready(60_000);
    for (let i = 0; i < 100; i++) {
      const r = (await db.sql("SELECT phase FROM eventide.backfills WHERE name='test/bf'").catch(() => ({ rows: [] }))).rows[0] as { phase: string } | undefined;
      if (r?.phase === 'Running') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    // What the operator writes when trigger a is deleted: neither a nor its Backfill in the config.
    writeFileSync(file, [b].map((m) => stringify(m)).join('---\n'));
    await new Promise((r) => setTimeout(r, 6000));
    const row = (await db.sql("SELECT phase, message FROM eventide.backfills WHERE name='test/bf'")).rows[0];
    const state = (await (await fetch(`http://127.0.0.1:${proc.port}/state`)).json()) as { backfills: Record<string, unknown>; triggers: Record<string, unknown> };
    console.log('ROW', JSON.stringify(row), 'STATE backfills', JSON.stringify(state.backfills), 'triggers', Object.keys(state.triggers));
    console.log(proc.output().split('\n').filter((l) => /backfill/i.test(l)).slice(-5).join('\n'));
    expect(row).toBeDefined();
  } finally {
    await proc.kill('SIGKILL');
    await sink.close();
    await db.close();
  }
}, 120_000);
