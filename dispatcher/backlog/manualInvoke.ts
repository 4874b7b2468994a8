import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { EventTriggerResource } from '../../api/v1alpha1/index.js';
import { resourceKey } from '../../api/v1alpha1/index.js';
import { eventSource, eventType } from '../delivery/eventAttributes.js';
import { parseLsn } from '../lsn.js';
import { eventSubject, type PendingEvent, rowChangeBody, tableOf } from '../pipeline/pendingEvent.js';
import { SettingsError } from '../settings.js';
import { quoteIdent } from '../source/sourceSetup.js';

/** The row a manual invocation sends, read as the dispatcher would decode it (to_jsonb). */
export interface InvokedRow {
  rowJson: string;
  /** Key column values as text, joined as the dispatcher joins them for the subject and ordering key. */
  rowKey: string;
  /** The server's WAL position when the row was read: the event takes its place in the stream there. */
  walLsn: string;
  xid: number;
}

/**
 * Reads the one row that `match` (column → value, compared as text) names, with its key. Refuses a
 * match of no row or of several, naming the table and the key columns to use.
 */
export async function readInvokedRow(client: pg.ClientBase, table: { schema: string; name: string }, match: ReadonlyMap<string, string>): Promise<InvokedRow> {
  const qualified = `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
  const exists = await client.query<{ oid: string | null }>('SELECT to_regclass($1)::oid::text AS oid', [qualified]);
  const oid = exists.rows[0]?.oid;
  if (!oid) throw new SettingsError(`table ${table.schema}.${table.name} does not exist`);
  const { rows: keyRows } = await client.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [oid],
  );
  const keyColumns = keyRows.map((r) => r.name);
  const { rows: columnRows } = await client.query<{ name: string }>('SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped', [oid]);
  const columns = new Set(columnRows.map((r) => r.name));
  for (const column of match.keys()) {
    if (!columns.has(column)) throw new SettingsError(`--key ${column}: table ${table.schema}.${table.name} has no column "${column}"`);
  }
  const conditions = [...match.keys()].map((column, i) => `${quoteIdent(column)}::text = $${i + 1}`);
  const keyText = keyColumns.length ? keyColumns.map((k) => `t.${quoteIdent(k)}::text`).join(` || ',' || `) : `''`;
  const { rows } = await client.query<{ row: string; key: string; lsn: string; xid: string }>(
    `SELECT to_jsonb(t)::text AS row, ${keyText} AS key, pg_current_wal_lsn()::text AS lsn, txid_current()::text AS xid
       FROM ${qualified} t WHERE ${conditions.join(' AND ')} LIMIT 2`,
    [...match.values()],
  );
  const keyHint = keyColumns.length ? `name its key: ${keyColumns.map((k) => `--key ${k}=<value>`).join(' ')}` : 'name columns that identify one row';
  if (rows.length === 0) throw new SettingsError(`no row of ${table.schema}.${table.name} has ${describeMatch(match)}`);
  if (rows.length > 1) throw new SettingsError(`more than one row of ${table.schema}.${table.name} has ${describeMatch(match)}; ${keyHint}`);
  const row = rows[0]!;
  return { rowJson: row.row, rowKey: row.key, walLsn: row.lsn, xid: Number(row.xid) };
}

function describeMatch(match: ReadonlyMap<string, string>): string {
  return [...match].map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(' and ');
}

/**
 * The event of a manual invocation (Hasura's "invoke"): op `manual`, the row's current state as
 * `new`, a fresh id (each invocation is its own event), placed in the stream where the row was read,
 * so it goes behind the row's earlier changes. Pure.
 */
export function manualEvent(trigger: EventTriggerResource, row: InvokedRow, now: Date): PendingEvent {
  const { schema, name } = trigger.spec.table;
  const subject = eventSubject(schema, name, row.rowKey);
  const id = `manual-${randomUUID()}`;
  const lsn = parseLsn(row.walLsn);
  const time = now.toISOString();
  const { dataJson, newJson } = rowChangeBody({ op: 'manual', schema, table: name, oldJson: null, newJson: row.rowJson, lsn: row.walLsn, xid: row.xid, commitTime: time });
  return {
    id,
    orderingKey: subject,
    triggerKey: resourceKey(trigger.metadata),
    attributes: {
      specversion: '1.0',
      id,
      source: eventSource(trigger),
      type: eventType('manual'),
      subject,
      time,
      datacontenttype: 'application/json',
    },
    dataJson,
    oldJson: null,
    newJson,
    op: 'manual',
    table: tableOf(schema, name),
    commitTimeMs: now.getTime(),
    txn: { commitLsn: lsn, endLsn: lsn, pending: 0, sealed: true },
    changeLsn: lsn,
    ordinal: 0,
    bytes: dataJson.length,
  };
}
