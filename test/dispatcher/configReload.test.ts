import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { type SourceDatabase, startDispatcher, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { eventually, type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

describe('config reload (--watch-config)', () => {
  let db: SourceDatabase;
  let orders: RecordingSink;
  let payments: RecordingSink;
  let dispatcher: Dispatcher;
  let file: string;

  beforeAll(async () => {
    db = await startSourceDatabase('CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE payments (id int PRIMARY KEY);');
    orders = await startRecordingSink();
    payments = await startRecordingSink();
    file = writeManifests([triggerManifest('orders', { sink: { url: orders.url }, operations: ['insert'] })]);
    dispatcher = await startDispatcher(db.url, file, ['--watch-config']);
  });
  afterAll(async () => {
    await dispatcher?.stop();
    await orders?.close();
    await payments?.close();
    await db?.close();
  });

  it('picks up a new trigger within seconds while events keep flowing, losing none', async () => {
    let next = 1;
    const writer = setInterval(() => void db.sql('INSERT INTO orders VALUES ($1)', [next++]).catch(() => undefined), 20);
    await eventually(() => orders.requests.length > 10, 10_000, 'first orders');
    writeFileSync(
      file,
      [
        triggerManifest('orders', { sink: { url: orders.url }, operations: ['insert'] }),
        triggerManifest('payments', { table: { name: 'payments' }, sink: { url: payments.url }, operations: ['insert'] }),
      ]
        .map((m) => stringify(m))
        .join('---\n'),
    );
    const reloadedAt = Date.now();
    // The publication gains the table when the new config is applied: insert until one arrives.
    await eventually(
      async () => {
        await db.sql('INSERT INTO payments VALUES ($1) ON CONFLICT DO NOTHING', [Date.now() % 1_000_000]);
        return payments.requests.length > 0;
      },
      15_000,
      'a payments event after the reload',
    );
    expect(Date.now() - reloadedAt).toBeLessThan(15_000);
    clearInterval(writer);
    const inserted = next - 1;
    await eventually(() => new Set(orders.events().map((e) => e.subject)).size >= inserted, 15_000, `all ${inserted} orders`);
    const subjects = new Set(orders.events().map((e) => e.subject));
    for (let id = 1; id <= inserted; id++) expect(subjects.has(`public.orders/${id}`)).toBe(true);
  });

  it("a trigger whose new version is broken is set aside with the reason (its old version is not served behind the user's back); fixed, it is served again", async () => {
    writeFileSync(file, stringify(triggerManifest('orders', { sink: { url: orders.url }, filter: 'new.id = 1' })));
    const state = async () => dispatcher.state().triggers['test/orders'];
    await eventually(async () => (await state())?.reason === 'InvalidFilter', 10_000, 'orders set aside');
    expect((await state())?.state).toBe('set-aside');
    writeFileSync(file, stringify(triggerManifest('orders', { sink: { url: orders.url }, filter: 'new.id >= 100000' })));
    await eventually(async () => (await state())?.state === 'serving', 10_000, 'orders served again');
    const before = orders.requests.length;
    await db.sql('INSERT INTO orders VALUES (100000)');
    await eventually(() => orders.requests.length > before, 10_000, 'an order after the fix');
  });
});
