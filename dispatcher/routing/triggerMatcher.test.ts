import { describe, expect, it } from 'vitest';
import { parseEventTrigger } from '../../api/v1alpha1/index.js';
import { buildRoutes, matchRoutes, type RoutableChange, routedTables } from './triggerMatcher.js';

function trigger(name: string, spec: Record<string, unknown>) {
  return parseEventTrigger({
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: 'shop' },
    spec: { source: { connectionSecretRef: { name: 'db' } }, sink: { url: 'http://127.0.0.1:1/' }, ...spec },
  });
}

function change(partial: Partial<RoutableChange> & { changed?: string[] | 'unknown' }): RoutableChange {
  const { changed, ...rest } = partial;
  return {
    op: 'insert',
    schema: 'public',
    table: 'orders',
    old: null,
    new: { id: 1, is_validated: false, is_paid: false },
    columnChanged: (c) => (changed === 'unknown' ? undefined : (changed ?? []).includes(c)),
    ...rest,
  };
}

const routes = buildRoutes([
  trigger('new-order', { table: { name: 'orders' }, operations: ['insert'], filter: 'new.is_validated == false' }),
  trigger('paid', { table: { name: 'orders' }, operations: ['update'], columns: ['is_paid'], filter: 'new.is_paid == true' }),
  trigger('any-order', { table: { name: 'orders' } }),
  trigger('wipe', { table: { name: 'orders' }, operations: ['truncate'] }),
  trigger('other-schema', { table: { schema: 'audit', name: 'orders' } }),
  trigger('strict', { table: { name: 'orders' }, operations: ['update'], filter: 'new.missing_column == 1' }),
]);

const names = (c: RoutableChange) => matchRoutes(routes, c).map((m) => m.route.trigger.metadata.name);

const cases: { name: string; given: RoutableChange; expect: string[] }[] = [
  { name: 'an insert that passes the filter fires the insert trigger and the catch-all', given: change({}), expect: ['new-order', 'any-order'] },
  {
    name: 'an insert failing the filter fires only the catch-all',
    given: change({ new: { id: 1, is_validated: true, is_paid: false } }),
    expect: ['any-order'],
  },
  {
    name: 'an update of a watched column that passes the filter fires',
    given: change({ op: 'update', old: { is_paid: false }, new: { is_paid: true }, changed: ['is_paid'] }),
    expect: ['paid', 'any-order', 'strict'],
  },
  {
    name: 'an update that leaves the watched column alone does not fire the column trigger',
    given: change({ op: 'update', old: { is_paid: true }, new: { is_paid: true }, changed: ['is_validated'] }),
    expect: ['any-order', 'strict'],
  },
  {
    name: 'an update whose old row is unknown counts as touching the watched columns',
    given: change({ op: 'update', old: null, new: { is_paid: true }, changed: 'unknown' }),
    expect: ['paid', 'any-order', 'strict'],
  },
  { name: 'a truncate fires only truncate triggers and skips filters', given: change({ op: 'truncate', new: null }), expect: ['wipe'] },
  { name: 'a change in another table fires nothing', given: change({ table: 'payments' }), expect: [] },
  { name: 'the schema is part of the table identity', given: change({ schema: 'audit' }), expect: ['other-schema'] },
];

describe('matchRoutes', () => {
  for (const c of cases) it(c.name, () => expect(names(c.given)).toEqual(c.expect));

  it('reports a filter that cannot be evaluated instead of dropping the change', () => {
    const matches = matchRoutes(routes, change({ op: 'update', old: {}, new: { id: 1 }, changed: [] }));
    const strict = matches.find((m) => m.route.trigger.metadata.name === 'strict');
    expect(strict?.filterError).toMatch(/No such key: missing_column/);
  });

  it('lists the columns a filter reads', () => {
    expect([...routes[1]!.filter!.columns]).toEqual(['is_paid']);
  });

  it('rejects an invalid filter naming the trigger', () => {
    expect(() => buildRoutes([{ ...trigger('x', { table: { name: 't' } }), spec: { ...trigger('x', { table: { name: 't' } }).spec, filter: 'new.x = 1' } }])).toThrow(
      /EventTrigger shop\/x: invalid spec.filter: Unexpected character: =/,
    );
  });

  it('lists each routed table once', () => {
    expect(routedTables(routes)).toEqual([
      { schema: 'audit', name: 'orders' },
      { schema: 'public', name: 'orders' },
    ]);
  });
});
