import type { Logger } from '../common/logger.js';
import { apiErrorMessage, isConflict, TerminalError } from './errors.js';
import type { OperatorMetrics } from './metrics.js';
import { WorkQueue } from './workQueue.js';

/** What a reconcile asks for next: nothing (done until something changes), or a look again later. */
export interface ReconcileOutcome {
  requeueAfterMs?: number;
}

/** Level-based reconcile of one key: reads the world, makes it match, reports in status. */
export interface Reconciler {
  /** The kind reconciled, for metrics and logs. */
  readonly kind: string;
  /** `signal` aborts when this replica must stop writing (it lost the Lease); writes made through `withSignal` clients then refuse. */
  reconcile(key: string, log: Logger, signal: AbortSignal): Promise<ReconcileOutcome>;
}

/**
 * A work queue plus N workers feeding one reconciler. Success forgets the key's backoff; a
 * `TerminalError` is logged and not retried (the reconciler already wrote it into status); a 409 is a
 * stale read, requeued quietly; any other error is requeued with the key's exponential backoff.
 */
export class Controller {
  readonly queue = new WorkQueue();
  private running: Promise<void> | undefined;
  private abort = new AbortController();

  constructor(
    private readonly reconciler: Reconciler,
    private readonly deps: { logger: Logger; metrics: OperatorMetrics; workers: number },
  ) {}

  get kind(): string {
    return this.reconciler.kind;
  }

  /**
   * Queues a key (`namespace/name`); informer handlers call only this. Ignored until `start`: a standby
   * keeps no backlog, and the leader enqueues everything cached when it starts.
   */
  enqueue(key: string): void {
    if (this.running) this.queue.add(key);
  }

  /** Starts the workers and queues `keys` (everything in the caches); call once every informer has synced. */
  start(keys: Iterable<string>): void {
    this.running ??= this.queue.run(this.deps.workers, (key) => this.processKey(key));
    for (const key of keys) this.queue.add(key);
  }

  /**
   * Stops taking keys and waits for reconciles in flight to finish. With `abort` (the Lease was lost)
   * their signal aborts first, so none of them writes again.
   */
  async stop(options: { abort?: boolean } = {}): Promise<void> {
    if (options.abort) this.abort.abort(new Error('leadership lost'));
    this.queue.shutDown();
    await this.running;
  }

  private async processKey(key: string): Promise<void> {
    const { metrics, logger } = this.deps;
    const kind = this.reconciler.kind;
    const log = logger.child({ kind, key });
    const endTimer = metrics.reconcileDuration.startTimer({ kind });
    try {
      const outcome = await this.reconciler.reconcile(key, log, this.abort.signal);
      this.queue.forget(key);
      if (outcome.requeueAfterMs !== undefined) {
        this.queue.addAfter(key, outcome.requeueAfterMs);
        metrics.reconciles.inc({ kind, result: 'requeue' });
      } else {
        metrics.reconciles.inc({ kind, result: 'success' });
      }
    } catch (error) {
      if (this.abort.signal.aborted) {
        metrics.reconciles.inc({ kind, result: 'aborted' });
        log.debug({ err: apiErrorMessage(error) }, 'reconcile aborted: no longer leading');
      } else if (error instanceof TerminalError) {
        this.queue.forget(key);
        metrics.reconciles.inc({ kind, result: 'terminal' });
        log.warn({ reason: error.reason, err: error.message }, 'reconcile failed for good; not retrying until the resource changes');
      } else if (isConflict(error)) {
        this.queue.addRateLimited(key);
        metrics.reconciles.inc({ kind, result: 'conflict' });
        log.debug({ err: apiErrorMessage(error) }, 'stale read; requeued');
      } else {
        this.queue.addRateLimited(key);
        metrics.reconciles.inc({ kind, result: 'error' });
        metrics.reconcileErrors.inc({ kind });
        log.error({ err: error, attempt: this.queue.numRequeues(key) }, 'reconcile failed; requeued with backoff');
      }
    } finally {
      endTimer();
    }
  }
}
