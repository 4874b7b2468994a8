import { describe, expect, it } from 'vitest';
import { runDemo } from './demo.js';

const FUNCTIONS = ['validate-order', 'process-payment', 'approve-restaurant', 'assign-agent'];

describe('food-ordering demo, end to end', () => {
  it('moves every order validate → pay → approve → assign, scaling each function up from zero and back, processing nothing twice', async () => {
    const output: string[] = [];
    const summary = await runDemo({
      ratePerSecond: 20,
      durationSeconds: 4,
      paymentFailureRate: 0.3,
      quiet: false,
      untilIdle: true,
      idleTimeoutMs: 2000,
      out: (t) => output.push(t),
    });
    const text = output.join('');
    expect(summary.placed).toBe(80);
    expect(summary.completed, text).toBe(summary.placed);
    expect(summary.deadLetters).toBe(0);
    // 30% of payment attempts fail on purpose: with 80 orders some retries are certain (0.7^80 ≈ 0).
    expect(summary.retries).toBeGreaterThan(0);
    expect(summary.processedTwice).toBe(0);
    expect(summary.paidTwice).toBe(0);
    expect(summary.deliveries).toBe(4 * summary.placed);
    expect(Object.keys(summary.replicas).sort()).toEqual([...FUNCTIONS].sort());
    for (const name of FUNCTIONS) {
      // Every function started at zero, had replicas while orders flowed, and was back at zero at the end.
      expect(summary.replicas[name]!.peak, `${name}\n${text}`).toBeGreaterThan(0);
      expect(summary.replicas[name]!.final, `${name}\n${text}`).toBe(0);
      expect(summary.replicas[name]!.restarts, `${name}\n${text}`).toBe(0);
    }
    expect(text).toMatch(/summary: 80\/80 orders completed/);
    expect(text).toMatch(/peak replicas: validate-order [1-4], process-payment [1-4], approve-restaurant [1-4], assign-agent [1-4]; all back to 0/);
    // The progress lines show each function's replicas as they change.
    expect(text).toMatch(/validate-order [1-4]\/[1-4] \(peak [1-4]\)/);
  }, 180_000);
});
