import { describe, expect, it } from 'vitest';
import { parseDemoArgs } from './demo.js';

describe('demo command line', () => {
  it.each([
    ['20s', 20],
    ['1m', 60],
    ['500ms', 0.5],
    ['1m30s', 90],
    // A bare number is seconds, as the flag has always taken.
    ['20', 20],
    ['2.5', 2.5],
  ])('--duration %s runs for %d s', (text, seconds) => {
    expect(parseDemoArgs(['--duration', text]).durationSeconds).toBe(seconds);
  });

  it('defaults to 5 orders/s for 20 s with 20 % of payments failing, then waits for the functions to scale to zero', () => {
    expect(parseDemoArgs([])).toEqual({ ratePerSecond: 5, durationSeconds: 20, paymentFailureRate: 0.2, quiet: false, untilIdle: true });
  });

  it.each(['20 seconds', 'soon', '-5s', '20x', ''])('refuses --duration %j, saying what it takes', (text) => {
    expect(() => parseDemoArgs([`--duration=${text}`])).toThrow(`--duration must be a duration such as 20s, 1m or 500ms, or a number of seconds, got "${text}"`);
  });

  it('reads the other flags as before', () => {
    expect(parseDemoArgs(['--rate', '10', '--duration', '30s', '--payment-failure-rate', '0.3', '--quiet'])).toEqual({
      ratePerSecond: 10,
      durationSeconds: 30,
      paymentFailureRate: 0.3,
      quiet: true,
      untilIdle: true,
    });
    expect(() => parseDemoArgs(['--payment-failure-rate', '2'])).toThrow('--payment-failure-rate must be between 0 and 1');
  });

  it.each([
    { name: '--idle-timeout shortens the idle timeout locally', given: ['--idle-timeout', '5s'], expect: { idleTimeoutMs: 5000, untilIdle: true } },
    { name: '--idle-timeout takes a bare number of seconds too', given: ['--idle-timeout', '2.5'], expect: { idleTimeoutMs: 2500, untilIdle: true } },
    { name: '--no-until-idle ends once every order is through', given: ['--no-until-idle'], expect: { untilIdle: false } },
    { name: '--until-idle says the default', given: ['--until-idle'], expect: { untilIdle: true } },
  ])('$name', ({ given, expect: expected }) => {
    expect(parseDemoArgs(given)).toMatchObject(expected);
  });

  it('refuses a bad --idle-timeout, and both --until-idle and --no-until-idle', () => {
    expect(() => parseDemoArgs(['--idle-timeout', 'soon'])).toThrow('--idle-timeout must be a duration such as 20s, 1m or 500ms, or a number of seconds, got "soon"');
    expect(() => parseDemoArgs(['--until-idle', '--no-until-idle'])).toThrow('--until-idle and --no-until-idle contradict each other: give one');
  });
});
