/**
 * Per-key exponential backoff, as client-go's ItemExponentialFailureRateLimiter: the n-th consecutive
 * failure of a key waits base * 2^(n-1), capped at max; `forget` resets the key after a success.
 */
export interface RateLimiter {
  /** How long the key should wait before its next attempt; counts one more failure. */
  when(key: string): number;
  /** Consecutive failures recorded for the key. */
  numRequeues(key: string): number;
  /** Clears the key's failures (it succeeded, or gave up for good). */
  forget(key: string): void;
}

/** client-go's defaults for controllers: 5 ms doubling up to 1000 s. */
export const DEFAULT_BASE_DELAY_MS = 5;
export const DEFAULT_MAX_DELAY_MS = 1_000_000;

/** Exponential per-key backoff from `baseMs` to `maxMs`. */
export class ExponentialRateLimiter implements RateLimiter {
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly baseMs = DEFAULT_BASE_DELAY_MS,
    private readonly maxMs = DEFAULT_MAX_DELAY_MS,
  ) {}

  when(key: string): number {
    const previous = this.failures.get(key) ?? 0;
    this.failures.set(key, previous + 1);
    // 2^previous overflows to Infinity long after the cap applies; min() keeps the result finite.
    return Math.min(this.baseMs * 2 ** previous, this.maxMs);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }
}
