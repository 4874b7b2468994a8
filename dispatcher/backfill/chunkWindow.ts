import type { ReadRow } from './readEvents.js';
import { snapshotSaw, type TxSnapshot } from './snapshot.js';

/** A change of the stream as a chunk judges it. */
export interface WindowChange {
  op: string;
  schema: string;
  table: string;
  rowKey: string;
  /** The key the row had before an update moved it. */
  previousRowKey?: string;
}

/**
 * Where a chunk is: `window` from its low watermark to its high one, when a change may or may not be in
 * the chunk's snapshot; `feeding` after the high watermark, when every change is newer than the chunk.
 */
export type ChunkStage = 'window' | 'feeding';

/**
 * The rows of one chunk not yet handed on, and the rule that keeps them consistent with live changes
 * (the watermark method of DBLog, made exact with the chunk's snapshot): a read is handed on before
 * any change to its row that the chunk's snapshot did not see, so a function never gets a row in a
 * state older than a change it already has; a change the snapshot saw is already in the row, and the
 * read goes after it. Every row of the chunk is sent as a read exactly once. Pure; no I/O.
 */
export class ChunkWindow {
  private stageValue: ChunkStage = 'window';
  /** Key → its read, in primary-key order (Map keeps insertion order). */
  private readonly rows = new Map<string, ReadRow>();

  constructor(
    readonly table: { schema: string; name: string },
    private readonly snapshot: TxSnapshot,
    rows: readonly ReadRow[],
  ) {
    for (const row of rows) this.rows.set(row.key, row);
  }

  get stage(): ChunkStage {
    return this.stageValue;
  }

  /** Reads not yet handed on. */
  get pending(): number {
    return this.rows.size;
  }

  /** The high watermark passed: from here on every change is one the snapshot did not see. */
  closeWindow(): void {
    this.stageValue = 'feeding';
  }

  /** The reads to hand on before `change` (of transaction `xid`), taken out of the chunk. */
  readsBefore(change: WindowChange, xid: number): ReadRow[] {
    if (this.rows.size === 0 || change.schema !== this.table.schema || change.table !== this.table.name) return [];
    if (this.stageValue === 'window' && snapshotSaw(this.snapshot, xid)) return [];
    if (change.op === 'truncate') return this.take(this.rows.size);
    const out: ReadRow[] = [];
    for (const key of change.previousRowKey === undefined ? [change.rowKey] : [change.previousRowKey, change.rowKey]) {
      const row = this.rows.get(key);
      if (row === undefined) continue;
      this.rows.delete(key);
      out.push(row);
    }
    return out;
  }

  /** Up to `max` reads, in key order, to hand on now (only once the window has closed). */
  take(max: number): ReadRow[] {
    const out: ReadRow[] = [];
    for (const [key, row] of this.rows) {
      if (out.length >= max) break;
      this.rows.delete(key);
      out.push(row);
    }
    return out;
  }

  /** The first read not handed on, in key order. */
  first(): ReadRow | undefined {
    for (const row of this.rows.values()) return row;
    return undefined;
  }

  /** Takes a read out once it is handed on. */
  remove(key: string): void {
    this.rows.delete(key);
  }

  /** Drops what is not handed on (the backfill was cancelled, or the chunk is read again). */
  clear(): void {
    this.rows.clear();
  }
}
