import type pg from 'pg';
import { EventideError } from '../../common/errors.js';
import type { Relation } from '../decode/textPgoutputPlugin.js';
import { quoteIdent } from '../source/sourceSetup.js';
import { parseSnapshot, type TxSnapshot } from './snapshot.js';

/** The prefix of eventide's logical messages (pg_logical_emit_message): a backfill chunk's watermarks. */
export const WATERMARK_PREFIX = 'eventide.backfill';

/** A low or high watermark, as written into the WAL and read back from the stream. */
export interface Watermark {
  chunk: string;
  mark: 'low' | 'high';
}

/** A table a backfill cannot read, and why (no primary key, gone): the backfill fails with this message. */
export class BackfillRefusedError extends EventideError {
  override readonly code = 'EVENTIDE_BACKFILL_REFUSED';
  override readonly name = 'BackfillRefusedError';
}

/** What reading a table in chunks needs to know about it. */
export interface TableFacts {
  schema: string;
  name: string;
  /**
   * The columns as pgoutput describes them (not dropped, not generated, in attribute order), so a read
   * row is decoded by the same code, into the same JSON, as a live one.
   */
  relation: Relation;
  /** Primary-key columns, with their SQL types for the cursor's comparison. */
  key: { name: string; type: string }[];
  /** Rows now: counted when few, else the planner's estimate. */
  rowsEstimate: number;
}

/** Tables up to this many rows (by the planner's estimate) are counted exactly for the progress figure. */
const COUNT_EXACTLY_BELOW = 2_000_000;

/** Reads what a backfill needs to know of its table; refuses a table that is missing or has no primary key. */
export async function readTableFacts(pool: pg.Pool, table: { schema: string; name: string }): Promise<TableFacts> {
  const qualified = `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
  const { rows: found } = await pool.query<{ oid: string | null; reltuples: number | null; relreplident: string | null }>(
    'SELECT c.oid::text AS oid, c.reltuples::float8 AS reltuples, c.relreplident::text AS relreplident FROM pg_class c WHERE c.oid = to_regclass($1)',
    [qualified],
  );
  const oid = found[0]?.oid;
  if (!oid) throw new BackfillRefusedError(`table ${table.schema}.${table.name} does not exist`);
  const { rows: columns } = await pool.query<{ name: string; type_oid: number; type_mod: number; is_key: boolean }>(
    `SELECT a.attname AS name, a.atttypid::int AS type_oid, a.atttypmod AS type_mod, false AS is_key
       FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum`,
    [oid],
  );
  const { rows: key } = await pool.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [oid],
  );
  if (key.length === 0) {
    throw new BackfillRefusedError(
      `table ${table.schema}.${table.name} has no primary key: a backfill reads a table in primary-key order, chunk by chunk, and needs the key to ` +
        `tell which live change touches which row it read; add one (ALTER TABLE ${qualified} ADD PRIMARY KEY (...))`,
    );
  }
  let rowsEstimate = Math.max(0, Math.round(found[0]!.reltuples ?? -1));
  if ((found[0]!.reltuples ?? -1) < 0 || rowsEstimate < COUNT_EXACTLY_BELOW) {
    const { rows } = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${qualified}`);
    rowsEstimate = Number(rows[0]!.n);
  }
  const keyNames = new Set(key.map((k) => k.name));
  const identity = found[0]!.relreplident;
  const relation: Relation = {
    tag: 'relation',
    relationOid: Number(oid),
    schema: table.schema,
    name: table.name,
    replicaIdentity: identity === 'f' ? 'full' : identity === 'n' ? 'nothing' : identity === 'i' ? 'index' : 'default',
    columns: columns.map((c) => ({ name: c.name, flags: keyNames.has(c.name) ? 1 : 0, typeOid: c.type_oid, typeMod: c.type_mod })),
    keyColumns: key.map((k) => k.name),
  };
  return { schema: table.schema, name: table.name, relation, key, rowsEstimate };
}

/** One chunk as read: its rows (every column as Postgres prints it), the xmin of each, and the snapshot it was read under. */
export interface ChunkRead {
  snapshot: TxSnapshot;
  /** Where the low watermark went in the WAL, "X/Y". */
  lowLsn: string;
  readAt: Date;
  rows: { values: (string | null)[]; xmin: string }[];
  /** The key of the last row, as Postgres prints it: the cursor once the chunk is complete. */
  lastKey: string[] | null;
}

/** The chunk query: the next `limit` rows after the cursor, in key order, every column as text. Pure. */
export function chunkQuery(facts: TableFacts, hasCursor: boolean): string {
  const qualified = `${quoteIdent(facts.schema)}.${quoteIdent(facts.name)}`;
  const columns = facts.relation.columns.map((c) => `t.${quoteIdent(c.name)}`).join(', ');
  const keys = facts.key.map((k) => `t.${quoteIdent(k.name)}`);
  const after = hasCursor ? `WHERE (${keys.join(', ')}) > (${facts.key.map((k, i) => `$${i + 2}::${k.type}`).join(', ')})` : '';
  return `SELECT ${columns}, t.xmin::text FROM ${qualified} t ${after} ORDER BY ${keys.join(', ')} LIMIT $1`;
}

const AS_TEXT = { getTypeParser: () => (value: string) => value };

/**
 * Writes a watermark into the WAL as a non-transactional message (decoded where it is written, not at a
 * commit) and returns its LSN. The walsender sends only flushed WAL, and PostgreSQL 15 does not flush such
 * a message: the statement also takes an xid, so its own (implicit) commit flushes the WAL up to the
 * message, and the watermark reaches the stream now rather than at someone else's next commit. It changes
 * no table, so pgoutput sends nothing for the transaction. One round trip.
 */
async function emitWatermark(client: pg.ClientBase, mark: Watermark): Promise<string> {
  const { rows } = await client.query<{ lsn: string }>('SELECT pg_current_xact_id(), pg_logical_emit_message(false, $1, $2)::text AS lsn', [WATERMARK_PREFIX, JSON.stringify(mark)]);
  return rows[0]!.lsn;
}

/**
 * Reads one chunk between two watermarks: the low one, then the rows under a snapshot taken after it,
 * then the high one. Holds no lock on the table (a plain read); the chunk's own transaction is
 * read-only and short (a statement timeout bounds it).
 */
export async function readChunk(pool: pg.Pool, facts: TableFacts, cursor: string[] | null, limit: number, chunkId: string): Promise<ChunkRead> {
  const client = await pool.connect();
  let open = false;
  try {
    const lowLsn = await emitWatermark(client, { chunk: chunkId, mark: 'low' });
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = '60s'; SET LOCAL lock_timeout = '10s'");
    open = true;
    // The first statement takes the transaction's snapshot; the chunk is read under the same one.
    const { rows: snap } = await client.query<{ snapshot: string; read_at: Date }>('SELECT pg_current_snapshot()::text AS snapshot, now() AS read_at');
    const result = await client.query<(string | null)[]>({
      text: chunkQuery(facts, cursor !== null),
      values: [limit, ...(cursor ?? [])],
      rowMode: 'array',
      types: AS_TEXT,
    });
    await client.query('COMMIT');
    open = false;
    await emitWatermark(client, { chunk: chunkId, mark: 'high' });
    const width = facts.relation.columns.length;
    const keyIndexes = facts.key.map((k) => facts.relation.columns.findIndex((c) => c.name === k.name));
    const rows = result.rows.map((r) => ({ values: r.slice(0, width), xmin: r[width] as string }));
    const last = rows.at(-1);
    return {
      snapshot: parseSnapshot(snap[0]!.snapshot),
      lowLsn,
      readAt: snap[0]!.read_at,
      rows,
      lastKey: last ? keyIndexes.map((i) => last.values[i] ?? '') : null,
    };
  } finally {
    if (open) await client.query('ROLLBACK').catch(() => undefined);
    client.release();
  }
}

/** Reads a watermark from a logical message; undefined for anyone else's message. */
export function parseWatermark(prefix: string, content: Uint8Array): Watermark | undefined {
  if (prefix !== WATERMARK_PREFIX) return undefined;
  try {
    const value = JSON.parse(Buffer.from(content).toString('utf8')) as Partial<Watermark>;
    if (typeof value.chunk === 'string' && (value.mark === 'low' || value.mark === 'high')) return { chunk: value.chunk, mark: value.mark };
  } catch {
    // Not ours after all.
  }
  return undefined;
}
