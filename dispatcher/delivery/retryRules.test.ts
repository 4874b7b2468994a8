import { describe, expect, it } from 'vitest';
import { backoffDelay, decideAfterFailure, parseRetryAfter, type RetryConfig } from './retryRules.js';

const NOW = Date.parse('2024-05-01T12:00:00Z');
const config: RetryConfig = {
  retries: 5,
  backoff: { policy: 'exponential', delayMs: 100, maxDelayMs: 1000 },
  timeoutMs: 1000,
  maxEventAgeMs: 60_000,
  retryAfterMaxMs: 10_000,
};

describe('parseRetryAfter', () => {
  it('reads delta seconds, fractional seconds and the three HTTP date forms', () => {
    expect(parseRetryAfter('2', NOW)).toBe(2000);
    expect(parseRetryAfter(' 120 ', NOW)).toBe(120_000);
    expect(parseRetryAfter('1.5', NOW)).toBe(1500);
    expect(parseRetryAfter('Wed, 01 May 2024 12:00:30 GMT', NOW)).toBe(30_000);
    expect(parseRetryAfter('Wednesday, 01-May-24 12:00:30 GMT', NOW)).toBe(30_000);
    expect(parseRetryAfter('Wed May  1 12:00:30 2024', NOW)).toBe(30_000); // asctime: GMT, whatever the local zone
    expect(parseRetryAfter('Wed, 01 May 2024 14:00:30 +0200', NOW)).toBe(30_000); // not an HTTP date, but its zone is clear
    expect(parseRetryAfter('Wed, 01 May 2024 11:00:00 GMT', NOW)).toBe(0); // in the past: now
  });

  it('ignores what is neither (the backoff applies), instead of reading it as a date in 2001', () => {
    for (const value of ['-1', '1,5', '2 seconds', 'soon', '0x10', '1e3', '', '2024-05-01', '5 6']) expect(parseRetryAfter(value, NOW)).toBeUndefined();
    expect(parseRetryAfter(undefined, NOW)).toBeUndefined();
  });
});

describe('decideAfterFailure', () => {
  it('an unreadable Retry-After falls back to the backoff', () => {
    expect(decideAfterFailure(config, { attempts: 1, status: 503, retryAfter: '-1', commitTimeMs: NOW, now: NOW }, () => 0.5)).toEqual({ action: 'retry', delayMs: 50 });
    expect(decideAfterFailure(config, { attempts: 1, status: 503, retryAfter: '1.5', commitTimeMs: NOW, now: NOW }, () => 0.5)).toEqual({ action: 'retry', delayMs: 1500 });
  });

  it('4xx other than 408 and 429 are dead-lettered at once; 408, 429, 5xx and no answer are retried', () => {
    const after = (status: number | undefined) => decideAfterFailure(config, { attempts: 1, ...(status ? { status } : {}), commitTimeMs: NOW, now: NOW }, () => 1).action;
    expect([400, 401, 404, 409, 422].map(after)).toEqual(['dead-letter', 'dead-letter', 'dead-letter', 'dead-letter', 'dead-letter']);
    expect([408, 429, 500, 502, 503, undefined].map(after)).toEqual(['retry', 'retry', 'retry', 'retry', 'retry', 'retry']);
    expect(decideAfterFailure(config, { attempts: 1, status: 400, commitTimeMs: NOW, now: NOW })).toEqual({ action: 'dead-letter', reason: 'not-retryable' });
  });

  it('after `retries` retries, or when the wait would take the event past maxEventAge, the event is dead-lettered', () => {
    expect(decideAfterFailure(config, { attempts: 5, status: 503, commitTimeMs: NOW, now: NOW }, () => 1).action).toBe('retry');
    expect(decideAfterFailure(config, { attempts: 6, status: 503, commitTimeMs: NOW, now: NOW }, () => 1)).toEqual({ action: 'dead-letter', reason: 'retries-exhausted' });
    // 59.5 s old with a 1 s wait ahead: past the 60 s maxEventAge.
    expect(decideAfterFailure(config, { attempts: 1, status: 503, commitTimeMs: NOW - 59_500, now: NOW }, () => 1)).toEqual({ action: 'retry', delayMs: 100 });
    expect(decideAfterFailure(config, { attempts: 1, status: 503, retryAfter: '1', commitTimeMs: NOW - 59_500, now: NOW })).toEqual({ action: 'dead-letter', reason: 'max-event-age' });
    // Retry-After is capped by retryAfterMax.
    expect(decideAfterFailure(config, { attempts: 1, status: 429, retryAfter: '3600', commitTimeMs: NOW, now: NOW })).toEqual({ action: 'retry', delayMs: 10_000 });
  });

  it('backoff: full jitter under min(delay * 2^(n-1), maxDelay)', () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(config, n, () => 1))).toEqual([100, 200, 400, 800, 1000]);
    expect(backoffDelay(config, 3, () => 0)).toBe(0);
  });
});
