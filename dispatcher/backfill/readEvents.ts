import { createHash } from 'node:crypto';
import type { BacklogPosition } from '../backlog/store.js';
import { eventType } from '../delivery/eventAttributes.js';
import { flat } from '../flatText.js';
import { eventSubject, type PendingEvent, type ReadTicket, rowChangeBody, tableOf } from '../pipeline/pendingEvent.js';

/** One row a chunk read, as its trigger would send it. */
export interface ReadRow {
  /** Primary-key text as the decoder writes it in subjects and ordering keys. */
  key: string;
  /** The read event, placed in the stream only when it is handed on (see placeRead). */
  event: PendingEvent;
}

export interface ReadEventInput {
  triggerKey: string;
  /** The CloudEvents source of the trigger: `/eventide/<namespace>/<name>`. */
  source: string;
  backfill: { name: string; uid?: string };
  table: { schema: string; name: string };
  rowKey: string;
  /** The row as to_jsonb gives it, and as the filters see it. */
  rowJson: string;
  /** xmin of the row version read: with the key, it names the version, so a re-read of an unchanged row keeps its event id. */
  xmin: string;
  /** Where the chunk was read: the low watermark's LSN, "X/Y". */
  lsn: string;
  readAt: Date;
  filterError?: string;
  ticket: ReadTicket;
}

/**
 * The event id of a read: `read-` and a hash of the trigger, the backfill, the row's key and the xmin of
 * the version read. A chunk read again after a restart gives an unchanged row the same id (a function
 * deduplicates it); a row changed since then is a new version with a new id.
 */
export function readEventId(input: Pick<ReadEventInput, 'triggerKey' | 'backfill' | 'table' | 'rowKey' | 'xmin'>): string {
  const hash = createHash('sha256')
    .update([input.triggerKey, input.backfill.name, input.backfill.uid ?? '', input.table.schema, input.table.name, input.rowKey, input.xmin].join('\u0000'))
    .digest('hex');
  return flat(`read-${hash.slice(0, 32)}`);
}

/** The event of one row of a backfill: op `read`, the row as it is now as `new`. Pure. */
export function readEvent(input: ReadEventInput): PendingEvent {
  const { schema, name } = input.table;
  const subject = eventSubject(schema, name, input.rowKey);
  const id = readEventId(input);
  const time = input.readAt.toISOString();
  const xid = Number(BigInt(input.xmin) % (1n << 32n));
  const { dataJson, newJson } = rowChangeBody({ op: 'read', schema, table: name, oldJson: null, newJson: input.rowJson, lsn: input.lsn, xid, commitTime: time });
  return {
    id,
    orderingKey: subject,
    triggerKey: input.triggerKey,
    attributes: { specversion: '1.0', id, source: input.source, type: eventType('read'), subject, time, datacontenttype: 'application/json' },
    dataJson,
    oldJson: null,
    newJson,
    op: 'read',
    table: tableOf(schema, name),
    commitTimeMs: input.readAt.getTime(),
    ...(input.filterError !== undefined ? { filterError: input.filterError } : {}),
    txn: { commitLsn: 0n, endLsn: 0n, pending: 0, sealed: true },
    changeLsn: 0n,
    ordinal: 0,
    bytes: dataJson.length,
    readOf: input.ticket,
  };
}

/**
 * A read given its place in the stream, which is where its trigger's backlog keeps it if it is parked:
 * right before the change it must precede, or where the stream is when it is handed on.
 */
export function placeRead(event: PendingEvent, position: BacklogPosition): PendingEvent {
  return { ...event, txn: { commitLsn: position.commitLsn, endLsn: position.commitLsn, pending: 0, sealed: true }, changeLsn: position.changeLsn, ordinal: position.ordinal };
}
