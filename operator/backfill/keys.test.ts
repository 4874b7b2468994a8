import { describe, expect, it } from 'vitest';
import type { StoredBackfill, StoredEventTrigger } from '../cache.js';
import { BackfillTriggerIndex, backfillKeysOfTrigger, triggerNameOf } from './keys.js';

const backfill = (name: string, trigger: unknown, generation = 1, namespace = 'shop'): StoredBackfill =>
  ({ metadata: { name, namespace, uid: `uid-${name}`, generation }, spec: { trigger: { name: trigger } } }) as StoredBackfill;
const trigger = (name: string, namespace = 'shop'): StoredEventTrigger => ({ metadata: { name, namespace, uid: `uid-${name}` } }) as StoredEventTrigger;

describe('which keys a Backfill change concerns', () => {
  it('reads the trigger name leniently: none when the spec does not name one', () => {
    expect([triggerNameOf(backfill('a', 'new-order')), triggerNameOf(backfill('b', 42)), triggerNameOf({ metadata: { name: 'c' } } as StoredBackfill)]).toEqual(['new-order', undefined, undefined]);
  });

  it('a trigger change: the Backfills of its namespace that name it', () => {
    const all = [backfill('a', 'new-order'), backfill('b', 'other'), backfill('c', 'new-order', 1, 'elsewhere')];
    expect(backfillKeysOfTrigger(all, trigger('new-order'))).toEqual(['shop/a']);
  });

  it('a Backfill added, its spec changed, or deleted: its trigger; a status write: nothing; a new trigger name: both', () => {
    const index = new BackfillTriggerIndex();
    expect(index.triggerKeys('add', backfill('a', 'new-order', 1))).toEqual(['shop/new-order']);
    // The dispatcher's counts written into status: same generation, same trigger.
    expect(index.triggerKeys('update', backfill('a', 'new-order', 1))).toEqual([]);
    expect(index.triggerKeys('update', backfill('a', 'new-order', 2))).toEqual(['shop/new-order']);
    expect(index.triggerKeys('update', backfill('a', 'paid-order', 3))).toEqual(['shop/new-order', 'shop/paid-order']);
    expect(index.triggerKeys('delete', backfill('a', 'paid-order', 3))).toEqual(['shop/paid-order']);
    // Recreated under the same name: a fresh start.
    expect(index.triggerKeys('add', backfill('a', 'paid-order', 1))).toEqual(['shop/paid-order']);
  });

  it('an update of a Backfill not seen before (this replica just started) wakes its trigger', () => {
    expect(new BackfillTriggerIndex().triggerKeys('update', backfill('a', 'new-order'))).toEqual(['shop/new-order']);
  });
});
