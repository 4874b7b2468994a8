import { describe, expect, it } from 'vitest';
import type { DispatcherStateReport, TriggerStateReport } from '../../common/dispatcherState.js';
import { type DispatcherReading, laggingCondition, servingCondition } from './serving.js';
import { planSlots, readSlotRecord, SLOTS_ANNOTATION } from './slotRecord.js';

function reading(trigger: Partial<TriggerStateReport> | undefined, lagBytes = 0): DispatcherReading {
  const report: DispatcherStateReport = {
    source: { slot: 's', publication: 's', phase: 'streaming', connected: true, lagBytes },
    configFingerprint: 'f',
    triggers: trigger ? { 'ns/t': { state: 'serving', since: '', inflight: 0, backlog: 0, parking: false, ...trigger } } : {},
    functions: {},
  };
  return { report, at: 0 };
}

describe("Serving from the dispatcher's own account", () => {
  it.each([
    ['no reading yet', undefined, 2, { status: 'Unknown', reason: 'DispatcherNotReporting' }],
    ['unreachable', { error: 'ECONNREFUSED', at: 0 }, 2, { status: 'Unknown', reason: 'DispatcherNotReporting' }],
    ['not loaded yet', reading(undefined), 2, { status: 'Unknown', reason: 'NotYetLoaded' }],
    ['an older generation', reading({ generation: 1 }), 2, { status: 'Unknown', reason: 'GenerationPending' }],
    ['serving this generation', reading({ generation: 2 }), 2, { status: 'True', reason: 'Serving' }],
    ['suspended', reading({ generation: 2, state: 'suspended' }), 2, { status: 'True', reason: 'Suspended' }],
    ['set aside', reading({ generation: 2, state: 'set-aside', reason: 'TableNotFound', message: 'no table' }), 2, { status: 'False', reason: 'TableNotFound', message: 'no table' }],
    ['waiting for the database', reading({ state: 'waiting', reason: 'DatabaseUnreachable', message: 'refused' }), 2, { status: 'False', reason: 'DatabaseUnreachable' }],
  ] as const)('%s', (_label, input, generation, expected) => {
    expect(servingCondition(input as DispatcherReading | undefined, 'ns/t', generation)).toMatchObject(expected);
  });

  it('a target Function past its activation timeout: not serving, FunctionUnavailable; while it activates, still serving', () => {
    const withFunction = (activationTimedOut: boolean): DispatcherReading => {
      const r = reading({ generation: 2 }) as { report: DispatcherStateReport; at: number };
      r.report.functions['ns/fn'] = { inflight: 0, events: 3, backlog: 0, unavailableSince: '2026-12-02T00:00:00.000Z', ...(activationTimedOut ? { activationTimedOut } : {}) };
      return r;
    };
    expect(servingCondition(withFunction(true), 'ns/t', 2, 'ns/fn')).toEqual({
      status: 'False',
      reason: 'FunctionUnavailable',
      message: 'function ns/fn has had no ready pod since 2026-12-02T00:00:00.000Z (longer than its spec.scale.activationTimeout): events are retried and dead-lettered as usual',
    });
    expect(servingCondition(withFunction(false), 'ns/t', 2, 'ns/fn')).toMatchObject({ status: 'True', reason: 'Serving' });
    // A sink trigger on the same dispatcher is not concerned.
    expect(servingCondition(withFunction(true), 'ns/t', 2)).toMatchObject({ status: 'True', reason: 'Serving' });
  });

  it('Lagging is True past the threshold, with a message that does not change every poll', () => {
    const gib = 1024 ** 3;
    expect(laggingCondition(reading({}, 2 * gib), gib)).toEqual({
      status: 'True',
      reason: 'SlotLagging',
      message: 'replication slot "s" holds back more than 1 GiB of WAL: the dispatcher is behind; see eventide_dispatcher_replication_lag_bytes',
    });
    expect(laggingCondition(reading({}, 3 * gib), gib)).toEqual(laggingCondition(reading({}, 2 * gib), gib));
    expect(laggingCondition(reading({}, 10), gib)?.status).toBe('False');
    expect(laggingCondition(undefined, gib)).toBeUndefined();
  });
});

describe('the record of the slots a source was pointed at', () => {
  const a = { slot: 'a', publication: 'a', drop: true };
  it('a renamed slot with dropSlotOnDelete is dropped (with its publication unless the new slot uses it); one without is forgotten, not dropped', () => {
    expect(planSlots([a], { slot: 'b', publication: 'b', drop: true })).toEqual({
      record: [{ slot: 'b', publication: 'b', drop: true }, a],
      toDrop: [{ slot: 'a', publication: 'a' }],
      kept: [],
    });
    expect(planSlots([a], { slot: 'b', publication: 'a', drop: true }).toDrop).toEqual([{ slot: 'a', publication: undefined }]);
    expect(planSlots([{ ...a, drop: false }], { slot: 'b', publication: 'b', drop: false })).toEqual({
      record: [{ slot: 'b', publication: 'b', drop: false }],
      toDrop: [],
      kept: [{ ...a, drop: false }],
    });
  });

  it("with no trigger left every slot marked to drop is dropped; the current one follows its triggers' flag", () => {
    expect(planSlots([a, { slot: 'old', publication: 'old', drop: true }], undefined).toDrop.map((d) => d.slot)).toEqual(['a', 'old']);
    expect(planSlots([a], { slot: 'a', publication: 'a', drop: false })).toEqual({ record: [{ ...a, drop: false }], toDrop: [], kept: [] });
  });

  it('reads a missing or broken record as empty', () => {
    expect(readSlotRecord(undefined)).toEqual([]);
    expect(readSlotRecord({ metadata: { annotations: { [SLOTS_ANNOTATION]: 'not json' } } })).toEqual([]);
    expect(readSlotRecord({ metadata: { annotations: { [SLOTS_ANNOTATION]: JSON.stringify([a, { slot: 1 }]) } } })).toEqual([a]);
  });
});
