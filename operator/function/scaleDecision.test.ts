import { describe, expect, it } from 'vitest';
import { type Demand, decideScale, type ScaleDecision, type ScaleMemory, type ScaleSpec } from './scaleDecision.js';

const spec: ScaleSpec = { min: 0, max: 10, target: 10, scaleDownDelayMs: 30_000, idleTimeoutMs: 60_000 };
const LONG_AGO = -1_000_000;

/** Runs decisions in sequence, carrying replicas and memory, as the operator's loop does. */
function run(steps: { at: number; demand: Demand | undefined }[], start = { current: 0, memory: { recent: [] } as ScaleMemory }, s = spec, leadingSince = LONG_AGO): ScaleDecision[] {
  let { current, memory } = start;
  return steps.map(({ at, demand }) => {
    const decision = decideScale({ spec: s, now: at, current, demand, leadingSince, memory });
    current = decision.replicas;
    memory = decision.memory;
    return decision;
  });
}

const d = (events: number, inflight = 0, backlog = 0): Demand => ({ events, inflight, backlog });

describe('deciding replicas from the exact demand', () => {
  it('a burst on a Function at zero: up at once to ceil(demand / target), capped by max', () => {
    expect(run([{ at: 0, demand: d(35) }]).map((x) => [x.replicas, x.reason])).toEqual([[4, 'ScaleUp']]);
    expect(run([{ at: 0, demand: d(0, 0, 5000) }])[0]!.replicas).toBe(10);
    // One event is one pod: nothing waits for company.
    expect(run([{ at: 0, demand: d(1) }])[0]!.replicas).toBe(1);
  });

  it('no more pods than the dispatchers would keep busy: a million waiting events with capacity 64 and target 10 want 7', () => {
    expect(run([{ at: 0, demand: { events: 0, inflight: 0, backlog: 1_000_000, capacity: 64 } }], undefined, { ...spec, max: 100 })[0]!.replicas).toBe(7);
    // Capacity 0 (every trigger suspended or gated) still wants one pod while anything waits.
    expect(run([{ at: 0, demand: { events: 3, inflight: 0, backlog: 0, capacity: 0 } }])[0]!.replicas).toBe(1);
  });

  it('flapping demand: down only after the delay at the lower level, up again at once', () => {
    const steps = [
      { at: 0, demand: d(50) },
      { at: 1_000, demand: d(10) },
      { at: 2_000, demand: d(50) },
      { at: 3_000, demand: d(10) },
      { at: 20_000, demand: d(10) },
      { at: 33_001, demand: d(10) },
    ];
    expect(run(steps).map((x) => x.replicas)).toEqual([5, 5, 5, 5, 5, 1]);
  });

  it('idle: one pod stays until idleTimeout passes with nothing pending, then zero', () => {
    const steps = [
      { at: 0, demand: d(5) },
      { at: 31_000, demand: d(0) },
      { at: 59_000, demand: d(0) },
      { at: 60_001, demand: d(0) },
    ];
    expect(run(steps).map((x) => [x.replicas, x.reason])).toEqual([
      [1, 'ScaleUp'],
      [1, 'Steady'],
      [1, 'Steady'],
      [0, 'Idle'],
    ]);
  });

  it('light traffic served between readings is not idleness: deliveries keep one pod, their end starts the idle clock', () => {
    // 5 orders/s handled in 10 ms: almost no reading catches one pending, but each reports the last delivery.
    const light = (at: number) => ({ at, demand: { events: 0, inflight: 0, backlog: 0, lastDeliveryAt: at - 150 } });
    const steps = [
      { at: 0, demand: d(1) },
      ...[30_000, 60_000, 90_000, 120_000].map(light),
      { at: 150_000, demand: { ...d(0), lastDeliveryAt: 119_850 } },
      { at: 180_000, demand: { ...d(0), lastDeliveryAt: 119_850 } },
    ];
    expect(run(steps).map((x) => x.replicas)).toEqual([1, 1, 1, 1, 1, 1, 0]);
  });

  it('a dispatcher that cannot be read holds the count (never zero)', () => {
    expect(
      run([
        { at: 0, demand: d(30) },
        { at: 100_000, demand: undefined },
      ]).map((x) => [x.replicas, x.reason]),
    ).toEqual([
      [3, 'ScaleUp'],
      [3, 'DemandUnknown'],
    ]);
  });

  it('never below what the requests in flight need', () => {
    const decisions = run([
      { at: 0, demand: d(40, 40) },
      { at: 100_000, demand: d(30, 30) },
    ]);
    expect(decisions.map((x) => x.replicas)).toEqual([4, 3]);
    expect(decideScale({ spec, now: 100_000, current: 4, demand: d(0, 25), leadingSince: LONG_AGO, memory: { recent: [] } }).replicas).toBe(3);
  });

  it('right after a leader change it may scale up but not down', () => {
    const after = { spec, current: 5, demand: d(0), memory: { recent: [] }, leadingSince: 0 };
    expect(decideScale({ ...after, now: 10_000 })).toMatchObject({ replicas: 5, reason: 'AfterLeaderChange' });
    expect(decideScale({ ...after, now: 10_000, demand: d(80) })).toMatchObject({ replicas: 8, reason: 'ScaleUp' });
    expect(decideScale({ ...after, now: 120_000 })).toMatchObject({ replicas: 0, reason: 'Idle' });
  });

  it('min keeps pods warm whatever the demand', () => {
    const warm = { ...spec, min: 2 };
    expect(
      run(
        [
          { at: 0, demand: d(0) },
          { at: 500_000, demand: d(0) },
        ],
        { current: 2, memory: { recent: [] } },
        warm,
      ).map((x) => x.replicas),
    ).toEqual([2, 2]);
  });
});
