/**
 * Errors a handler throws to tell the dispatcher how to treat a failed event, and the error the
 * runtime answers when a request is not a valid eventide CloudEvent. Callers branch on `code`, not on
 * `instanceof`, so an error from a second copy of this module (a function bundling its own) still counts.
 */

/** The event can never succeed (bad data, business rule): answered 422, so the dispatcher dead-letters it. */
export class PermanentError extends Error {
  readonly code = 'EVENTIDE_PERMANENT';
  override readonly name = 'PermanentError';
}

/** The event should be retried, not before `retryAfterSeconds`: answered 503 with Retry-After. */
export class RetryLaterError extends Error {
  readonly code = 'EVENTIDE_RETRY_LATER';
  override readonly name = 'RetryLaterError';
  /** Whole seconds, at least 1. */
  readonly retryAfterSeconds: number;

  constructor(retryAfterSeconds: number, message?: string, options?: ErrorOptions) {
    super(message ?? `retry after ${retryAfterSeconds}s`, options);
    this.retryAfterSeconds = Number.isFinite(retryAfterSeconds) ? Math.max(1, Math.ceil(retryAfterSeconds)) : 1;
  }
}

/** The request is not an eventide CloudEvent; `attributes` names what is missing or wrong. */
export class MalformedEventError extends Error {
  readonly code = 'EVENTIDE_MALFORMED_EVENT';
  override readonly name = 'MalformedEventError';

  constructor(
    message: string,
    /** The attributes (binary mode: `ce-*` header names) or body paths at fault. */
    readonly attributes: string[] = [],
    /** 400, or 415 for a content type the runtime does not read. */
    readonly status: 400 | 415 = 400,
  ) {
    super(message);
  }
}

function codeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

/** True for a PermanentError from any copy of this module. */
export function isPermanentError(error: unknown): error is PermanentError {
  return codeOf(error) === 'EVENTIDE_PERMANENT';
}

/** True for a RetryLaterError from any copy of this module. */
export function isRetryLaterError(error: unknown): error is RetryLaterError {
  return codeOf(error) === 'EVENTIDE_RETRY_LATER' && typeof (error as { retryAfterSeconds?: unknown }).retryAfterSeconds === 'number';
}

/** A loggable message for anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
