import type { Logger } from '../../common/logger.js';
import type { DecodedRowChange, StreamInterceptor, StreamPosition } from '../pipeline/changeIntake.js';
import type { PendingEvent } from '../pipeline/pendingEvent.js';
import { parseWatermark } from './chunkReader.js';
import type { ChunkWindow } from './chunkWindow.js';
import { placeRead } from './readEvents.js';
import { snapshotMissedAnyOf, type TxSnapshot } from './snapshot.js';

/** What a chunk's owner hears from the stream. */
export interface ChunkListener {
  /** The low watermark passed and the chunk holds: its window is open. */
  opened(): void;
  /**
   * The chunk cannot be used: a transaction that committed before its low watermark was not yet
   * visible to its snapshot (the commit was still being flushed), so its row may be older than a
   * change already handed on. Read the same rows again.
   */
  stale(): void;
  /** The high watermark passed: every later change is newer than the chunk. */
  closed(): void;
  /** Reads were handed on in front of a change. */
  handedOn(count: number): void;
}

interface OpenChunk {
  listener: ChunkListener;
  /** Settles when the chunk's rows are known (or its read failed: then undefined). */
  rows: Promise<{ window: ChunkWindow; snapshot: TxSnapshot } | undefined>;
  provide(value: { window: ChunkWindow; snapshot: TxSnapshot } | undefined): void;
  window?: ChunkWindow;
  state: 'expected' | 'open' | 'closed';
}

/** How many of the last committed transactions are remembered for the low watermark's check. */
const RECENT_COMMITS = 16_384;

/**
 * The backfill chunks the stream must know about, keyed by chunk id: the stream's interceptor. At a
 * chunk's low watermark it waits for the chunk's rows (the read runs right after the watermark is
 * written, so the wait is short); between the watermarks and after, every change to the chunk's table
 * is shown to the chunk, which hands on the reads that must go first.
 */
export class BackfillWindows implements StreamInterceptor {
  private readonly chunks = new Map<string, OpenChunk>();
  /** Chunks whose window is open or closed (not merely expected): the ones changes are shown to. */
  private readonly watched = new Set<OpenChunk>();
  private readonly recent = new Int32Array(RECENT_COMMITS);
  private recentCount = 0;
  private sequence = 0;

  constructor(private readonly logger: Logger) {}

  get watching(): boolean {
    return this.watched.size > 0;
  }

  /** Announces a chunk before its low watermark is written. */
  expect(id: string, listener: ChunkListener): void {
    let provide!: OpenChunk['provide'];
    const rows = new Promise<{ window: ChunkWindow; snapshot: TxSnapshot } | undefined>((resolve) => (provide = resolve));
    this.chunks.set(id, { listener, rows, provide, state: 'expected' });
  }

  /** The chunk's rows, once read. */
  provide(id: string, window: ChunkWindow, snapshot: TxSnapshot): void {
    const chunk = this.chunks.get(id);
    if (!chunk) return;
    chunk.window = window;
    chunk.provide({ window, snapshot });
  }

  /** Forgets a chunk: done, abandoned, or its read failed (a low watermark already in the WAL is then ignored). */
  forget(id: string): void {
    const chunk = this.chunks.get(id);
    if (!chunk) return;
    chunk.provide(undefined);
    this.chunks.delete(id);
    this.watched.delete(chunk);
  }

  committed(xid: number): void {
    this.recent[this.recentCount % RECENT_COMMITS] = xid | 0;
    this.recentCount += 1;
  }

  logicalMessage(prefix: string, content: Uint8Array): void | Promise<void> {
    const mark = parseWatermark(prefix, content);
    if (!mark) return;
    const chunk = this.chunks.get(mark.chunk);
    // Another dispatcher's, an earlier run's, or a chunk given up: nothing to do.
    if (!chunk) return;
    if (mark.mark === 'low') return chunk.state === 'expected' ? this.open(mark.chunk, chunk) : undefined;
    if (chunk.state === 'open' && chunk.window) {
      chunk.state = 'closed';
      chunk.window.closeWindow();
      chunk.listener.closed();
    }
  }

  private async open(id: string, chunk: OpenChunk): Promise<void> {
    const rows = await chunk.rows;
    if (!rows || this.chunks.get(id) !== chunk) return;
    if (snapshotMissedAnyOf(rows.snapshot, this.recentXids())) {
      this.logger.debug({ chunk: id }, 'backfill chunk read under a snapshot older than a commit before its low watermark; reading it again');
      this.forget(id);
      chunk.listener.stale();
      return;
    }
    chunk.state = 'open';
    this.watched.add(chunk);
    chunk.listener.opened();
  }

  private *recentXids(): Iterable<number> {
    const count = Math.min(this.recentCount, RECENT_COMMITS);
    for (let i = 0; i < count; i++) yield this.recent[i]! >>> 0;
  }

  readsBefore(change: DecodedRowChange, xid: number, at: StreamPosition): PendingEvent[] {
    let out: PendingEvent[] | undefined;
    for (const chunk of this.watched) {
      const rows = chunk.window!.readsBefore(change, xid);
      if (rows.length === 0) continue;
      out ??= [];
      // Just before the change: after every earlier record of the stream, so the backlog keeps them in front of it.
      for (const row of rows) out.push(placeRead(row.event, { commitLsn: at.commitLsn, changeLsn: at.changeLsn - 1n, ordinal: this.nextOrdinal() }));
      chunk.listener.handedOn(rows.length);
    }
    return out ?? [];
  }

  /** A distinct ordinal for each read placed at one stream position. */
  nextOrdinal(): number {
    this.sequence = (this.sequence + 1) & 0x7fffffff;
    return this.sequence;
  }
}
