import type { EventAttributes, RowOperation } from '../../api/v1alpha1/index.js';
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
  readonly table: { schema: string; name: string };
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

/** Schema → table → the body's "table" JSON, serialised once per table. */
const tableJson = new Map<string, Map<string, string>>();

/** Serialises a RowChange body from pre-serialised rows (JSON text) without re-encoding their values. */
export function rowChangeJson(change: {
  op: RowOperation;
  schema: string;
  table: string;
  oldJson: string | null;
  newJson: string | null;
  unchangedToastColumns?: readonly string[];
  lsn: string;
  xid: number;
  commitTime: string;
}): string {
  const toast = change.unchangedToastColumns?.length ? `,"unchangedToastColumns":${JSON.stringify(change.unchangedToastColumns)}` : '';
  let tables = tableJson.get(change.schema);
  if (tables === undefined) tableJson.set(change.schema, (tables = new Map()));
  let table = tables.get(change.table);
  if (table === undefined) {
    table = JSON.stringify({ schema: change.schema, name: change.table });
    if (tables.size < 10_000) tables.set(change.table, table);
  }
  return (
    `{"op":"${change.op}","table":${table},` +
    `"old":${change.oldJson ?? 'null'},"new":${change.newJson ?? 'null'}${toast},` +
    `"lsn":"${change.lsn}","xid":${change.xid},"commitTime":"${change.commitTime}"}`
  );
}
