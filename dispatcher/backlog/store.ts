import type pg from 'pg';
import type { Lsn } from '../lsn.js';
import type { PendingEvent } from '../pipeline/pendingEvent.js';
import { eventFromStored } from '../pipeline/storedEvent.js';
import { ensureEventideTables } from '../source/eventideSchema.js';
import { privilegeAdvice, withPrivilegeAdvice } from '../source/sourceSetup.js';
import { inTransaction } from '../source/transaction.js';

/** Why an event went to the backlog instead of straight to its function. */
export type ParkReason = 'share-full' | 'retrying' | 'suspended' | 'backlog-ahead' | 'in-memory' | 'manual' | 'redeliver';

/** An event's place in the stream; the backlog delivers a trigger's events in this order (per key). */
export interface BacklogPosition {
  commitLsn: Lsn;
  changeLsn: Lsn;
  ordinal: number;
}

/** An event to park, with the delivery progress it has made so far. */
export interface ParkedEvent {
  event: PendingEvent;
  attempts: number;
  firstAttemptAt?: number;
  lastStatus?: number;
  lastError?: string;
  reason: ParkReason;
}

/** A backlog row as the drainer loads it. */
export interface BacklogRow {
  id: number;
  event: PendingEvent;
  attempts: number;
  firstAttemptAt?: number;
  position: BacklogPosition;
}

/** Delivery progress of a loaded row, written back so a restart neither forgets nor repeats it. */
export interface AttemptProgress {
  id: number;
  attempts: number;
  firstAttemptAt: number;
  lastStatus?: number;
  lastError?: string;
}

/** One trigger's backlog at a glance. */
export interface BacklogSummary {
  trigger: string;
  events: number;
  oldestParkedAt: Date | null;
  oldestCommitTime: Date | null;
  maxCommitLsn: Lsn;
}

/** The first waiting event of one key. */
export interface BacklogHead {
  id: number;
  orderingKey: string;
  eventId: string;
  waiting: number;
  attempts: number;
  reason: string;
  parkedAt: Date;
  lastError: string | null;
}

const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS eventide.backlog (
  id bigserial PRIMARY KEY,
  trigger text NOT NULL,
  event_id text NOT NULL,
  commit_lsn bigint NOT NULL,
  change_lsn bigint NOT NULL,
  ordinal integer NOT NULL,
  ordering_key text NOT NULL,
  previous_ordering_key text,
  barrier boolean NOT NULL DEFAULT false,
  attributes json NOT NULL,
  data json NOT NULL,
  filter_error text,
  attempts integer NOT NULL DEFAULT 0,
  first_attempt_at timestamptz,
  last_status integer,
  last_error text,
  reason text NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (trigger, event_id)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX IF NOT EXISTS backlog_stream_order ON eventide.backlog (trigger, commit_lsn, change_lsn, ordinal);
`;

// json, not jsonb: json keeps the text as written, so a drained event sends the bytes the live one would have.
const LOAD_COLUMNS = `id, trigger, event_id, commit_lsn::text AS commit_text, change_lsn::text AS change_text, ordinal, ordering_key, previous_ordering_key, barrier,
  attributes::text AS attributes, data::text AS data, coalesce(data->'old', 'null')::text AS old, coalesce(data->'new', 'null')::text AS new,
  filter_error, attempts, first_attempt_at`;

interface LoadedRow {
  id: string;
  trigger: string;
  event_id: string;
  commit_text: string;
  change_text: string;
  ordinal: number;
  ordering_key: string;
  previous_ordering_key: string | null;
  barrier: boolean;
  attributes: string;
  data: string;
  old: string;
  new: string;
  filter_error: string | null;
  attempts: number;
  first_attempt_at: Date | null;
}

function rowToBacklogRow(r: LoadedRow): BacklogRow {
  // Aliased apart from the columns: ORDER BY commit_lsn must sort by the bigint (the index), not by text.
  const position = { commitLsn: BigInt(r.commit_text), changeLsn: BigInt(r.change_text), ordinal: r.ordinal };
  const event = eventFromStored({
    trigger: r.trigger,
    attributesJson: r.attributes,
    dataJson: r.data,
    oldJson: r.old,
    newJson: r.new,
    orderingKey: r.ordering_key,
    previousOrderingKey: r.previous_ordering_key,
    barrier: r.barrier,
    filterError: r.filter_error,
    ...position,
  });
  return { id: Number(r.id), event, attempts: r.attempts, ...(r.first_attempt_at ? { firstAttemptAt: r.first_attempt_at.getTime() } : {}), position };
}

/**
 * Settings for the connections the dispatcher reads the backlog with. The drainer's query must walk
 * the stream-order index: a queue table filled in a burst has no statistics yet, and the planner then
 * guesses a few rows and prefers a bitmap scan and a sort of every waiting row (measured: 400 ms per
 * load of 500 rows from 20k, against 25 ms through the index).
 */
export const BACKLOG_CONNECTION_OPTIONS = '-c enable_bitmapscan=off -c enable_sort=off';

/**
 * The durable per-trigger backlog: eventide.backlog in the source database. Events wait here when
 * they cannot be delivered now; once a parked event is committed here the slot no longer holds its
 * WAL. Parking is idempotent on (trigger, event id): after a crash the same change parks once.
 */
export class BacklogStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Creates the table when absent, and checks the role may use it (a one-line error with the grant otherwise). */
  async ensureSchema(): Promise<void> {
    // Only when absent: CREATE INDEX IF NOT EXISTS demands ownership even of a table whose index exists,
    // and an administrator may have made the table for this role with grants alone.
    const { rows: existing } = await this.pool.query<{ present: boolean }>("SELECT to_regclass('eventide.backlog') IS NOT NULL AS present");
    if (!existing[0]?.present) await ensureEventideTables(this.pool, SCHEMA_SQL, privilegeAdvice.backlog);
    const client = await this.pool.connect();
    try {
      await withPrivilegeAdvice(
        client,
        async () => {
          const { rows } = await client.query<{ table_ok: boolean; sequence_ok: boolean }>(
            `SELECT has_table_privilege('eventide.backlog', 'SELECT, INSERT, UPDATE, DELETE') AND has_schema_privilege('eventide', 'USAGE') AS table_ok,
                    has_sequence_privilege('eventide.backlog_id_seq', 'USAGE') AS sequence_ok`,
          );
          if (!rows[0]?.table_ok || !rows[0]?.sequence_ok) throw Object.assign(new Error('permission denied for table backlog'), { code: '42501' });
        },
        privilegeAdvice.backlog,
      );
    } finally {
      client.release();
    }
  }

  /** Writes events in one statement; an event already parked (same trigger and id) is left as it is. */
  async park(entries: readonly ParkedEvent[]): Promise<void> {
    if (entries.length === 0) return;
    const columns: unknown[][] = Array.from({ length: 16 }, () => []);
    for (const { event, attempts, firstAttemptAt, lastStatus, lastError, reason } of entries) {
      const values = [
        event.triggerKey,
        event.id,
        event.txn.commitLsn.toString(),
        event.changeLsn.toString(),
        event.ordinal,
        event.orderingKey,
        event.previousOrderingKey ?? null,
        event.barrier === true,
        JSON.stringify(event.attributes),
        event.dataJson,
        event.filterError ?? null,
        attempts,
        firstAttemptAt === undefined ? null : new Date(firstAttemptAt),
        lastStatus ?? null,
        lastError ?? null,
        reason,
      ];
      for (const [i, v] of values.entries()) columns[i]!.push(v);
    }
    await this.pool.query(
      `INSERT INTO eventide.backlog (trigger, event_id, commit_lsn, change_lsn, ordinal, ordering_key, previous_ordering_key, barrier, attributes, data, filter_error,
                                     attempts, first_attempt_at, last_status, last_error, reason)
       SELECT t, e, c, l, o, k, pk, b, at::json, d::json, fe, a, fa, ls, le, r
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::text[], $8::boolean[], $9::text[], $10::text[], $11::text[],
                     $12::int[], $13::timestamptz[], $14::int[], $15::text[], $16::text[]) AS u(t, e, c, l, o, k, pk, b, at, d, fe, a, fa, ls, le, r)
       ON CONFLICT (trigger, event_id) DO NOTHING`,
      columns,
    );
  }

  /**
   * The trigger's events after `after` in stream order, at most `limit`, committed no later than
   * `upTo` (the stream's progress: an event of an earlier commit may still be on its way to the backlog).
   */
  async load(trigger: string, after: BacklogPosition | undefined, limit: number, upTo: Lsn): Promise<BacklogRow[]> {
    const { rows } = after
      ? await this.pool.query<LoadedRow>(
          `SELECT ${LOAD_COLUMNS} FROM eventide.backlog
            WHERE trigger = $1 AND (commit_lsn, change_lsn, ordinal) > ($2::bigint, $3::bigint, $4::int) AND commit_lsn <= $6::bigint
            ORDER BY commit_lsn, change_lsn, ordinal LIMIT $5`,
          [trigger, after.commitLsn.toString(), after.changeLsn.toString(), after.ordinal, limit, upTo.toString()],
        )
      : await this.pool.query<LoadedRow>(`SELECT ${LOAD_COLUMNS} FROM eventide.backlog WHERE trigger = $1 AND commit_lsn <= $3::bigint ORDER BY commit_lsn, change_lsn, ordinal LIMIT $2`, [
          trigger,
          limit,
          upTo.toString(),
        ]);
    return rows.map(rowToBacklogRow);
  }

  /** Removes settled events (delivered or dead-lettered), many at once. */
  async remove(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.pool.query('DELETE FROM eventide.backlog WHERE id = ANY($1::bigint[])', [ids]);
  }

  /** Removes events by id (copies parked while the same event was being delivered from memory). */
  async removeEvents(trigger: string, eventIds: readonly string[]): Promise<void> {
    if (eventIds.length === 0) return;
    await this.pool.query('DELETE FROM eventide.backlog WHERE trigger = $1 AND event_id = ANY($2::text[])', [trigger, eventIds]);
  }

  /** Writes back attempts made on loaded events. */
  async recordProgress(updates: readonly AttemptProgress[]): Promise<void> {
    if (updates.length === 0) return;
    await this.pool.query(
      `UPDATE eventide.backlog b SET attempts = u.a, first_attempt_at = u.fa, last_status = u.ls, last_error = u.le
         FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::int[], $5::text[]) AS u(id, a, fa, ls, le)
        WHERE b.id = u.id`,
      [updates.map((u) => u.id), updates.map((u) => u.attempts), updates.map((u) => new Date(u.firstAttemptAt)), updates.map((u) => u.lastStatus ?? null), updates.map((u) => u.lastError ?? null)],
    );
  }

  /** Whether the trigger has events other than `excluding` (settled ones not yet removed). */
  async hasEvents(trigger: string, excluding: readonly number[]): Promise<boolean> {
    const { rows } = await this.pool.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM eventide.backlog WHERE trigger = $1 AND NOT (id = ANY($2::bigint[]))) AS any', [trigger, excluding]);
    return rows[0]?.any === true;
  }

  /** Per trigger: how many events wait, since when, and the last commit among them. */
  async summary(trigger?: string): Promise<BacklogSummary[]> {
    const { rows } = await this.pool.query<{ trigger: string; events: string; oldest_parked: Date | null; oldest_commit: string | null; max_commit: string }>(
      `SELECT trigger, count(*)::text AS events, min(parked_at) AS oldest_parked, min(attributes->>'time') AS oldest_commit, max(commit_lsn)::text AS max_commit
         FROM eventide.backlog ${trigger ? 'WHERE trigger = $1' : ''} GROUP BY trigger ORDER BY trigger`,
      trigger ? [trigger] : [],
    );
    return rows.map((r) => ({
      trigger: r.trigger,
      events: Number(r.events),
      oldestParkedAt: r.oldest_parked,
      oldestCommitTime: r.oldest_commit ? new Date(r.oldest_commit) : null,
      maxCommitLsn: BigInt(r.max_commit),
    }));
  }

  /** The first waiting event of each key of a trigger (the ones that hold the rest of their key back), oldest first. */
  async heads(trigger: string, limit: number): Promise<BacklogHead[]> {
    const { rows } = await this.pool.query<{ id: string; ordering_key: string; event_id: string; waiting: string; attempts: number; reason: string; parked_at: Date; last_error: string | null }>(
      `SELECT id, ordering_key, event_id, waiting::text AS waiting, attempts, reason, parked_at, last_error FROM (
         SELECT DISTINCT ON (ordering_key) id, ordering_key, event_id, count(*) OVER (PARTITION BY ordering_key) AS waiting, attempts, reason, parked_at, last_error,
                commit_lsn, change_lsn, ordinal
           FROM eventide.backlog WHERE trigger = $1 ORDER BY ordering_key, commit_lsn, change_lsn, ordinal) heads
        ORDER BY commit_lsn, change_lsn, ordinal LIMIT $2`,
      [trigger, limit],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      orderingKey: r.ordering_key,
      eventId: r.event_id,
      waiting: Number(r.waiting),
      attempts: r.attempts,
      reason: r.reason,
      parkedAt: r.parked_at,
      lastError: r.last_error,
    }));
  }

  /**
   * Gives backlog events a fresh set of retries: each is written again at its place in the stream
   * with its attempts cleared (a new row id, which a running dispatcher notices), so order per key holds.
   * Returns how many were requeued.
   */
  async redeliver(trigger: string, ids: readonly number[] | 'all'): Promise<number> {
    return inTransaction(this.pool, async (client) => {
      const { rowCount } = await client.query(
        `WITH moved AS (
           DELETE FROM eventide.backlog WHERE trigger = $1 ${ids === 'all' ? '' : 'AND id = ANY($2::bigint[])'}
           RETURNING trigger, event_id, commit_lsn, change_lsn, ordinal, ordering_key, previous_ordering_key, barrier, attributes, data, filter_error)
         INSERT INTO eventide.backlog (trigger, event_id, commit_lsn, change_lsn, ordinal, ordering_key, previous_ordering_key, barrier, attributes, data, filter_error, reason)
         SELECT trigger, event_id, commit_lsn, change_lsn, ordinal, ordering_key, previous_ordering_key, barrier, attributes, data, filter_error, 'redeliver' FROM moved`,
        ids === 'all' ? [trigger] : [trigger, ids],
      );
      return rowCount ?? 0;
    });
  }
}
