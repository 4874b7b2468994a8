import { describe, expect, it } from 'vitest';
import type { DispatcherStateReport, FunctionDemandReport } from '../../common/dispatcherState.js';
import type { DispatcherReading } from '../eventtrigger/serving.js';
import { sumDemand } from './demand.js';

function reading(functions: Record<string, FunctionDemandReport>): DispatcherReading {
  const report: DispatcherStateReport = { source: { slot: 's', publication: 's', phase: 'streaming', connected: true, lagBytes: 0 }, configFingerprint: '', triggers: {}, functions };
  return { report, at: 0 };
}

describe("a Function's demand over its dispatchers", () => {
  it('sums what every dispatcher has for it, capacities included, the earliest time it refused and the latest delivery', () => {
    const a = reading({
      'ns/fn': { inflight: 2, events: 10, backlog: 100, capacity: 64, unavailableSince: '2026-12-02T00:00:05.000Z', lastDeliveryTime: '2026-12-02T00:00:09.000Z' },
      'ns/other': { inflight: 9, events: 9, backlog: 9 },
    });
    const b = reading({ 'ns/fn': { inflight: 1, events: 3, backlog: 0, capacity: 16, unavailableSince: '2026-12-02T00:00:01.000Z' } });
    expect(
      sumDemand('ns/fn', [
        { name: 'a', reading: a },
        { name: 'b', reading: b },
      ]),
    ).toEqual({
      demand: { inflight: 3, events: 13, backlog: 100, capacity: 80, lastDeliveryAt: Date.parse('2026-12-02T00:00:09.000Z') },
      unavailableSince: Date.parse('2026-12-02T00:00:01.000Z'),
    });
  });

  it('a dispatcher that does not list the Function has nothing for it; one that says nothing of its capacity leaves it unbounded', () => {
    expect(sumDemand('ns/fn', [{ name: 'a', reading: reading({}) }])).toEqual({ demand: { inflight: 0, events: 0, backlog: 0 } });
    const legacy = reading({ 'ns/fn': { inflight: 0, events: 5, backlog: 0 } });
    const bounded = reading({ 'ns/fn': { inflight: 0, events: 5, backlog: 0, capacity: 8 } });
    expect(
      sumDemand('ns/fn', [
        { name: 'a', reading: legacy },
        { name: 'b', reading: bounded },
      ]),
    ).toEqual({ demand: { inflight: 0, events: 10, backlog: 0 } });
  });

  it('a dispatcher not read yet, or that cannot be read, makes the demand unknown (hold), never zero', () => {
    expect(
      sumDemand('ns/fn', [
        { name: 'a', reading: reading({}) },
        { name: 'b', reading: undefined },
      ]),
    ).toEqual({ unknown: 'dispatcher b has not reported yet' });
    expect(sumDemand('ns/fn', [{ name: 'a', reading: { error: 'ECONNREFUSED', at: 0 } }])).toEqual({ unknown: 'cannot read dispatcher a: ECONNREFUSED' });
  });
});
