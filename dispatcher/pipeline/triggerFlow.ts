import type { Logger } from '../../common/logger.js';
import type { BacklogWriter } from '../backlog/backlogWriter.js';
import type { BacklogPosition, BacklogStore, ParkedEvent, ParkReason } from '../backlog/store.js';
import type { Lsn } from '../lsn.js';
import { describeError } from '../source/replicationStream.js';
import type { PendingEvent } from './pendingEvent.js';
import { type AttemptOutcome, type LaneEntry, type LaneOptions, type RetryChoice, type SharedGate, TriggerLane } from './triggerLane.js';
import { WakeableSleep } from './wakeableSleep.js';
import type { WindowShares } from './windowShares.js';

/** An event to park, with its progress; its own reason, if any, wins over the one of the call. */
type ToPark = Omit<ParkedEvent, 'reason'> & { reason?: ParkReason };

/** Lane settings a reload may change. */
export type LaneSettings = Pick<LaneOptions<PendingEvent>, 'concurrency' | 'ordering' | 'batchMaxSize' | 'batchMaxWaitMs'>;

/** Where one trigger's events go: straight to the function, or through its backlog. */
export type FlowMode = 'direct' | 'parking';

/** What a trigger flow hears about its events, for metrics and the failure summary. */
export interface FlowObserver {
  parked(trigger: string, reason: ParkReason, count: number): void;
  drained(trigger: string): void;
  /** An event reached the function (not dead-lettered). */
  delivered(trigger: string): void;
  attemptFailed(trigger: string, outcome: Extract<AttemptOutcome, { kind: 'retry' }>, next: 'retry' | 'parked'): void;
}

export interface TriggerFlowOptions {
  key: string;
  lane: LaneSettings;
  shares: WindowShares;
  writer: BacklogWriter;
  store: BacklogStore;
  logger: Logger;
  observer: FlowObserver;
  /** Makes one delivery attempt with the trigger's current delivery settings. */
  attempt(entries: LaneEntry<PendingEvent>[], signal: AbortSignal): Promise<Map<string, AttemptOutcome>>;
  /** A live event is done with (delivered, dead-lettered or durably parked): the watermark may pass it. */
  settleLive(event: PendingEvent): void;
  /** The stream's progress: the drainer loads no event committed after it (it may still be parked out of order). */
  streamProgress(): Lsn;
  /** How long a live event may keep retrying in memory before it is parked. */
  retryInMemoryMs: number;
  suspended: boolean;
  /** The cap shared with the other triggers of the same Function, if it sets one. */
  gate?(): SharedGate | undefined;
  now?: () => number;
}

const LOAD_BATCH = 500;
/**
 * How long the reader waits for room in a full share before it parks the event. A function that keeps
 * up frees slots within milliseconds, so a burst does not push a healthy trigger onto the slower
 * backlog path; a stuck one does not free any, and the reader, shared with every sibling, moves on.
 */
const SHARE_FULL_WAIT_MS = 100;
/** The most room a waiting reader waits for before it takes more events (see roomWorthWaking). */
const WAKE_BURST_MAX = 64;
const IDLE_RECHECK_MS = 1000;
const LOAD_ERROR_RETRY_MS = 1000;

/**
 * One trigger's path from the stream to its function. The fast path is the lane: events the trigger's
 * share of the window can hold go straight to it. Any event that cannot be delivered now — the share
 * is used up, it has been retrying longer than the in-memory budget, the trigger is suspended — goes
 * to the trigger's durable backlog, and once it is committed there the slot no longer waits for it.
 *
 * Order per key: while the trigger has anything in the backlog ("parking"), every new event goes
 * behind it, and the drainer starts only once no live event is left in the lane, so the lane holds
 * either live events or drained ones, never both; the drainer reads in stream order. When the backlog
 * is empty again the trigger returns to the fast path.
 */
export class TriggerFlow {
  readonly lane: TriggerLane<PendingEvent>;
  private modeValue: FlowMode = 'direct';
  private suspendedValue: boolean;
  /** Live events in the lane (admitted from the stream, not yet settled or evicted). */
  private live = 0;
  /** Backlog rows loaded into the lane, and settled rows whose removal is not yet written. */
  private readonly loaded = new Set<number>();
  private readonly removing = new Set<number>();
  /**
   * Rows whose removal committed while a load was running: that load's snapshot may still hold them,
   * and they are no longer in `removing` by the time its rows arrive.
   */
  private readonly removedDuringLoad = new Set<number>();
  private loading = false;
  private parksPending = 0;
  /** The last attempt that finished failed (a dead letter does not end it: only a delivery does). */
  private failing = false;
  /**
   * Evicted or copied events not yet committed to the backlog. They are older than events parked after them, so
   * the drainer, which reads in stream order behind a cursor, waits for them before it reads at all.
   */
  private olderParksPending = 0;
  /** Counts parks, so the drainer can tell that one happened while it asked whether the backlog is empty. */
  private parkSeq = 0;
  private cursor: BacklogPosition | undefined;
  /**
   * Live events copied to the backlog when the trigger started parking, so the slot need not wait for
   * them (a hung function would otherwise hold the WAL until its timeout): the copy settles the event
   * for the watermark once durable, and is removed once the event is delivered from memory after all.
   * pending: copy not yet durable; committed: copy durable; settled: delivered before the copy was
   * durable (remove it then); evicted: left the lane before the copy was durable (the copy stays).
   */
  private readonly copies = new Map<string, 'pending' | 'committed' | 'settled' | 'evicted'>();
  /** Copies whose removal is not written yet: the drainer waits for them, or it could send a delivered event again. */
  private copyRemovals = 0;
  /** The failure that made an event leave the lane, written with it. */
  private readonly lastFailure = new Map<string, Extract<AttemptOutcome, { kind: 'retry' }>>();
  private rescan = false;
  private readonly pause = new WakeableSleep();
  /** Resolved when a live event of this trigger settles: room in its share. */
  private roomWaiter: (() => void) | undefined;
  private closed = false;
  private drainerDone: Promise<void> = Promise.resolve();
  private readonly now: () => number;

  constructor(private readonly options: TriggerFlowOptions) {
    this.suspendedValue = options.suspended;
    this.now = options.now ?? Date.now;
    this.lane = new TriggerLane<PendingEvent>({
      ...options.lane,
      attempt: (entries, signal) => options.attempt(entries, signal),
      onSettled: (event, outcome) => this.onSettled(event, outcome.deadLettered !== true),
      onRetry: (entry, outcome) => this.onRetry(entry, outcome),
      onEvicted: (entries) => this.onEvicted(entries),
      ...(options.gate ? { gate: options.gate } : {}),
      onAttemptError: (error) => options.logger.error({ trigger: options.key, err: describeError(error) }, 'delivery attempt failed to complete; retrying'),
    });
  }

  /** Starts the drainer; `backlogEvents` is what the backlog held at start (the trigger parks until it is drained). */
  start(backlogEvents: number): void {
    if (backlogEvents > 0 || this.suspendedValue) this.modeValue = 'parking';
    this.drainerDone = this.drainLoop();
  }

  get mode(): FlowMode {
    return this.modeValue;
  }

  get suspended(): boolean {
    return this.suspendedValue;
  }

  /**
   * Whether events from the stream are still in memory here, not yet delivered nor durably parked:
   * a trigger being removed is kept until none is, so the slot's watermark can pass them.
   */
  get holdsLiveEvents(): boolean {
    return this.live > 0 || this.parksPending > 0 || this.olderParksPending > 0;
  }

  /** Events in the lane (queued, in flight or waiting for a retry). */
  get inLane(): number {
    return this.lane.size;
  }

  /**
   * Takes a live event from the stream: into the lane when the trigger is on the fast path and its share
   * has room, else into the backlog. Resolves at once unless the backlog writer's buffer is full.
   */
  accept(event: PendingEvent): void | Promise<void> {
    // While the function fails, more live events would only burn their retries in memory (and the
    // CPU siblings need): past what the concurrency keeps busy, they wait in the backlog.
    const failingAndBusy = this.failing && this.live >= this.workingSet();
    if (this.modeValue === 'direct' && !this.suspendedValue && !failingAndBusy) {
      if (this.admitLive(event)) return;
      // A lane whose events fail frees no room soon: no point in holding the reader for it.
      if (this.lane.retrying === 0) return this.admitOrParkAfterWait(event);
    }
    return this.parkFromStream(event);
  }

  /**
   * Takes a backfill's read if the trigger can deliver it now: on the fast path, not failing, with room
   * in its share and at most a batch already waiting for a slot. `busy`: offer it again soon; `blocked`:
   * the trigger cannot deliver directly (its backlog drains, its function fails, it is suspended). Reads
   * never push a trigger onto its backlog, nor make a live change wait behind many of them.
   */
  offerRead(event: PendingEvent): 'taken' | 'busy' | 'blocked' {
    if (this.modeValue !== 'direct' || this.suspendedValue || this.failing || this.closed) return 'blocked';
    if (this.lane.waitingToSend >= this.options.lane.batchMaxSize) return 'busy';
    return this.admitLive(event) ? 'taken' : 'busy';
  }

  /** Puts an event of the stream (or a read) in the lane if the trigger's share has room for it. */
  private admitLive(event: PendingEvent): boolean {
    if (!this.options.shares.tryAdmit(this.options.key, event.bytes)) return false;
    this.live += 1;
    this.lane.enqueue(event);
    return true;
  }

  private parkFromStream(event: PendingEvent): void | Promise<void> {
    const reason: ParkReason = this.suspendedValue ? 'suspended' : this.modeValue === 'parking' ? 'backlog-ahead' : 'share-full';
    this.enterParking();
    this.park([{ event, attempts: 0 }], reason);
    const { writer } = this.options;
    return writer.hasRoom() ? undefined : writer.waitForRoom();
  }

  private async admitOrParkAfterWait(event: PendingEvent): Promise<void> {
    const deadline = this.now() + SHARE_FULL_WAIT_MS;
    while (this.modeValue === 'direct' && !this.suspendedValue && !this.closed) {
      const left = deadline - this.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.roomWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.roomWaiter = undefined;
      if (this.modeValue === 'direct' && !this.suspendedValue && this.admitLive(event)) return;
    }
    await this.parkFromStream(event);
  }

  /** Applies a reload: lane settings, and suspension (a suspended trigger's events in memory go to the backlog). */
  reconfigure(lane: LaneSettings, suspended: boolean): void {
    Object.assign(this.options.lane, lane);
    this.lane.reconfigure(lane);
    this.setSuspended(suspended);
  }

  /** Suspends (events in memory go to the backlog, new ones too) or resumes the trigger. */
  setSuspended(suspended: boolean): void {
    if (suspended === this.suspendedValue) return;
    this.suspendedValue = suspended;
    if (suspended) {
      this.enterParking();
      this.onEvicted(this.lane.evictAll());
    }
    this.kick();
  }

  /** Another writer (the CLI) added events to this trigger's backlog: park behind them and read them. */
  backlogAdded(): void {
    this.enterParking();
    this.rescan = true;
    this.kick();
  }

  /** Stops the drainer and the lane (attempts in flight get until the deadline). */
  async stop(deadlineMs: number): Promise<void> {
    this.closed = true;
    this.kick();
    await Promise.all([this.lane.stop(deadlineMs), this.drainerDone]);
  }

  /** Switches to the backlog; the live events still in the lane are copied there at once (see `copies`). */
  private enterParking(): void {
    if (this.modeValue === 'parking') return;
    this.modeValue = 'parking';
    const copies: ToPark[] = [];
    for (const entry of this.lane.entries()) {
      const { event } = entry;
      if (event.backlogId !== undefined || this.copies.has(event.id)) continue;
      this.copies.set(event.id, 'pending');
      const progress = this.progressOf(entry);
      copies.push({ ...progress, reason: progress.lastError === undefined ? 'in-memory' : 'retrying' });
    }
    if (copies.length > 0) this.park(copies, 'in-memory', { older: true, committed: (event) => this.copyCommitted(event) });
  }

  private copyCommitted(event: PendingEvent): void {
    const state = this.copies.get(event.id);
    if (state === 'pending') {
      this.copies.set(event.id, 'committed');
      this.options.settleLive(event);
    } else if (state === 'settled') {
      this.removeCopy(event);
    } else if (state === 'evicted') {
      this.copies.delete(event.id);
      this.options.settleLive(event);
    }
  }

  private removeCopy(event: PendingEvent): void {
    this.copies.delete(event.id);
    this.copyRemovals += 1;
    this.options.writer.removeEvent(this.options.key, event.id, () => {
      this.copyRemovals -= 1;
      this.kick();
    });
  }

  /**
   * Writes events to the backlog. `older`: they are older than events parked after them (evicted or
   * copied from the lane), so the drainer waits until they are durable. `committed` runs once one is
   * (by default: the watermark may pass it).
   */
  private park(entries: ToPark[], reason: ParkReason, options: { older?: boolean; committed?: (event: PendingEvent) => void } = {}): void {
    const { writer, observer, key } = this.options;
    const committed = options.committed ?? ((event: PendingEvent) => this.options.settleLive(event));
    for (const entry of entries) {
      this.parksPending += 1;
      if (options.older) this.olderParksPending += 1;
      this.parkSeq += 1;
      writer.park({ ...entry, reason: entry.reason ?? reason }, () => {
        this.parksPending -= 1;
        if (options.older) this.olderParksPending -= 1;
        // Parks commit in stream order, so this never happens; if it did, the cursor would skip the row.
        if (this.cursor && comparePositions(positionOf(entry.event), this.cursor) < 0) this.rescan = true;
        committed(entry.event);
        this.kick();
      });
    }
    observer.parked(key, reason, entries.length);
  }

  /** What an event leaving the lane takes with it: its attempts, and the failure that made it leave. */
  private progressOf(entry: LaneEntry<PendingEvent>): ToPark {
    const failure = this.lastFailure.get(entry.event.id);
    return {
      event: entry.event,
      attempts: entry.attempts,
      ...(entry.firstAttemptAt !== undefined ? { firstAttemptAt: entry.firstAttemptAt } : {}),
      ...(failure?.status !== undefined ? { lastStatus: failure.status } : {}),
      ...(failure?.reason !== undefined ? { lastError: failure.reason } : {}),
    };
  }

  private onSettled(event: PendingEvent, delivered: boolean): void {
    const { shares, key, observer, writer } = this.options;
    if (delivered) {
      this.failing = false;
      observer.delivered(key);
    }
    shares.release(key, event.bytes);
    const id = event.backlogId;
    if (id === undefined) {
      this.live -= 1;
      const copy = this.copies.get(event.id);
      if (copy === undefined) this.options.settleLive(event);
      else if (copy === 'pending') {
        this.options.settleLive(event);
        this.copies.set(event.id, 'settled');
      } else this.removeCopy(event);
      if (this.roomWaiter && this.roomWorthWaking()) this.roomWaiter();
    } else {
      this.loaded.delete(id);
      this.removing.add(id);
      writer.remove(id, () => {
        this.removing.delete(id);
        if (this.loading) this.removedDuringLoad.add(id);
      });
      observer.drained(key);
    }
    // Only a parking trigger's drainer has anything to do with the room freed (on the fast path it sleeps
    // until the trigger parks, which wakes it): a wake per settled event cost a promise and a timer each.
    if (this.modeValue === 'parking') this.kick();
  }

  private onRetry(entry: LaneEntry<PendingEvent>, outcome: Extract<AttemptOutcome, { kind: 'retry' }>): RetryChoice {
    this.failing = true;
    const { observer, key, writer } = this.options;
    const id = entry.event.backlogId;
    if (id !== undefined) {
      // Already durable: it retries in memory, and its progress is written back for `events list` and restarts.
      writer.recordProgress({
        id,
        attempts: entry.attempts,
        firstAttemptAt: entry.firstAttemptAt ?? this.now(),
        ...(outcome.status !== undefined ? { lastStatus: outcome.status } : {}),
        ...(outcome.reason !== undefined ? { lastError: outcome.reason } : {}),
      });
      if (!outcome.held) observer.attemptFailed(key, outcome, 'retry');
      return 'retry';
    }
    const overBudget = this.now() - (entry.firstAttemptAt ?? this.now()) >= this.options.retryInMemoryMs;
    const choice: RetryChoice = this.modeValue === 'parking' || overBudget ? 'evict' : 'retry';
    if (choice === 'evict') {
      this.lastFailure.set(entry.event.id, outcome);
      this.enterParking();
    }
    // A held event made no attempt: the function's unavailability is logged and measured once, per function.
    if (!outcome.held) observer.attemptFailed(key, outcome, choice === 'evict' ? 'parked' : 'retry');
    return choice;
  }

  private onEvicted(entries: LaneEntry<PendingEvent>[]): void {
    const { shares, key } = this.options;
    const toPark: ToPark[] = [];
    for (const entry of entries) {
      shares.release(key, entry.event.bytes);
      const id = entry.event.backlogId;
      if (id !== undefined) {
        // Its row is still there; read it again when the trigger drains.
        this.loaded.delete(id);
        this.rescan = true;
        continue;
      }
      this.live -= 1;
      const progress = this.progressOf(entry);
      this.lastFailure.delete(entry.event.id);
      // Already copied to the backlog: the copy is its row from now on.
      const copy = this.copies.get(entry.event.id);
      if (copy === 'committed') {
        this.copies.delete(entry.event.id);
        continue;
      }
      if (copy === 'pending') {
        this.copies.set(entry.event.id, 'evicted');
        continue;
      }
      toPark.push(progress);
    }
    if (toPark.length > 0) this.park(toPark, this.suspendedValue ? 'suspended' : 'retrying', { older: true });
    this.kick();
  }

  private kick(): void {
    this.pause.wake();
  }

  private sleep(ms: number): Promise<void> {
    return this.pause.sleep(ms);
  }

  private mayDrain(): boolean {
    return !this.closed && this.modeValue === 'parking' && !this.suspendedValue && this.live === 0 && this.olderParksPending === 0 && this.copyRemovals === 0;
  }

  /** Loads the backlog into the lane as the trigger's share allows, and returns the trigger to the fast path once it is empty. */
  private async drainLoop(): Promise<void> {
    const { store, key, shares, logger } = this.options;
    while (!this.closed) {
      if (!this.mayDrain()) {
        await this.sleep(IDLE_RECHECK_MS);
        continue;
      }
      if (this.rescan) {
        this.rescan = false;
        this.cursor = undefined;
      }
      const room = Math.min(shares.roomFor(key), LOAD_BATCH, this.roomWhileFailing());
      // While the lane still has a concurrency's worth to send, wait for room for a whole batch of
      // rows: one query per settled event would cost more than the delivery.
      const worthALoad = Math.min(LOAD_BATCH, this.inFlightCapacity());
      if (room <= 0 || (room < worthALoad && this.loaded.size >= worthALoad)) {
        await this.sleep(IDLE_RECHECK_MS);
        continue;
      }
      const progress = this.options.streamProgress();
      let rows;
      this.loading = true;
      this.removedDuringLoad.clear();
      try {
        rows = await store.load(key, this.cursor, room, progress);
      } catch (error) {
        logger.warn({ trigger: key, err: describeError(error) }, 'could not read the backlog; retrying');
        await this.sleep(LOAD_ERROR_RETRY_MS);
        continue;
      } finally {
        this.loading = false;
      }
      // Suspended, evicted or closed while reading: what was read is read again later.
      if (this.rescan || !this.mayDrain()) continue;
      let loadedNow = 0;
      let windowFull = false;
      for (const row of rows) {
        if (this.loaded.has(row.id) || this.removing.has(row.id) || this.removedDuringLoad.has(row.id)) {
          this.cursor = row.position;
          continue;
        }
        if (!shares.tryAdmit(key, row.event.bytes)) {
          windowFull = true;
          break;
        }
        this.cursor = row.position;
        this.loaded.add(row.id);
        loadedNow += 1;
        this.lane.enqueue({ ...row.event, backlogId: row.id }, { attempts: row.attempts, ...(row.firstAttemptAt !== undefined ? { firstAttemptAt: row.firstAttemptAt } : {}) });
      }
      if (!windowFull && (loadedNow > 0 || rows.length === room)) continue;
      if (!windowFull && this.loaded.size === 0 && this.parksPending === 0 && (await this.returnToFastPathIfEmpty())) continue;
      await this.sleep(IDLE_RECHECK_MS);
    }
  }

  /**
   * While loaded events are failing (the function is down, or a poison event retries), the drainer
   * keeps only what the concurrency keeps busy in memory: events still in the backlog are not
   * attempted, so an outage burns the retries of a few events, not of the whole backlog.
   */
  private roomWhileFailing(): number {
    if (!this.failing && this.lane.retrying === 0) return Number.POSITIVE_INFINITY;
    return Math.max(0, this.workingSet() - this.loaded.size);
  }

  /**
   * Whether the reader waiting for room in this trigger's share should try again now. While the lane
   * holds enough to keep every slot busy, only once a burst's worth of room is free, so the reader
   * admits a run of events per wake-up instead of waiting (a promise and a timer) once per event settled
   * — in a backlog's drain that was a wait per event. With the lane running low, one event's room is worth it.
   */
  private roomWorthWaking(): boolean {
    const busy = this.inFlightCapacity();
    if (this.live < busy) return true;
    return this.options.shares.roomFor(this.options.key) >= Math.min(busy, WAKE_BURST_MAX);
  }

  /** The events the trigger's requests carry at once: its concurrency times its batch size. */
  private inFlightCapacity(): number {
    const { concurrency, batchMaxSize } = this.options.lane;
    return concurrency * batchMaxSize;
  }

  /** The events the trigger's concurrency keeps busy, twice over. */
  private workingSet(): number {
    return 2 * this.inFlightCapacity();
  }

  /**
   * Returns the trigger to the fast path when its backlog holds nothing but rows being removed and
   * nothing was parked meanwhile; decided and switched in one step, so no event can slip in between.
   */
  private async returnToFastPathIfEmpty(): Promise<boolean> {
    const seq = this.parkSeq;
    try {
      const any = await this.options.store.hasEvents(this.options.key, [...this.removing]);
      if (any || seq !== this.parkSeq || this.parksPending > 0 || this.loaded.size > 0 || !this.mayDrain() || this.rescan) return false;
      this.modeValue = 'direct';
      this.cursor = undefined;
      this.options.logger.info({ trigger: this.options.key }, 'backlog drained; delivering directly again');
      return true;
    } catch (error) {
      this.options.logger.warn({ trigger: this.options.key, err: describeError(error) }, 'could not read the backlog; retrying');
      return false;
    }
  }
}

function positionOf(event: PendingEvent): BacklogPosition {
  return { commitLsn: event.txn.commitLsn, changeLsn: event.changeLsn, ordinal: event.ordinal };
}

/** Orders stream positions: commit, then place in the WAL, then ordinal within one record. */
function comparePositions(a: BacklogPosition, b: BacklogPosition): number {
  if (a.commitLsn !== b.commitLsn) return a.commitLsn < b.commitLsn ? -1 : 1;
  if (a.changeLsn !== b.changeLsn) return a.changeLsn < b.changeLsn ? -1 : 1;
  return a.ordinal - b.ordinal;
}
