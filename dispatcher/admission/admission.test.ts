import { describe, expect, it } from 'vitest';
import { type ManifestSet, parseEventTrigger } from '../../api/v1alpha1/index.js';
import { secretEnvName } from '../../common/secretEnv.js';
import { ConcurrencyGate } from '../pipeline/concurrencyGate.js';
import { resolveConfig, withProblems } from '../servedConfig.js';
import { DRIFT_CHECK_MS, problemsHealByThemselves, recheckDelayMs } from './recheck.js';

function trigger(name: string, spec: Record<string, unknown> = {}) {
  return parseEventTrigger({
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: 'shop', generation: 3 },
    spec: { source: { connectionSecretRef: { name: 'db' } }, table: { name: 'orders' }, sink: { url: 'http://127.0.0.1:1/' }, ...spec },
  });
}

const settings = { functionUrls: new Map<string, string>(), slotName: undefined, publicationName: undefined };

describe('resolving triggers one by one', () => {
  it('sets aside each trigger that cannot be served, with a stable reason, and serves the rest', () => {
    const manifests: ManifestSet = {
      triggers: [
        trigger('good'),
        trigger('no-url', { sink: undefined, function: { name: 'fn' } }),
        trigger('no-secret', { delivery: { signingSecretRef: { name: 'hook', key: 'k' } } }),
        trigger('other-slot', { source: { connectionSecretRef: { name: 'db' }, slotName: 'zzz' } }),
      ],
      functions: [],
      backfills: [],
      invalid: [{ kind: 'EventTrigger', key: 'shop/bad-filter', generation: 7, message: 'f: EventTrigger shop/bad-filter is invalid: spec.filter: x', problems: ['spec.filter: x'] }],
    };
    const config = resolveConfig(manifests, settings, {});
    expect([...config.deliveries.keys()]).toEqual(['shop/good', 'shop/other-slot']);
    expect(Object.fromEntries([...config.setAside].map(([k, s]) => [k, [s.problem.reason, s.generation]]))).toEqual({
      'shop/bad-filter': ['InvalidFilter', 7],
      'shop/no-url': ['UnresolvedTarget', 3],
      'shop/no-secret': ['SigningSecretMissing', 3],
    });
    // "other-slot" names a slot: being first by name with one, it decides; "good" names none and shares it.
    expect(config.names).toEqual({ slot: 'zzz', publication: 'zzz' });
    const withSecret = resolveConfig(manifests, settings, { [secretEnvName({ name: 'hook', key: 'k' })]: 's' });
    expect(withSecret.deliveries.get('shop/no-secret')?.signingSecret).toBe('s');
  });

  it('a trigger naming a slot other than the one chosen is set aside as SlotConflict', () => {
    const config = resolveConfig(
      {
        triggers: [trigger('a', { source: { connectionSecretRef: { name: 'db' }, slotName: 'one' } }), trigger('b', { source: { connectionSecretRef: { name: 'db' }, slotName: 'two' } })],
        functions: [],
        backfills: [],
        invalid: [],
      },
      settings,
      {},
    );
    expect(config.names.slot).toBe('one');
    expect(config.setAside.get('shop/b')?.problem.reason).toBe('SlotConflict');
  });

  it('problems found in the database move a served trigger aside', () => {
    const config = resolveConfig({ triggers: [trigger('a'), trigger('b')], functions: [], backfills: [], invalid: [] }, settings, {});
    const next = withProblems(config, new Map([['shop/b', { reason: 'TableNotFound' as const, message: 'gone' }]]));
    expect(next.routes.map((r) => r.key)).toEqual(['shop/a']);
    expect(next.setAside.get('shop/b')).toEqual({ problem: { reason: 'TableNotFound', message: 'gone' }, generation: 3 });
    expect(config.routes).toHaveLength(2);
  });
});

describe('looking at set-aside triggers again', () => {
  it('backs off 1 s, 2 s, 4 s ... to 30 s; with nothing aside, checks for drift every 10 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 40].map((n) => recheckDelayMs(n))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    expect(recheckDelayMs(0, false)).toBe(DRIFT_CHECK_MS);
  });

  it('only problems the database can fix are looked at again without new manifests', () => {
    expect(problemsHealByThemselves('TableNotFound')).toBe(true);
    expect(problemsHealByThemselves('ColumnNotFound')).toBe(true);
    expect(problemsHealByThemselves('InvalidFilter')).toBe(false);
    expect(problemsHealByThemselves('SlotConflict')).toBe(false);
  });
});

describe('a shared concurrency gate', () => {
  it('admits up to its limit, wakes one waiter per freed slot in the order they waited, and follows a new limit', async () => {
    const gate = new ConcurrencyGate(2);
    expect([gate.tryAcquire(), gate.tryAcquire(), gate.tryAcquire()]).toEqual([true, true, false]);
    const woken: string[] = [];
    gate.whenFree(() => woken.push('a'));
    gate.whenFree(() => woken.push('b'));
    gate.release();
    await Promise.resolve();
    expect(woken).toEqual(['a']);
    gate.setLimit(3);
    await Promise.resolve();
    expect(woken).toEqual(['a', 'b']);
    expect(gate.used).toBe(1);
  });
});
