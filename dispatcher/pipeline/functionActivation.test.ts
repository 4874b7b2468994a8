import { afterEach, describe, expect, it, vi } from 'vitest';
import { FunctionActivations, PROBE_INTERVAL_MS } from './functionActivation.js';
import type { SharedGate } from './triggerLane.js';

describe('a Function that refuses connections', () => {
  afterEach(() => vi.useRealTimers());

  it('holds until its activation timeout, then counts; an answer ends it', () => {
    let now = 1000;
    const ended: string[] = [];
    const activations = new FunctionActivations({ ended: (fn, afterMs) => ended.push(`${fn} after ${afterMs}`) }, () => now);
    activations.configure(new Map([['ns/fn', 5000]]), new Set(['ns/fn', 'ns/other']));
    expect(activations.refused('ns/fn')).toBe('hold');
    now += 4999;
    expect(activations.refused('ns/fn')).toBe('hold');
    now += 1;
    expect(activations.refused('ns/fn')).toBe('count');
    expect(activations.unavailable().get('ns/fn')).toEqual({ since: 1000, timedOut: true });
    activations.answered('ns/fn');
    expect(ended).toEqual(['ns/fn after 5000']);
    expect(activations.unavailable().size).toBe(0);
    // Without spec.scale: the default two minutes.
    expect(activations.refused('ns/other')).toBe('hold');
    now += 119_999;
    expect(activations.refused('ns/other')).toBe('hold');
  });

  it('lets one probe through at a time, PROBE_INTERVAL_MS apart, on top of the concurrency gate; wakes waiters when the function answers', async () => {
    vi.useFakeTimers();
    const activations = new FunctionActivations();
    activations.configure(new Map(), new Set(['ns/fn']));
    expect(activations.gateFor('ns/fn', undefined)).toBeUndefined();
    activations.refused('ns/fn');
    const inner: SharedGate & { used: number } = {
      used: 0,
      tryAcquire: () => {
        inner.used++;
        return true;
      },
      release: () => void inner.used--,
      whenFree: () => undefined,
    };
    const probe = activations.gateFor('ns/fn', inner)!;
    expect(probe.tryAcquire()).toBe(true);
    const second = activations.gateFor('ns/fn', inner)!;
    expect(second.tryAcquire()).toBe(false);
    let woken = 0;
    second.whenFree(() => woken++);
    probe.release();
    expect(inner.used).toBe(0);
    await vi.advanceTimersByTimeAsync(PROBE_INTERVAL_MS - 1);
    expect(woken).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(woken).toBe(1);
    const third = activations.gateFor('ns/fn', inner)!;
    expect(third.tryAcquire()).toBe(true);
    const fourth = activations.gateFor('ns/fn', inner)!;
    expect(fourth.tryAcquire()).toBe(false);
    fourth.whenFree(() => woken++);
    activations.answered('ns/fn');
    await vi.advanceTimersByTimeAsync(0);
    expect(woken).toBe(2);
    expect(activations.gateFor('ns/fn', inner)).toBe(inner);
  });
});
