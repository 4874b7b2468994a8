import { describe, expect, it } from 'vitest';
import { runDemo } from './demo.js';

describe('food-ordering demo, end to end', () => {
  it('moves every order validate → pay → approve → assign, retrying failed payments, processing nothing twice', async () => {
    const output: string[] = [];
    const summary = await runDemo({ ratePerSecond: 20, durationSeconds: 4, paymentFailureRate: 0.3, quiet: false, out: (t) => output.push(t) });
    expect(summary.placed).toBe(80);
    expect(summary.completed, output.join('')).toBe(summary.placed);
    expect(summary.deadLetters).toBe(0);
    // 30% of payment attempts fail on purpose: with 80 orders some retries are certain (0.7^80 ≈ 0).
    expect(summary.retries).toBeGreaterThan(0);
    expect(summary.processedTwice).toBe(0);
    expect(summary.paidTwice).toBe(0);
    expect(summary.deliveries).toBe(4 * summary.placed);
    expect(output.join('')).toMatch(/summary: 80\/80 orders completed/);
  }, 120_000);
});
