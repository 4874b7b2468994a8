import { writeFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { startControlledSink } from '../harness/controlledSink.js';

it('repro: spec.filter / spec.trigger change of a running Backfill (same uid)', async () => {
  const db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY)');
  await db.sql('INSERT INTO items SELECT g FROM generate_series(1, 2000) g');
  const sink = await startControlledSink(async () => ({ status: 200 }));
  const a = triggerManifest('a', { table: { name: 'items' }, sink: { url: sink.url } });
  const b = triggerManifest('b', { table: { name: 'items' }, sink: { url: sink.url } });
  const bf = (spec: Record<string, unknown>) => ({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Backfill', metadata: { name: 'bf', namespace: 'test', uid: 'u1', generation: 1 }, spec: { batchSize: 100, rowsPerSecond: 20, ...spec } });
  const file = writeManifests([a, b, bf({ trigger: { name: 'a' }, filter: 'new.id > 0' })]);
  const proc = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--watch-config']);
  try {
    await proc.ready(60_000);
    for (let i = 0; i < 100; i++) {
      const r = (await db.sql("SELECT phase FROM eventide.backfills WHERE name='test/bf'").catch(() => ({ rows: [] }))).rows[0] as { phase: string } | undefined;
      if (r?.phase === 'Running') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    writeFileSync(file, [a, b, { ...bf({ trigger: { name: 'b' }, filter: 'new.id > 1000' }), metadata: { name: 'bf', namespace: 'test', uid: 'u1', generation: 2 } }].map((m) => stringify(m)).join('---\n'));
    await new Promise((r) => setTimeout(r, 5000));
    const row = (await db.sql("SELECT trigger, filter, phase FROM eventide.backfills WHERE name='test/bf'")).rows[0];
    const state = (await (await fetch(`http://127.0.0.1:${proc.port}/state`)).json()) as { backfills: Record<string, unknown> };
    const sources = new Set(sink.deliveries.map((d) => (d as unknown as { source?: string }).source ?? ''));
    console.log('ROW', JSON.stringify(row), 'STATE', JSON.stringify(state.backfills['test/bf']), 'deliveries', sink.deliveries.length, 'max id', Math.max(...sink.deliveries.map((d) => Number(d.subject.split('/')[1]))), [...sources]);
    expect(row).toBeDefined();
  } finally {
    await proc.kill('SIGKILL');
    await sink.close();
    await db.close();
  }
}, 120_000);
