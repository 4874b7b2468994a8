import { describe, expect, it } from 'vitest';
import { parseEventTrigger } from '../../api/v1alpha1/index.js';
import { buildRoutes } from '../routing/triggerMatcher.js';
import { checkRoutesAgainstTables, type TableFacts } from './sourceSetup.js';

function routesFor(...specs: [string, Record<string, unknown>][]) {
  return buildRoutes(
    specs.map(([name, spec]) =>
      parseEventTrigger({
        apiVersion: 'eventide.dev/v1alpha1',
        kind: 'EventTrigger',
        metadata: { name, namespace: 'shop' },
        spec: { source: { connectionSecretRef: { name: 'db' } }, sink: { url: 'http://127.0.0.1:1/' }, table: { name: 'orders' }, ...spec },
      }),
    ),
  );
}

/** Each set-aside trigger's reason and message, as /state reports them. */
function messages(problems: Map<string, { reason: string; message: string }>): string[] {
  return [...problems.values()].map((p) => p.message);
}

const orders: TableFacts = { schema: 'public', name: 'orders', exists: true, columns: ['id', 'total', 'status'], replicaIdentity: 'f' };

describe('checking triggers against the tables', () => {
  it('names the trigger and the table that does not exist', () => {
    const routes = routesFor(['t', { table: { schema: 'sales', name: 'orderz' } }]);
    expect(messages(checkRoutesAgainstTables(routes, [{ schema: 'sales', name: 'orderz', exists: false, columns: [] }]).problems)).toEqual(['EventTrigger shop/t: table sales.orderz does not exist']);
  });

  it('names the field and the column the table lacks, in spec.columns and in the filter; every problem at once', () => {
    const routes = routesFor(['a', { operations: ['update'], columns: ['statuz'] }], ['b', { filter: 'new.totl > 5 && old.status == "x"' }]);
    expect(messages(checkRoutesAgainstTables(routes, [orders]).problems)).toEqual([
      'EventTrigger shop/a: spec.columns names column "statuz", which public.orders does not have',
      'EventTrigger shop/b: spec.filter names column "totl", which public.orders does not have',
    ]);
  });

  it('REPLICA IDENTITY NOTHING or no primary key is a problem whatever the operations (the publication publishes them all); DEFAULT with spec.columns only a warning', () => {
    for (const operations of [['update'], ['insert']]) {
      expect(messages(checkRoutesAgainstTables(routesFor(['t', { operations }]), [{ ...orders, replicaIdentity: 'n' }]).problems)).toEqual([
        'EventTrigger shop/t: public.orders has REPLICA IDENTITY NOTHING; Postgres then refuses its updates and deletes under a publication',
      ]);
    }
    const withoutKey: TableFacts = { ...orders, replicaIdentity: 'd', withoutIdentity: [{ schema: 'public', name: 'orders_2024' }] };
    expect(messages(checkRoutesAgainstTables(routesFor(['t', { operations: ['insert'] }]), [withoutKey]).problems)).toEqual([
      'EventTrigger shop/t: public.orders_2024 has no primary key (nor replica identity index); Postgres then refuses its updates and deletes under a publication; add a primary key or run ALTER TABLE "public"."orders_2024" REPLICA IDENTITY FULL',
    ]);
    const { problems, warnings } = checkRoutesAgainstTables(routesFor(['t', { operations: ['update'], columns: ['status'] }]), [{ ...orders, replicaIdentity: 'd' }]);
    expect(problems.size).toBe(0);
    expect(warnings).toEqual([expect.stringMatching(/^EventTrigger shop\/t: public\.orders lacks REPLICA IDENTITY FULL/)]);
  });

  it('gives each trigger one stable reason: the table, a column, the replica identity, a table the role may not publish', () => {
    const routes = routesFor(['a', { table: { name: 'gone' } }], ['b', { operations: ['update'], columns: ['statuz'] }], ['c', {}]);
    const facts: TableFacts[] = [
      { schema: 'public', name: 'gone', exists: false, columns: [] },
      { ...orders, publishable: false },
    ];
    const reasons = Object.fromEntries([...checkRoutesAgainstTables(routes, facts).problems].map(([key, p]) => [key, p.reason]));
    expect(reasons).toEqual({ 'shop/a': 'TableNotFound', 'shop/b': 'ColumnNotFound', 'shop/c': 'TableForbidden' });
    expect(checkRoutesAgainstTables(routesFor(['n', {}]), [{ ...orders, replicaIdentity: 'n' }]).problems.get('shop/n')?.reason).toBe('NoReplicaIdentity');
  });
});
