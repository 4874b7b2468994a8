import type { EventAttributes, RowOperation } from '../../api/v1alpha1/index.js';
import { flat } from '../flatText.js';
import type { Lsn } from '../lsn.js';
import type { TrackedTransaction } from './ackWatermark.js';
import type { LaneEvent } from './triggerLane.js';

/** An event between the stream and its settlement: what the lane schedules and the deliverer sends. */
export interface PendingEvent extends LaneEvent {
  /** namespace/name of the trigger. */
  readonly triggerKey: string;
  readonly attributes: EventAttributes;
  /** The RowChange body, already serialised: row values keep their exact to_jsonb form. */
  readonly dataJson: string;
  /** The rows alone (JSON text), for formats that lay the body out differently (hasura). */
  readonly oldJson: string | null;
  readonly newJson: string | null;
  readonly op: RowOperation;
  readonly table: { readonly schema: string; readonly name: string };
  readonly commitTimeMs: number;
  /** Set when the trigger's filter could not be evaluated: the event goes straight to the dead letters. */
  readonly filterError?: string;
  readonly txn: TrackedTransaction;
  /** With txn.commitLsn, the event's place in the stream: the order the backlog keeps. */
  readonly changeLsn: Lsn;
  readonly ordinal: number;
  readonly bytes: number;
  /** Set on an event loaded from the backlog: its row, removed once the event settles. */
  readonly backlogId?: number;
  /** Set on a backfill's read: told once the event is settled (it holds no transaction of the slot). */
  readonly readOf?: ReadTicket;
}

/** What a backfill's read carries to learn when it is settled: delivered, dead-lettered or durably parked. */
export interface ReadTicket {
  settled(): void;
}

/** A table as events name it, made once per table: every event of the table shares it. */
interface TableRef {
  readonly table: { readonly schema: string; readonly name: string };
  /** The body's "table" member, serialised. */
  readonly json: string;
}

/** Schema → table → its TableRef. */
const tables = new Map<string, Map<string, TableRef>>();

/** The table object events of `schema.name` carry (shared, not one per event). */
export function tableOf(schema: string, name: string): { readonly schema: string; readonly name: string } {
  return tableRef(schema, name).table;
}

function tableRef(schema: string, name: string): TableRef {
  let bySchema = tables.get(schema);
  if (bySchema === undefined) tables.set(schema, (bySchema = new Map()));
  let ref = bySchema.get(name);
  if (ref === undefined) {
    const table = { schema, name };
    ref = { table, json: JSON.stringify(table) };
    if (bySchema.size < 10_000) bySchema.set(name, ref);
  }
  return ref;
}

/**
 * The subject (and ordering key) of a row's events, `schema.table/key`, flat (see flat()): every event in
 * the window holds it.
 */
export function eventSubject(schema: string, table: string, rowKey: string): string {
  return flat(`${schema}.${table}/${rowKey}`);
}

/** A RowChange body, and its rows as views into it. */
export interface RowChangeBody {
  dataJson: string;
  oldJson: string | null;
  newJson: string | null;
}

/**
 * Serialises a RowChange body from pre-serialised rows (JSON text) without re-encoding their values.
 * The body is flat (see flat()), and the rows an event keeps beside it (for formats that lay the body out
 * differently) are slices of it rather than second copies: every event in the window holds both.
 */
export function rowChangeBody(change: {
  op: RowOperation;
  schema: string;
  table: string;
  oldJson: string | null;
  newJson: string | null;
  unchangedToastColumns?: readonly string[];
  lsn: string;
  xid: number;
  commitTime: string;
}): RowChangeBody {
  const toast = change.unchangedToastColumns?.length ? `,"unchangedToastColumns":${JSON.stringify(change.unchangedToastColumns)}` : '';
  const head = `{"op":"${change.op}","table":${tableRef(change.schema, change.table).json},"old":`;
  const old = change.oldJson ?? 'null';
  const dataJson = flat(`${head}${old},"new":${change.newJson ?? 'null'}${toast},"lsn":"${change.lsn}","xid":${change.xid},"commitTime":"${change.commitTime}"}`);
  const oldAt = head.length;
  const newAt = oldAt + old.length + ',"new":'.length;
  return {
    dataJson,
    oldJson: change.oldJson === null ? null : dataJson.substring(oldAt, oldAt + change.oldJson.length),
    newJson: change.newJson === null ? null : dataJson.substring(newAt, newAt + change.newJson.length),
  };
}
