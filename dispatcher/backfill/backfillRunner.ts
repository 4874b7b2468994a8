import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { BackfillStateReport } from '../../common/dispatcherState.js';
import type { Logger } from '../../common/logger.js';
import { RowDecoder } from '../decode/rowDecoder.js';
import type { RawTuple } from '../decode/textPgoutputPlugin.js';
import { TypeCatalog } from '../decode/typeCatalog.js';
import { eventSource } from '../delivery/eventAttributes.js';
import type { Lsn } from '../lsn.js';
import type { ReadTicket } from '../pipeline/pendingEvent.js';
import { WakeableSleep } from '../pipeline/wakeableSleep.js';
import { type CompiledFilter, compileFilter, FilterEvaluationError } from '../routing/filter.js';
import type { Route } from '../routing/triggerMatcher.js';
import { describeError } from '../source/replicationStream.js';
import type { BackfillWindows } from './backfillWindows.js';
import { BackfillRefusedError, readChunk, readTableFacts, type TableFacts } from './chunkReader.js';
import { ChunkWindow } from './chunkWindow.js';
import { placeRead, type ReadRow, readEvent } from './readEvents.js';
import type { BackfillRecord, BackfillStore } from './store.js';
import { TokenBucket } from './tokenBucket.js';

/** The trigger a backfill sends through, as the dispatcher serves it now. */
export interface ServedTrigger {
  route: Route;
  /** Offers a read to the trigger's lane (see TriggerFlow.offerRead). */
  offerRead(event: ReturnType<typeof placeRead>): 'taken' | 'busy' | 'blocked';
  /** Events the trigger sends at once: concurrency × batch size. */
  capacity: number;
}

/** What a runner needs of the dispatcher around it. */
export interface BackfillHost {
  pool: pg.Pool;
  store: BackfillStore;
  windows: BackfillWindows;
  logger: Logger;
  /** The trigger while it is served, else why it is not. */
  served(trigger: string): ServedTrigger | { waiting: string };
  /** Where the stream is: reads handed on now are placed here. */
  streamProgress(): Lsn;
  /** A read left the backfill for its trigger; a row was read. For metrics. */
  observe?: { rowsRead(backfill: string, count: number): void; readsSent(backfill: string, count: number): void };
}

/** One chunk from read to complete. */
interface Chunk {
  id: string;
  window: ChunkWindow;
  /** Where the chunk starts (the cursor before it) and ends (its last key). */
  from: string[] | null;
  lastKey: string[] | null;
  rowsRead: number;
  /** Rows that passed the filters: events to send. */
  sendable: number;
  settled: number;
  stage: 'expected' | 'open' | 'feeding';
  stale: boolean;
}

/** Postgres errors a retry cannot fix: the table or a column is gone, or the role may not read it. */
const EMPTY_SNAPSHOT = { xmin: 0n, xmax: 0n, running: new Set<bigint>() };
const PERMANENT_CODES = new Set(['42P01', '42703', '42501', '42704']);
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
const IDLE_MS = 250;
/** The lane is full for now: a settled read wakes the runner sooner, a live event's slot does not. */
const BUSY_MS = 20;
/** Rows decoded between yields to the event loop, so a chunk's decoding does not hold up live deliveries. */
const DECODE_SLICE = 200;

/** A backfill's record as GET /state reports it; `message`, when given, says what it waits for now. */
export function backfillReport(record: BackfillRecord, message: string | undefined): BackfillStateReport {
  const cursor = record.cursor?.join(',');
  return {
    trigger: record.trigger,
    ...(record.uid !== undefined ? { uid: record.uid } : {}),
    phase: record.phase,
    rowsRead: record.rowsRead,
    rowsSent: record.rowsSent,
    ...(record.rowsEstimate !== null ? { rowsEstimate: record.rowsEstimate } : {}),
    ...(cursor !== undefined ? { cursor } : {}),
    ...(record.startedAt ? { startTime: record.startedAt.toISOString() } : {}),
    ...(record.finishedAt ? { completionTime: record.finishedAt.toISOString() } : {}),
    ...((message ?? record.message) ? { message: (message ?? record.message)! } : {}),
  };
}

/**
 * Runs one backfill: reads its trigger's table in primary-key order, chunk by chunk between two
 * watermarks, and hands each row on as a `read` event through the trigger's own lane — in front of any
 * newer change to the row (see ChunkWindow), else as the lane has room, leaving half of the trigger's
 * concurrency to live changes and pausing while the trigger cannot deliver directly. A chunk is
 * complete once every read of it is settled; then the cursor moves past it in eventide.backfills,
 * which is where a restart resumes. The next chunk is read while the last one is delivered.
 */
export class BackfillRunner {
  private record: BackfillRecord;
  private message: string | undefined;
  private stopped = false;
  private readonly chunks: Chunk[] = [];
  private inFlight = 0;
  private readonly pause = new WakeableSleep();
  private readonly runId = randomUUID().slice(0, 8);
  private sequence = 0;
  private limiter: TokenBucket | undefined;
  private readonly decoder: RowDecoder;

  constructor(
    record: BackfillRecord,
    private readonly host: BackfillHost,
  ) {
    this.record = record;
    const query = (sql: string, params: unknown[]) => host.pool.query(sql, params);
    this.decoder = new RowDecoder(new TypeCatalog(query), query);
  }

  get name(): string {
    return this.record.name;
  }

  get finished(): boolean {
    return this.stopped;
  }

  /** The run of the backfill this runner runs (see BackfillRecord.run). */
  get currentRun(): string {
    return this.record.run;
  }

  report(): BackfillStateReport {
    return backfillReport(this.record, this.message);
  }

  /** The record changed in the table (a new rate, or cancelled by the CLI). */
  update(record: BackfillRecord): void {
    if (record.rowsPerSecond !== this.record.rowsPerSecond) this.limiter = undefined;
    this.record = { ...this.record, batchSize: record.batchSize, ...(record.rowsPerSecond !== undefined ? { rowsPerSecond: record.rowsPerSecond } : {}) };
    if (record.rowsPerSecond === undefined) delete this.record.rowsPerSecond;
    if (record.phase === 'Cancelled') this.halt({ phase: 'Cancelled', message: record.message ?? 'cancelled' });
  }

  /** Stops handing on reads; those handed on are delivered as usual. The table is left as it is (a restart resumes). */
  stop(): void {
    this.halt();
  }

  async run(): Promise<void> {
    try {
      await this.runChunks();
    } catch (error) {
      if (this.stopped) return;
      const message = error instanceof BackfillRefusedError || error instanceof BackfillFilterError ? error.message : `backfill failed: ${describeError(error).message}`;
      this.host.logger.error({ backfill: this.name, err: describeError(error) }, message);
      await this.finish('Failed', message);
    } finally {
      this.halt();
    }
  }

  private async runChunks(): Promise<void> {
    const served = await this.whileServed();
    if (!served) return;
    const facts = await this.withRetries(() => readTableFacts(this.host.pool, served.route.trigger.spec.table));
    if (!facts) return;
    const filter = this.compileFilter();
    if (!(await this.host.store.start(this.name, facts.rowsEstimate, this.record.run))) return this.halt();
    this.record = { ...this.record, phase: 'Running', rowsEstimate: this.record.rowsEstimate ?? facts.rowsEstimate, startedAt: this.record.startedAt ?? new Date() };
    this.host.logger.info({ backfill: this.name, trigger: this.record.trigger, rowsEstimate: facts.rowsEstimate, from: this.record.cursor }, 'backfill running');
    let cursor = this.record.cursor;
    let exhausted = false;
    while (!this.stopped) {
      const trigger = this.host.served(this.record.trigger);
      if ('waiting' in trigger) {
        // Its lane is gone or set aside: what is not handed on is read again once it is back.
        this.abandonChunks();
        cursor = this.record.cursor;
        exhausted = false;
        this.message = trigger.waiting;
        await this.sleep(1000);
        continue;
      }
      const stale = this.chunks.findIndex((c) => c.stale);
      if (stale >= 0) {
        cursor = this.chunks[stale]!.from;
        exhausted = false;
        for (const chunk of this.chunks.splice(stale)) this.dropChunk(chunk);
      }
      if (await this.completeChunks()) return;
      if (exhausted && this.chunks.length === 0) {
        await this.finish('Complete', null);
        return;
      }
      // Hand on what can go now first, then read ahead: the next chunk is read while this one is delivered.
      const waitMs = this.feed(trigger);
      const newest = this.chunks.at(-1);
      if (!exhausted && this.chunks.length < 2 && (newest === undefined || newest.stage === 'feeding')) {
        const chunk = await this.readNext(facts, trigger, filter, cursor);
        if (chunk === undefined) continue;
        cursor = chunk.lastKey ?? cursor;
        if (chunk.rowsRead < this.record.batchSize) exhausted = true;
        continue;
      }
      await this.sleep(waitMs);
    }
  }

  /** Waits until the trigger is served; undefined when stopped first. */
  private async whileServed(): Promise<ServedTrigger | undefined> {
    for (;;) {
      if (this.stopped) return undefined;
      const trigger = this.host.served(this.record.trigger);
      if (!('waiting' in trigger)) {
        this.message = undefined;
        return trigger;
      }
      this.message = trigger.waiting;
      await this.sleep(1000);
    }
  }

  private compileFilter(): CompiledFilter | undefined {
    if (this.record.filter === undefined) return undefined;
    try {
      return compileFilter(this.record.filter);
    } catch (error) {
      throw new BackfillFilterError(`invalid filter ${JSON.stringify(this.record.filter)}: ${(error as Error).message.split('\n')[0]}`);
    }
  }

  /** Runs an I/O step, retrying what a retry can fix; refusals and permanent errors fail the backfill. */
  private async withRetries<T>(step: () => Promise<T>): Promise<T | undefined> {
    let delay = RETRY_MIN_MS;
    for (;;) {
      if (this.stopped) return undefined;
      try {
        const result = await step();
        this.message = undefined;
        return result;
      } catch (error) {
        if (error instanceof BackfillRefusedError) throw error;
        const code = (error as { code?: string }).code;
        if (code && PERMANENT_CODES.has(code)) throw new BackfillRefusedError(`cannot read the table: ${(error as Error).message}`, { cause: error });
        this.message = `retrying after an error: ${describeError(error).message}`;
        this.host.logger.warn({ backfill: this.name, err: describeError(error), retryInMs: delay }, 'backfill step failed; retrying');
        await this.sleep(delay);
        delay = Math.min(RETRY_MAX_MS, delay * 2);
      }
    }
  }

  /** Reads the chunk after `cursor` between its watermarks and registers it with the stream. */
  private async readNext(facts: TableFacts, trigger: ServedTrigger, filter: CompiledFilter | undefined, cursor: string[] | null): Promise<Chunk | undefined> {
    const chunk: Chunk = { id: '', window: new ChunkWindow(facts, EMPTY_SNAPSHOT, []), from: cursor, lastKey: null, rowsRead: 0, sendable: 0, settled: 0, stage: 'expected', stale: false };
    const { windows } = this.host;
    const attempt = await this.withRetries(async () => {
      // A new id per attempt: a watermark a failed attempt left in the WAL names no chunk, and the stream passes it by.
      const id = `${this.runId}.${++this.sequence}`;
      windows.expect(id, this.listenerOf(chunk));
      try {
        return { id, read: await readChunk(this.host.pool, facts, cursor, this.record.batchSize, id) };
      } catch (error) {
        windows.forget(id);
        throw error;
      }
    });
    if (!attempt) return undefined;
    const { id, read } = attempt;
    chunk.id = id;
    const ticket: ReadTicket = { settled: () => this.settled(chunk) };
    const rows: ReadRow[] = [];
    for (const [i, values] of read.rows.entries()) {
      if (i > 0 && i % DECODE_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
      const tuple: RawTuple = facts.relation.columns.map((_, c) => values.values[c] ?? null);
      const [change] = await this.decoder.decode({ tag: 'insert', relation: facts.relation, new: tuple });
      if (!change) continue;
      let filterError: string | undefined;
      try {
        const input = { op: 'read', old: null, new: change.new };
        if (trigger.route.filter && !trigger.route.filter.matches(input)) continue;
        if (filter && !filter.matches(input)) continue;
      } catch (error) {
        if (!(error instanceof FilterEvaluationError)) throw error;
        filterError = error.message;
      }
      const event = readEvent({
        triggerKey: trigger.route.key,
        source: eventSource(trigger.route.trigger),
        backfill: { name: this.name, ...(this.record.uid !== undefined ? { uid: this.record.uid } : {}) },
        table: facts,
        rowKey: change.rowKey,
        rowJson: change.newJson!,
        xmin: values.xmin,
        lsn: read.lowLsn,
        readAt: read.readAt,
        ...(filterError !== undefined ? { filterError } : {}),
        ticket,
      });
      rows.push({ key: change.rowKey, event });
    }
    chunk.window = new ChunkWindow(facts, read.snapshot, rows);
    chunk.rowsRead = read.rows.length;
    chunk.sendable = rows.length;
    chunk.lastKey = read.lastKey;
    this.host.observe?.rowsRead(this.name, read.rows.length);
    this.host.logger.debug({ backfill: this.name, chunk: id, from: cursor, to: read.lastKey, rows: read.rows.length, sendable: rows.length }, 'backfill chunk read');
    this.chunks.push(chunk);
    windows.provide(id, chunk.window, read.snapshot);
    return chunk;
  }

  private listenerOf(chunk: Chunk): Parameters<BackfillWindows['expect']>[1] {
    return {
      opened: () => {
        chunk.stage = 'open';
        this.kick();
      },
      stale: () => {
        chunk.stale = true;
        this.kick();
      },
      closed: () => {
        chunk.stage = 'feeding';
        this.kick();
      },
      handedOn: (count) => {
        this.inFlight += count;
        this.host.observe?.readsSent(this.name, count);
      },
    };
  }

  private settled(chunk: Chunk): void {
    chunk.settled += 1;
    this.inFlight -= 1;
    this.kick();
  }

  /**
   * Hands on the reads of closed chunks, oldest first, while the trigger takes them and the rate allows;
   * returns how long to wait before trying again (a settled read wakes the runner sooner).
   */
  private feed(trigger: ServedTrigger): number {
    const limit = Math.max(1, Math.floor(trigger.capacity / 2));
    const rate = this.record.rowsPerSecond;
    if (rate !== undefined) this.limiter ??= new TokenBucket(rate, Date.now());
    let fed = 0;
    for (const chunk of this.chunks) {
      if (chunk.stage !== 'feeding') break;
      while (chunk.window.pending > 0) {
        if (this.inFlight >= limit) return IDLE_MS;
        if (this.limiter && !this.limiter.take(Date.now())) return Math.max(1, this.limiter.waitMs(Date.now()));
        const row = chunk.window.first()!;
        const p = this.host.streamProgress();
        const placed = placeRead(row.event, { commitLsn: p, changeLsn: p, ordinal: this.host.windows.nextOrdinal() });
        const offered = trigger.offerRead(placed);
        if (offered === 'busy') return BUSY_MS;
        if (offered === 'blocked') {
          this.message = 'waiting: the trigger is not delivering directly now (its backlog is draining, or its function fails); live changes go first';
          return IDLE_MS;
        }
        chunk.window.remove(row.key);
        this.inFlight += 1;
        fed += 1;
      }
      // Every read handed on: the stream need not show it changes any more.
      if (chunk.window.pending === 0) this.host.windows.forget(chunk.id);
    }
    if (fed > 0) {
      this.message = undefined;
      this.host.observe?.readsSent(this.name, fed);
    }
    return IDLE_MS;
  }

  /** Records completed chunks in order; true when the backfill ended (cancelled meanwhile). */
  private async completeChunks(): Promise<boolean> {
    while (this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      if (chunk.stage !== 'feeding' || chunk.window.pending > 0 || chunk.settled < chunk.sendable) return false;
      this.host.windows.forget(chunk.id);
      this.host.logger.debug({ backfill: this.name, chunk: chunk.id, rows: chunk.rowsRead, to: chunk.lastKey }, 'backfill chunk complete');
      if (chunk.lastKey !== null) {
        const recorded = await this.withRetries(() => this.host.store.recordChunk(this.name, chunk.lastKey!, chunk.rowsRead, chunk.sendable, this.record.run));
        if (recorded === undefined) return true;
        if (!recorded) {
          this.halt();
          return true;
        }
        this.record = { ...this.record, cursor: chunk.lastKey, rowsRead: this.record.rowsRead + chunk.rowsRead, rowsSent: this.record.rowsSent + chunk.sendable };
      }
      this.chunks.shift();
    }
    return false;
  }

  private async finish(phase: 'Complete' | 'Failed', message: string | null): Promise<void> {
    const done = await this.withRetries(() => this.host.store.finish(this.name, phase, message, this.record.run)).catch(() => false);
    if (done) {
      this.record = { ...this.record, phase, message, finishedAt: new Date() };
      this.host.logger.info({ backfill: this.name, phase, rowsRead: this.record.rowsRead, rowsSent: this.record.rowsSent }, `backfill ${phase.toLowerCase()}`);
    }
    this.halt();
  }

  /** Drops chunks whose reads are not all handed on; they are read again from the durable cursor. */
  private abandonChunks(): void {
    for (const chunk of this.chunks.splice(0)) this.dropChunk(chunk);
  }

  private dropChunk(chunk: Chunk): void {
    chunk.window.clear();
    this.host.windows.forget(chunk.id);
  }

  private halt(final?: { phase: 'Cancelled'; message: string }): void {
    if (final) this.record = { ...this.record, phase: final.phase, message: final.message, finishedAt: this.record.finishedAt ?? new Date() };
    if (this.stopped) return;
    this.stopped = true;
    this.abandonChunks();
    this.kick();
  }

  private kick(): void {
    this.pause.wake();
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return this.pause.sleep(ms);
  }
}

/** The backfill's own filter does not compile. */
class BackfillFilterError extends BackfillRefusedError {}
