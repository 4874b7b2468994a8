import { type DeliveryT, parseDuration } from '../../api/v1alpha1/index.js';

/** A trigger's retry behaviour in milliseconds, derived once from its `delivery` block. */
export interface RetryConfig {
  retries: number;
  backoff: { policy: 'exponential' | 'linear' | 'constant'; delayMs: number; maxDelayMs: number };
  timeoutMs: number;
  maxEventAgeMs: number;
  retryAfterMaxMs: number;
}

/** Turns the resource's delivery block into a retry config (as Knative's RetryConfigFromDeliverySpec). */
export function retryConfigFromDelivery(delivery: DeliveryT): RetryConfig {
  return {
    retries: delivery.retries,
    backoff: { policy: delivery.backoff.policy, delayMs: parseDuration(delivery.backoff.delay), maxDelayMs: parseDuration(delivery.backoff.maxDelay) },
    timeoutMs: parseDuration(delivery.timeout),
    maxEventAgeMs: parseDuration(delivery.maxEventAge),
    retryAfterMaxMs: parseDuration(delivery.retryAfterMax),
  };
}

/**
 * Wait before retry number `retry` (1 for the first retry): the policy's ceiling, capped at maxDelay,
 * times a uniform random factor ("full jitter"), so that many failing events do not retry in lockstep.
 */
export function backoffDelay(config: RetryConfig, retry: number, random: () => number = Math.random): number {
  const { policy, delayMs, maxDelayMs } = config.backoff;
  const ceiling = policy === 'exponential' ? delayMs * 2 ** (retry - 1) : policy === 'linear' ? delayMs * retry : delayMs;
  return Math.round(Math.min(ceiling, maxDelayMs) * random());
}

/**
 * Parses Retry-After (delta seconds or an HTTP date) into milliseconds from `now`; undefined when it
 * is neither, so the backoff applies. Fractional seconds ("1.5") are taken as meant. Only values that
 * start with a day name are read as dates: Date.parse reads "1.5" or "-1" as dates in 2001, which made
 * every retry immediate.
 */
export function parseRetryAfter(header: string | undefined, now: number): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  if (!/^[A-Za-z]{3}/.test(trimmed)) return undefined;
  // HTTP dates are GMT; the asctime form says so nowhere, and Date.parse would read it as local time.
  const date = Date.parse(/^[A-Za-z]{3} [A-Za-z]{3} +\d{1,2} \d\d:\d\d:\d\d \d{4}$/.test(trimmed) ? `${trimmed} GMT` : trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The facts of a failed attempt. */
export interface FailedAttempt {
  /** Attempts made so far, this one included. */
  attempts: number;
  /** HTTP status, absent for network errors and timeouts. */
  status?: number;
  retryAfter?: string;
  commitTimeMs: number;
  now: number;
}

export type FailureDecision = { action: 'retry'; delayMs: number } | { action: 'dead-letter'; reason: 'not-retryable' | 'retries-exhausted' | 'max-event-age' };

/** Whether a status is worth retrying: server errors, timeouts and throttling; not other client errors. */
export function isRetryableStatus(status: number | undefined): boolean {
  if (status === undefined) return true;
  if (status === 408 || status === 429) return true;
  return !(status >= 400 && status < 500);
}

/** Decides what follows a failed attempt. Pure. */
export function decideAfterFailure(config: RetryConfig, attempt: FailedAttempt, random: () => number = Math.random): FailureDecision {
  if (!isRetryableStatus(attempt.status)) return { action: 'dead-letter', reason: 'not-retryable' };
  if (attempt.attempts > config.retries) return { action: 'dead-letter', reason: 'retries-exhausted' };
  const retryAfter = parseRetryAfter(attempt.retryAfter, attempt.now);
  const delayMs = retryAfter !== undefined ? Math.min(retryAfter, config.retryAfterMaxMs) : backoffDelay(config, attempt.attempts, random);
  if (attempt.now + delayMs - attempt.commitTimeMs > config.maxEventAgeMs) return { action: 'dead-letter', reason: 'max-event-age' };
  return { action: 'retry', delayMs };
}
