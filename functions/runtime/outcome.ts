import type { BatchResponse } from '../../api/v1alpha1/event.js';
import { isPermanentError, isRetryLaterError, messageOf } from './errors.js';

/** How handling one event ended, as logged and as answered. */
export type OutcomeKind = 'ok' | 'error' | 'permanent' | 'retry_later';

/** One event's outcome. */
export type EventOutcome = { kind: 'ok' } | { kind: 'error' | 'permanent'; reason: string } | { kind: 'retry_later'; reason: string; retryAfterSeconds: number };

/** The HTTP answer the runtime gives. */
export interface HttpAnswer {
  status: number;
  /** Seconds for a Retry-After header. */
  retryAfterSeconds?: number;
  body?: unknown;
}

/** Classifies what a handler threw. */
export function outcomeOf(error: unknown): EventOutcome {
  if (isPermanentError(error)) return { kind: 'permanent', reason: messageOf(error) };
  if (isRetryLaterError(error)) return { kind: 'retry_later', reason: messageOf(error), retryAfterSeconds: error.retryAfterSeconds };
  return { kind: 'error', reason: messageOf(error) };
}

const STATUS: Record<OutcomeKind, number> = { ok: 200, error: 500, permanent: 422, retry_later: 503 };
const CODE: Record<Exclude<OutcomeKind, 'ok'>, string> = {
  error: 'EVENTIDE_HANDLER_FAILED',
  permanent: 'EVENTIDE_PERMANENT',
  retry_later: 'EVENTIDE_RETRY_LATER',
};

/**
 * The answer for a single event: 200; 500 when the handler failed (retried); 422 for a PermanentError
 * (a 4xx the dispatcher does not retry, so the event is dead-lettered); 503 + Retry-After for a
 * RetryLaterError.
 */
export function answerForEvent(outcome: EventOutcome): HttpAnswer {
  if (outcome.kind === 'ok') return { status: 200 };
  const body = { error: { code: CODE[outcome.kind], message: outcome.reason } };
  if (outcome.kind === 'retry_later') return { status: 503, retryAfterSeconds: outcome.retryAfterSeconds, body };
  return { status: STATUS[outcome.kind], body };
}

/**
 * The answer for a batch, always with a `{ failures }` body (a BatchResponse) listing every failed id.
 *
 * - Some items succeeded: 200 and the failures, which the dispatcher retries alone. A PermanentError
 *   item is listed too: its retry is a batch of failures only, answered below, so it ends dead-lettered
 *   rather than acknowledged. Retry-After, when an item asked for one, is advisory on a 200.
 * - No item succeeded (and at least one was sent): the status a single event with the most retryable
 *   of the errors would get: 500 if any item failed plainly, else 503 with the largest Retry-After if
 *   any asked to retry later, else 422 (all permanent, so none is retried).
 */
export function answerForBatch(results: { id: string; outcome: EventOutcome }[]): HttpAnswer {
  const failed = results.filter((r): r is { id: string; outcome: Exclude<EventOutcome, { kind: 'ok' }> } => r.outcome.kind !== 'ok');
  const body: BatchResponse = { failures: failed.map((r) => ({ id: r.id, reason: r.outcome.reason })) };
  const retryAfters = failed.flatMap((r) => (r.outcome.kind === 'retry_later' ? [r.outcome.retryAfterSeconds] : []));
  const retryAfterSeconds = retryAfters.length > 0 ? Math.max(...retryAfters) : undefined;
  const withRetryAfter = (status: number): HttpAnswer => (retryAfterSeconds === undefined ? { status, body } : { status, retryAfterSeconds, body });
  if (failed.length === 0 || failed.length < results.length) return withRetryAfter(200);
  if (failed.some((r) => r.outcome.kind === 'error')) return { status: 500, body };
  if (retryAfterSeconds !== undefined) return withRetryAfter(503);
  return { status: 422, body };
}
