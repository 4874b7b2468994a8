import type { Logger } from '../../common/logger.js';
import { describeError } from '../source/replicationStream.js';
import type { AttemptProgress, BacklogStore, ParkedEvent } from './store.js';

/** Limits of the writer's buffer: past them the reader waits (it is the only back-pressure left on the stream). */
export interface BacklogWriterOptions {
  maxBufferedEvents: number;
  maxBufferedBytes: number;
  /** Largest number of events one INSERT carries. */
  batchSize: number;
  /** Wait for more work before a write, so writes go in bulk; removals are never urgent. */
  removeDelayMs: number;
}

// Two INSERT batches of room: the writer is serial, so more only holds parked events longer in memory,
// where they survive young-generation collections and grow the old space (npm run bench -- --only backlog:
// parking ran 2.22× direct with 1000/4 MiB and 2.20× with 2000/8 MiB; the backpressure test's RSS growth
// fell from 25-32 MiB to 25-26 MiB).
const DEFAULTS: BacklogWriterOptions = { maxBufferedEvents: 1000, maxBufferedBytes: 4 * 1024 * 1024, batchSize: 500, removeDelayMs: 100 };
const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 10_000;

interface PendingPark {
  parked: ParkedEvent;
  committed(): void;
}

/**
 * Writes to the backlog in bulk, one statement at a time and in the order it was asked: parks commit
 * in stream order (the drainer reads behind a cursor that relies on it), removals of delivered events
 * go in batches (no DELETE per event on the hot path), and delivery progress is written back likewise.
 * A failed write is retried with backoff; nothing is dropped.
 */
export class BacklogWriter {
  private parks: PendingPark[] = [];
  private parkBytes = 0;
  private removals: { id: number; removed(): void }[] = [];
  private eventRemovals: { trigger: string; eventId: string; removed(): void }[] = [];
  private progress = new Map<number, AttemptProgress>();
  private writing = false;
  private timer: NodeJS.Timeout | undefined;
  private retryDelay = RETRY_MIN_MS;
  private roomWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  private readonly options: BacklogWriterOptions;

  constructor(
    private readonly store: BacklogStore,
    private readonly logger: Logger,
    options: Partial<BacklogWriterOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** Queues an event to park; `committed` runs once the row is durable. */
  park(parked: ParkedEvent, committed: () => void): void {
    this.parks.push({ parked, committed });
    this.parkBytes += parked.event.bytes;
    this.schedule(0);
  }

  /** Queues the removal of a settled event's row; `removed` runs once it is gone. */
  remove(id: number, removed: () => void): void {
    this.removals.push({ id, removed });
    this.schedule(this.options.removeDelayMs);
  }

  /** Queues the removal of an event's row by its id (a copy whose event was delivered from memory). */
  removeEvent(trigger: string, eventId: string, removed: () => void): void {
    this.eventRemovals.push({ trigger, eventId, removed });
    this.schedule(this.options.removeDelayMs);
  }

  /** Queues a progress update of a loaded event (the latest per row wins). */
  recordProgress(update: AttemptProgress): void {
    this.progress.set(update.id, update);
    this.schedule(this.options.removeDelayMs);
  }

  /** True while the buffer of events to park has room. */
  hasRoom(): boolean {
    return this.parks.length < this.options.maxBufferedEvents && this.parkBytes < this.options.maxBufferedBytes;
  }

  waitForRoom(): Promise<void> {
    if (this.hasRoom()) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Writes what is queued (retrying until it succeeds or the deadline passes), then refuses more work. */
  async close(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    while (this.hasWork() && Date.now() < deadline) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      if (!this.writing) void this.write();
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve);
        setTimeout(resolve, Math.max(0, deadline - Date.now())).unref();
      });
    }
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private hasWork(): boolean {
    return this.parks.length > 0 || this.removals.length > 0 || this.eventRemovals.length > 0 || this.progress.size > 0;
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.writing) return;
    if (delayMs === 0 && this.timer && this.parks.length > 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, delayMs);
  }

  private async write(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.hasWork() && !this.closed) {
        if (this.parks.length > 0) {
          const batch = this.parks.slice(0, this.options.batchSize);
          await this.store.park(batch.map((p) => p.parked));
          this.parks.splice(0, batch.length);
          for (const p of batch) this.parkBytes -= p.parked.event.bytes;
          this.wakeRoomWaiters();
          for (const p of batch) p.committed();
          continue;
        }
        if (this.removals.length > 0) {
          const batch = this.removals.splice(0, 5000);
          try {
            await this.store.remove(batch.map((r) => r.id));
          } catch (error) {
            this.removals.unshift(...batch);
            throw error;
          }
          for (const r of batch) r.removed();
        }
        if (this.eventRemovals.length > 0) {
          const batch = this.eventRemovals.splice(0, 5000);
          try {
            const byTrigger = new Map<string, string[]>();
            for (const r of batch) (byTrigger.get(r.trigger) ?? byTrigger.set(r.trigger, []).get(r.trigger)!).push(r.eventId);
            for (const [trigger, ids] of byTrigger) await this.store.removeEvents(trigger, ids);
          } catch (error) {
            this.eventRemovals.unshift(...batch);
            throw error;
          }
          for (const r of batch) r.removed();
        }
        if (this.progress.size > 0) {
          const updates = [...this.progress.values()];
          this.progress.clear();
          try {
            await this.store.recordProgress(updates);
          } catch (error) {
            for (const u of updates) if (!this.progress.has(u.id)) this.progress.set(u.id, u);
            throw error;
          }
        }
      }
      this.retryDelay = RETRY_MIN_MS;
    } catch (error) {
      this.logger.warn({ err: describeError(error), retryInMs: this.retryDelay, waiting: this.parks.length }, 'could not write to the backlog; retrying');
      const delay = this.retryDelay;
      this.retryDelay = Math.min(RETRY_MAX_MS, this.retryDelay * 2);
      this.writing = false;
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        void this.write();
      }, delay);
      return;
    }
    this.writing = false;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
    // Work queued while the last statement ran.
    if (this.hasWork()) this.schedule(this.parks.length > 0 ? 0 : this.options.removeDelayMs);
  }

  private wakeRoomWaiters(): void {
    while (this.roomWaiters.length > 0 && this.hasRoom()) this.roomWaiters.shift()!();
  }
}
