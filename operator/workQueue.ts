import { ExponentialRateLimiter, type RateLimiter } from './rateLimiter.js';

/**
 * A queue of keys (`namespace/name`) with client-go's guarantees:
 * - a key waiting in the queue is stored once, however often it is added (dedupe);
 * - a key is handed to one worker at a time: added while being processed, it is queued again when that
 *   worker calls `done`, so the latest state is always reconciled after the change that prompted it;
 * - `addAfter` delays a key (the earliest pending time wins), `addRateLimited` delays it by its own
 *   exponential backoff, `forget` resets that backoff.
 */
export class WorkQueue {
  private readonly queue: string[] = [];
  private head = 0;
  /** Keys that need processing: waiting in `queue`, or re-added while in `processing`. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly waiting = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly getters: ((key: string | undefined) => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private shuttingDown = false;

  constructor(readonly rateLimiter: RateLimiter = new ExponentialRateLimiter()) {}

  /** Marks a key as needing processing. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds a key once `delayMs` has passed; an earlier pending time for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const pending = this.waiting.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.waiting.set(key, { at, timer });
  }

  /** Adds a key after its rate limiter's backoff (one more failure counted). */
  addRateLimited(key: string): void {
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** Resets a key's backoff: call after it was processed successfully (or given up on). */
  forget(key: string): void {
    this.rateLimiter.forget(key);
  }

  /** Failures counted for a key since it was last forgotten. */
  numRequeues(key: string): number {
    return this.rateLimiter.numRequeues(key);
  }

  /** Keys ready to be processed (the depth metric). */
  len(): number {
    return this.queue.length - this.head;
  }

  /** Keys waiting for a delay to pass. */
  delayedLen(): number {
    return this.waiting.size;
  }

  /** Waits for the next key; `undefined` once the queue is shut down. The caller must call `done(key)`. */
  get(): Promise<string | undefined> {
    const key = this.shift();
    if (key !== undefined) return Promise.resolve(key);
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Ends the processing of a key; if it was added meanwhile it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) this.push(key);
    if (this.processing.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Stops accepting keys, drops delayed ones and wakes idle workers; keys in flight may finish. */
  shutDown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    for (const { timer } of this.waiting.values()) clearTimeout(timer);
    this.waiting.clear();
    for (const resolve of this.getters.splice(0)) resolve(undefined);
  }

  /** True once `shutDown` was called. */
  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Resolves when no key is being processed. */
  whenIdle(): Promise<void> {
    if (this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Runs `workers` loops that take keys and hand them to `process` until the queue shuts down; resolves
   * when every loop has ended. `process` must not throw: it decides itself whether to forget or requeue.
   */
  async run(workers: number, process: (key: string) => Promise<void>): Promise<void> {
    const loop = async () => {
      for (;;) {
        const key = await this.get();
        if (key === undefined) return;
        try {
          await process(key);
        } finally {
          this.done(key);
        }
      }
    };
    await Promise.all(Array.from({ length: workers }, loop));
  }

  private push(key: string): void {
    const getter = this.getters.shift();
    if (getter) {
      this.dirty.delete(key);
      this.processing.add(key);
      getter(key);
      return;
    }
    this.queue.push(key);
  }

  private shift(): string | undefined {
    if (this.head >= this.queue.length) return undefined;
    const key = this.queue[this.head]!;
    this.head++;
    // Compact now and then so a long-lived queue does not keep every key it ever held.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.dirty.delete(key);
    this.processing.add(key);
    return key;
  }
}
