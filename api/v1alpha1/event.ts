/**
 * The event a function receives: one row change. The dispatcher builds it and the function runtime
 * parses it, both from this one definition.
 */

/** The header in which the dispatcher numbers delivery attempts of an event (or batch), from 1. */
export const ATTEMPT_HEADER = 'eventide-attempt';

/** A JSON value as Postgres's to_jsonb gives it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A row as a JSON object keyed by column name. */
export type Row = Record<string, JsonValue>;

/**
 * What happened to the row; `manual` is a row sent on request (`eventide invoke`), as it is now;
 * `read` is an existing row sent by a Backfill, as it is now.
 */
export type RowOperation = 'insert' | 'update' | 'delete' | 'truncate' | 'manual' | 'read';

/** The body of one event (`data` in CloudEvents terms). */
export interface RowChange {
  op: RowOperation;
  table: { schema: string; name: string };
  /** Previous row: for update/delete; all columns with REPLICA IDENTITY FULL, key columns otherwise. */
  old: Row | null;
  /** New row: for insert/update. */
  new: Row | null;
  /**
   * Columns whose values are TOASTed and unchanged by this update, so Postgres did not send them and
   * they are absent from `new` (filled from `old` instead when the table has REPLICA IDENTITY FULL).
   */
  unchangedToastColumns?: string[];
  /** Commit LSN of the transaction, "X/Y". */
  lsn: string;
  xid: number;
  /** Commit time, ISO 8601. */
  commitTime: string;
}

/** CloudEvents attributes eventide sets on every event. */
export interface EventAttributes {
  specversion: '1.0';
  id: string;
  source: string;
  type: `dev.eventide.row.${RowOperation}`;
  subject: string;
  time: string;
  datacontenttype: 'application/json';
}

/** A complete event: attributes plus body, as the structured and batch forms carry it. */
export interface EventideEvent extends EventAttributes {
  data: RowChange;
}

/** What a function may answer to a batch to say which items failed (as Lambda's partial batch response). */
export interface BatchResponse {
  failures: { id: string; reason?: string }[];
}

export const EVENT_TYPE_PREFIX = 'dev.eventide.row.';
