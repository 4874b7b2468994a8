/** One accepted request: its abort signal, and end() once it is answered and its handler has settled. */
export interface InflightRequest {
  readonly signal: AbortSignal;
  /** Aborts this request's signal (its client went away). */
  abort(reason: Error): void;
  end(): void;
}

/**
 * Counts the requests being handled so shutdown can wait for them, and aborts them all when the
 * shutdown deadline passes.
 */
export class InflightRequests {
  private readonly controllers = new Set<AbortController>();
  private idleWaiters: (() => void)[] = [];

  /** Requests begun and not yet ended. */
  get size(): number {
    return this.controllers.size;
  }

  /** Starts tracking a request. */
  begin(): InflightRequest {
    const controller = new AbortController();
    this.controllers.add(controller);
    let ended = false;
    return {
      signal: controller.signal,
      abort: (reason) => controller.abort(reason),
      end: () => {
        if (ended) return;
        ended = true;
        this.controllers.delete(controller);
        if (this.controllers.size === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const wake of waiters) wake();
        }
      },
    };
  }

  /** Resolves true once no request is in flight, or false when `timeoutMs` passes first. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.controllers.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== wake);
        resolve(false);
      }, timeoutMs);
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(wake);
    });
  }

  /** Aborts every request in flight with `reason`; they still end() themselves. */
  abortAll(reason: Error): void {
    for (const controller of this.controllers) controller.abort(reason);
  }
}
