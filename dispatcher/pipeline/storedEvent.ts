import type { EventAttributes, RowOperation } from '../../api/v1alpha1/index.js';
import type { Lsn } from '../lsn.js';
import type { PendingEvent } from './pendingEvent.js';

/** An event as a table keeps it: the structured CloudEvent's parts as JSON text (values with every digit). */
export interface StoredEventParts {
  trigger: string;
  attributesJson: string;
  dataJson: string;
  oldJson: string;
  newJson: string;
  orderingKey?: string;
  previousOrderingKey?: string | null;
  barrier?: boolean;
  filterError?: string | null;
  commitLsn?: Lsn;
  changeLsn?: Lsn;
  ordinal?: number;
}

/**
 * Rebuilds an event from its stored form (dead letters, the backlog), so it is sent exactly as the
 * trigger sends events today. It belongs to no transaction the slot tracks: settling it moves no watermark.
 */
export function eventFromStored(parts: StoredEventParts): PendingEvent {
  const attributes = JSON.parse(parts.attributesJson) as EventAttributes;
  const table = (JSON.parse(parts.dataJson) as { table?: { schema: string; name: string } } | null)?.table ?? { schema: '', name: '' };
  const commitLsn = parts.commitLsn ?? 0n;
  return {
    id: attributes.id,
    orderingKey: parts.orderingKey ?? attributes.subject,
    ...(parts.previousOrderingKey ? { previousOrderingKey: parts.previousOrderingKey } : {}),
    ...(parts.barrier ? { barrier: true } : {}),
    triggerKey: parts.trigger,
    attributes,
    dataJson: parts.dataJson,
    oldJson: parts.oldJson,
    newJson: parts.newJson,
    op: attributes.type.replace('dev.eventide.row.', '') as RowOperation,
    table,
    commitTimeMs: Date.parse(attributes.time),
    ...(parts.filterError ? { filterError: parts.filterError } : {}),
    txn: { commitLsn, endLsn: commitLsn, pending: 0, sealed: true },
    changeLsn: parts.changeLsn ?? 0n,
    ordinal: parts.ordinal ?? 0,
    bytes: parts.dataJson.length,
  };
}
