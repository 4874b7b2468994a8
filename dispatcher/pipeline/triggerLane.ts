/** What the lane needs to know of an event. */
export interface LaneEvent {
  readonly id: string;
  /** Events with the same key are delivered one at a time, in the order they were enqueued. */
  readonly orderingKey: string;
  /**
   * Set when the row's key changed (an update of its primary key): the event also waits for the
   * earlier events of the old key, and later events of the old key wait for it.
   */
  readonly previousOrderingKey?: string;
  /** A change to every row (a TRUNCATE): with ordering "key" it waits for every earlier event, and every later one waits for it. */
  readonly barrier?: boolean;
}

/** How one attempt went for one event; a retry says why the attempt failed. */
export type AttemptOutcome =
  | { kind: 'settled'; deadLettered?: boolean }
  /** held: the request never reached a function (none was ready to take it); it does not count as an attempt. */
  | { kind: 'retry'; delayMs: number; status?: number; reason?: string; held?: boolean };

/** What the lane does with an event whose attempt failed and may be retried. */
export type RetryChoice = 'retry' | 'evict';

/** An event on its way, with how often it has been tried. */
export interface LaneEntry<E extends LaneEvent> {
  readonly event: E;
  /** Attempts made so far (0 before the first). */
  attempts: number;
  /** When the event was first attempted, for maxEventAge and dead-letter records. */
  firstAttemptAt?: number;
}

/** Settings of one trigger's lane. */
export interface LaneOptions<E extends LaneEvent> {
  concurrency: number;
  ordering: 'key' | 'none';
  batchMaxSize: number;
  batchMaxWaitMs: number;
  /**
   * Makes one attempt at a batch (one event when batchMaxSize is 1). Answers per event id; an event
   * missing from the answer is retried after a second. Dead-lettering happens inside: it answers
   * 'settled' once the dead letter is recorded.
   */
  attempt(entries: LaneEntry<E>[], signal: AbortSignal): Promise<Map<string, AttemptOutcome>>;
  /** Called once per event when it is delivered or dead-lettered. */
  onSettled(event: E, outcome: Extract<AttemptOutcome, { kind: 'settled' }>): void;
  /** Called when attempt() itself failed (a bug or an outage of the dead-letter table). */
  onAttemptError?(error: unknown): void;
  /**
   * Asked when an attempt failed and may be retried: 'evict' takes the event out of the lane, with
   * every later event of its keys (the closure, so no later event of those keys overtakes it), and
   * hands them to onEvicted. Without it, every failed event is retried in the lane.
   */
  onRetry?(entry: LaneEntry<E>, outcome: Extract<AttemptOutcome, { kind: 'retry' }>): RetryChoice;
  /** Receives evicted entries, in the order they were enqueued. */
  onEvicted?(entries: LaneEntry<E>[]): void;
  /**
   * The cap shared with other lanes (the Function's concurrency), looked up before each request, so a
   * reload that sets or lifts it applies at once. Each request holds one slot of it while in flight.
   */
  gate?(): SharedGate | undefined;
}

/** A cap on requests in flight shared by several lanes (see ConcurrencyGate). */
export interface SharedGate {
  tryAcquire(): boolean;
  release(): void;
  whenFree(wake: () => void): void;
}

const RETRY_AFTER_ATTEMPT_ERROR_MS = 1000;

/** An entry as the lane queues it: in the queue of each of its keys; the first key schedules it. */
interface QueuedEntry<E extends LaneEvent> extends LaneEntry<E> {
  readonly keys: readonly string[];
  /** Enqueue order, so evicted entries are handed over in the order they came. */
  readonly seq: number;
  inFlight: boolean;
  /** In the ready list (see markReady). */
  ready: boolean;
  retryTimer?: NodeJS.Timeout;
}

/**
 * Schedules one trigger's deliveries. With ordering "key", a key's next event starts only after the
 * previous one settled, while other keys proceed up to `concurrency` attempts at once. A key whose
 * event waits for a retry holds no concurrency slot, so a poison event stalls only its own key, and
 * only until it is dead-lettered. Ordering "none" gives every event its own key.
 */
export class TriggerLane<E extends LaneEvent> {
  private readonly queues = new Map<string, QueuedEntry<E>[]>();
  /**
   * Entries ready for an attempt (each the head of its keys' queues when marked), oldest first, from
   * readyHead on (a queue: splice(0, n) would copy the rest every time). An entry evicted since it was
   * marked is passed over when its turn comes.
   */
  private ready: QueuedEntry<E>[] = [];
  private readyHead = 0;
  private inFlight = 0;
  /** Entries waiting for a retry timer. */
  private waitingRetry = 0;
  private seq = 0;
  /** Entries in the queues, each counted once. */
  private queued = 0;
  /** A barrier event, from its enqueue until it settled; it is queued once the `waitsFor` entries before it settled. */
  private barrier: { entry: QueuedEntry<E>; waitsFor: number } | undefined;
  /** Events enqueued after a barrier that has not settled yet, in order, with their progress. */
  private held: LaneEntry<E>[] = [];
  private batchTimer: NodeJS.Timeout | undefined;
  private flushPartialBatch = false;
  private pumpScheduled = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private idleWaiters: (() => void)[] = [];
  /** A wake-up is registered with a full shared gate. */
  private waitingForGate = false;

  constructor(private readonly options: LaneOptions<E>) {}

  /** Applies new settings (after a config reload); they take effect from the next scheduling decision. */
  reconfigure(settings: Pick<LaneOptions<E>, 'concurrency' | 'ordering' | 'batchMaxSize' | 'batchMaxWaitMs'>): void {
    Object.assign(this.options, settings);
    this.pump();
  }

  /** Adds an event behind any earlier event with the same key; `progress` carries attempts it made elsewhere (the backlog). */
  enqueue(event: E, progress?: { attempts: number; firstAttemptAt?: number }): void {
    if (this.barrier) {
      this.held.push({ event, attempts: progress?.attempts ?? 0, ...(progress?.firstAttemptAt !== undefined ? { firstAttemptAt: progress.firstAttemptAt } : {}) });
      return;
    }
    const byKey = this.options.ordering === 'key';
    const key = byKey ? event.orderingKey : event.id;
    const previous = byKey ? event.previousOrderingKey : undefined;
    const entry: QueuedEntry<E> = {
      event,
      attempts: progress?.attempts ?? 0,
      ...(progress?.firstAttemptAt !== undefined ? { firstAttemptAt: progress.firstAttemptAt } : {}),
      keys: previous !== undefined && previous !== key ? [key, previous] : [key],
      seq: this.seq++,
      inFlight: false,
      ready: false,
    };
    if (byKey && event.barrier) {
      this.barrier = { entry, waitsFor: this.queued };
      if (this.queued > 0) return;
    }
    this.queue(entry);
  }

  private queue(entry: QueuedEntry<E>): void {
    this.queued += 1;
    let first = true;
    for (const k of entry.keys) {
      const queue = this.queues.get(k);
      if (queue) {
        queue.push(entry);
        first = false;
      } else {
        this.queues.set(k, [entry]);
      }
    }
    if (!first) return;
    this.markReady(entry);
    // Batches: decide once the burst being read (one socket read's worth of changes) is queued, so it
    // leaves as full batches rather than as a first lone event and the rest.
    if (this.options.batchMaxSize > 1) this.pumpSoon();
    else this.pump();
  }

  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Events waiting or in flight. */
  get size(): number {
    return this.queued + this.held.length + (this.barrier && this.barrier.waitsFor > 0 ? 1 : 0);
  }

  get attemptsInFlight(): number {
    return this.inFlight;
  }

  /** Events whose last attempt failed and that wait for their retry. */
  get retrying(): number {
    return this.waitingRetry;
  }

  /**
   * Starts no new attempts; resolves when the attempts in flight have finished. At the deadline the
   * attempts are aborted (they count as failed and are retried after the restart).
   */
  async stop(deadlineMs: number): Promise<void> {
    this.stopped = true;
    for (const queue of this.queues.values()) for (const entry of queue) this.cancelRetry(entry);
    if (this.batchTimer) clearTimeout(this.batchTimer);
    if (this.inFlight === 0) return;
    const abortTimer = setTimeout(() => this.abort.abort(new Error('dispatcher shutting down')), deadlineMs);
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    clearTimeout(abortTimer);
  }

  /** Every event in the lane (queued, in flight, or waiting behind a barrier), once each. */
  entries(): LaneEntry<E>[] {
    const all = new Set<LaneEntry<E>>();
    for (const queue of this.queues.values()) for (const entry of queue) all.add(entry);
    if (this.barrier) all.add(this.barrier.entry);
    for (const entry of this.held) all.add(entry);
    return [...all];
  }

  /**
   * Takes every event not in flight out of the lane (a suspended trigger, a function gone), with the
   * barrier and what waits behind it, and returns them. Attempts in flight finish; the caller decides
   * through onRetry what happens to those that fail.
   */
  evictAll(): LaneEntry<E>[] {
    const taken = new Set<QueuedEntry<E>>();
    for (const queue of this.queues.values()) for (const entry of queue) if (!entry.inFlight) taken.add(entry);
    const evicted = this.removeEntries(taken);
    if (this.barrier) {
      const barrier = this.barrier.entry;
      // A barrier still waiting for earlier events is in no queue: it goes with the rest.
      if (!barrier.inFlight && !taken.has(barrier)) evicted.push(barrier);
      if (!barrier.inFlight) this.barrier = undefined;
      evicted.push(...this.held);
      this.held = [];
    }
    this.pump();
    return evicted;
  }

  /**
   * Takes the events of `key` out of the lane, from its head on, with every later event of the keys
   * they share with other rows (a key change links two keys), so none of them overtakes an evicted one.
   * The head of `key` must not be in flight. With a barrier pending everything goes: order across keys matters then.
   */
  private evictKey(key: string): LaneEntry<E>[] {
    if (this.barrier) return this.evictAll();
    const taken = new Set<QueuedEntry<E>>();
    const pending = [...(this.queues.get(key) ?? [])];
    while (pending.length > 0) {
      const entry = pending.pop()!;
      if (taken.has(entry)) continue;
      taken.add(entry);
      for (const k of entry.keys) {
        const queue = this.queues.get(k)!;
        for (let i = queue.indexOf(entry) + 1; i < queue.length; i++) if (!taken.has(queue[i]!)) pending.push(queue[i]!);
      }
    }
    const evicted = this.removeEntries(taken);
    this.pump();
    return evicted;
  }

  /** Removes queued entries (none in flight) from every queue they are in; returns them in enqueue order. */
  private removeEntries(taken: Set<QueuedEntry<E>>): LaneEntry<E>[] {
    const touched = new Set<string>();
    for (const entry of taken) {
      this.cancelRetry(entry);
      for (const k of entry.keys) touched.add(k);
    }
    for (const k of touched) {
      const queue = this.queues.get(k);
      if (!queue) continue;
      const kept = queue.filter((e) => !taken.has(e));
      if (kept.length === 0) this.queues.delete(k);
      else this.queues.set(k, kept);
    }
    this.queued -= taken.size;
    for (const k of touched) this.offerHead(k);
    return [...taken].sort((a, b) => a.seq - b.seq);
  }

  private cancelRetry(entry: QueuedEntry<E>): void {
    if (entry.retryTimer === undefined) return;
    clearTimeout(entry.retryTimer);
    entry.retryTimer = undefined;
    this.waitingRetry -= 1;
  }

  /** After the head of `key`'s queue changed: schedules the new head once it heads the queue of each of its keys. */
  private offerHead(key: string): void {
    const head = this.queues.get(key)?.[0];
    if (head && !head.inFlight && head.retryTimer === undefined && head.keys.every((k) => this.queues.get(k)?.[0] === head)) this.markReady(head);
  }

  private markReady(entry: QueuedEntry<E>): void {
    if (entry.ready) return;
    entry.ready = true;
    this.ready.push(entry);
  }

  /** Keys whose next event could be sent now but waits for a delivery slot. */
  get waitingToSend(): number {
    return this.readyCount;
  }

  private get readyCount(): number {
    return this.ready.length - this.readyHead;
  }

  /** Takes up to `n` of the oldest ready entries. */
  private takeReady(n: number): QueuedEntry<E>[] {
    const entries = this.ready.slice(this.readyHead, this.readyHead + n);
    this.readyHead += entries.length;
    if (this.readyHead === this.ready.length) {
      this.ready = [];
      this.readyHead = 0;
    } else if (this.readyHead >= 4096 && this.readyHead * 2 >= this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
    return entries;
  }

  private pump(): void {
    const { concurrency, batchMaxSize, batchMaxWaitMs } = this.options;
    while (!this.stopped && this.inFlight < concurrency && this.readyCount > 0) {
      // Adaptive batching: with a delivery slot free, a partial batch goes now (batches fill by themselves
      // while requests are in flight); only a maxWait the trigger asks for holds it back to fill.
      if (batchMaxSize > 1 && this.readyCount < batchMaxSize && !this.flushPartialBatch && batchMaxWaitMs > 0) {
        this.batchTimer ??= setTimeout(() => {
          this.batchTimer = undefined;
          this.flushPartialBatch = true;
          this.pump();
        }, batchMaxWaitMs);
        return;
      }
      const gate = this.options.gate?.();
      if (gate && !gate.tryAcquire()) {
        if (!this.waitingForGate) {
          this.waitingForGate = true;
          gate.whenFree(() => {
            this.waitingForGate = false;
            this.pump();
          });
        }
        return;
      }
      this.flushPartialBatch = false;
      const batch = this.takeReady(batchMaxSize);
      let kept = 0;
      for (const entry of batch) {
        entry.ready = false;
        // An entry marked ready may have been evicted since (it heads no queue then).
        if (!entry.inFlight && this.queues.get(entry.keys[0]!)?.[0] === entry) batch[kept++] = entry;
      }
      batch.length = kept;
      if (batch.length > 0) void this.run(batch, gate);
      else gate?.release();
    }
  }

  private async run(batch: QueuedEntry<E>[], gate: SharedGate | undefined): Promise<void> {
    this.inFlight += 1;
    const now = Date.now();
    for (const entry of batch) {
      entry.firstAttemptAt ??= now;
      entry.inFlight = true;
    }
    let outcomes: Map<string, AttemptOutcome>;
    try {
      outcomes = await this.options.attempt(batch, this.abort.signal);
    } catch (error) {
      this.options.onAttemptError?.(error);
      outcomes = new Map();
    }
    for (const entry of batch) entry.inFlight = false;
    gate?.release();
    // Made only when an eviction happens: most attempts settle every entry.
    let evicted: Set<LaneEntry<E>> | undefined;
    for (const entry of batch) {
      if (evicted?.has(entry)) continue;
      const outcome: AttemptOutcome = outcomes.get(entry.event.id) ?? { kind: 'retry', delayMs: RETRY_AFTER_ATTEMPT_ERROR_MS };
      if (!(outcome.kind === 'retry' && outcome.held)) entry.attempts += 1;
      if (outcome.kind === 'settled') {
        // The entry heads the queue of each of its keys.
        for (const k of entry.keys) this.queues.get(k)!.shift();
        this.options.onSettled(entry.event, outcome);
        for (const k of entry.keys) {
          if (this.queues.get(k)!.length === 0) this.queues.delete(k);
          else this.offerHead(k);
        }
        this.queued -= 1;
        if (this.barrier?.entry === entry) {
          // Past the barrier: what waited behind it comes in, in order (up to the next barrier).
          this.barrier = undefined;
          const held = this.held;
          this.held = [];
          for (const h of held) this.enqueue(h.event, h);
        } else if (this.barrier && --this.barrier.waitsFor === 0) {
          this.queue(this.barrier.entry);
        }
      } else if (!this.stopped && this.options.onRetry?.(entry, outcome) === 'evict') {
        const out = this.evictKey(entry.keys[0]!);
        evicted ??= new Set();
        for (const e of out) evicted.add(e);
        this.options.onEvicted?.(out);
      } else {
        this.retryLater(entry, outcome.delayMs);
      }
    }
    this.inFlight -= 1;
    if (this.inFlight === 0 && this.stopped) for (const resolve of this.idleWaiters.splice(0)) resolve();
    this.pump();
  }

  private retryLater(entry: QueuedEntry<E>, delayMs: number): void {
    if (this.stopped) return;
    this.waitingRetry += 1;
    entry.retryTimer = setTimeout(() => {
      entry.retryTimer = undefined;
      this.waitingRetry -= 1;
      this.offerHead(entry.keys[0]!);
      this.pump();
    }, delayMs);
  }
}
