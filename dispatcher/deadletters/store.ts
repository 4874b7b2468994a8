import type pg from 'pg';
import { ensureEventideTables } from '../source/eventideSchema.js';
import { privilegeAdvice } from '../source/sourceSetup.js';

/** One event that could not be delivered. */
export interface DeadLetter {
  trigger: string;
  eventId: string;
  /** The structured CloudEvent JSON (attributes and data). */
  eventJson: string;
  attempts: number;
  lastStatus: number | null;
  lastError: string;
  reason: string;
  firstAttemptAt: Date;
}

/** Which dead letters to list: pending ones unless includeReplayed (or an id) is given. */
export interface DeadLetterFilter {
  trigger?: string;
  id?: number;
  includeReplayed?: boolean;
}

/** A dead letter as stored. */
export interface StoredDeadLetter extends DeadLetter {
  id: number;
  /** Parts of the stored event as JSON text, so a replay sends values with every digit. */
  attributesJson: string;
  dataJson: string;
  oldJson: string;
  newJson: string;
  deadLetteredAt: Date;
  replayedAt: Date | null;
  replayCount: number;
}

const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS eventide.dead_letters (
  id bigserial PRIMARY KEY,
  trigger text NOT NULL,
  event_id text NOT NULL,
  event json NOT NULL,
  attempts integer NOT NULL,
  last_status integer,
  last_error text NOT NULL,
  reason text NOT NULL,
  first_attempt_at timestamptz NOT NULL,
  dead_lettered_at timestamptz NOT NULL DEFAULT now(),
  replayed_at timestamptz,
  replay_count integer NOT NULL DEFAULT 0,
  UNIQUE (trigger, event_id)
);
CREATE INDEX IF NOT EXISTS dead_letters_pending ON eventide.dead_letters (trigger, id) WHERE replayed_at IS NULL;
`;

/**
 * The dead-letter table (eventide.dead_letters in the source database, or a configured one). The
 * event is json, not jsonb: json keeps the text as sent (numbers with every digit, keys in their
 * order), so a replay sends the same bytes as the original delivery (a table made when the column was
 * jsonb keeps working; its replays carry the same values in jsonb's key order). Recording is idempotent
 * on (trigger, event id): an event dead-lettered again after a crash updates its row instead of adding
 * a second one.
 */
export class DeadLetterStore {
  constructor(private readonly pool: pg.Pool) {}

  async ensureSchema(): Promise<void> {
    await ensureEventideTables(this.pool, SCHEMA_SQL, privilegeAdvice.deadLetters);
  }

  async record(letters: DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const values: unknown[] = [];
    const rows = letters.map((l, i) => {
      values.push(l.trigger, l.eventId, l.eventJson, l.attempts, l.lastStatus, l.lastError, l.reason, l.firstAttemptAt);
      const b = i * 8;
      return `($${b + 1}, $${b + 2}, $${b + 3}::json, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7}, $${b + 8})`;
    });
    await this.pool.query(
      `INSERT INTO eventide.dead_letters (trigger, event_id, event, attempts, last_status, last_error, reason, first_attempt_at)
       VALUES ${rows.join(', ')}
       ON CONFLICT (trigger, event_id) DO UPDATE SET
         attempts = EXCLUDED.attempts, last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error,
         reason = EXCLUDED.reason, dead_lettered_at = now(), replayed_at = NULL`,
      values,
    );
  }

  /** Dead letters matching the filter, oldest first, at most `limit` (1000) of them: page with `afterId`, or use pages(). */
  async list(filter: DeadLetterFilter & { afterId?: number; limit?: number } = {}): Promise<StoredDeadLetter[]> {
    const where: string[] = [];
    const values: unknown[] = [];
    if (filter.id !== undefined) where.push(`id = $${values.push(filter.id)}`);
    if (filter.afterId !== undefined) where.push(`id > $${values.push(filter.afterId)}`);
    if (filter.trigger !== undefined) where.push(`trigger = $${values.push(filter.trigger)}`);
    if (!filter.includeReplayed && filter.id === undefined) where.push('replayed_at IS NULL');
    const { rows } = await this.pool
      .query<{
        id: string;
        trigger: string;
        event_id: string;
        event: string;
        data: string;
        old: string;
        new: string;
        attempts: number;
        last_status: number | null;
        last_error: string;
        reason: string;
        first_attempt_at: Date;
        dead_lettered_at: Date;
        replayed_at: Date | null;
        replay_count: number;
      }>(
        `SELECT id, trigger, event_id, event::text AS event,
              coalesce(event->'data', 'null')::text AS data, coalesce(event->'data'->'old', 'null')::text AS old,
              coalesce(event->'data'->'new', 'null')::text AS new, attempts, last_status, last_error, reason, first_attempt_at, dead_lettered_at, replayed_at, replay_count
         FROM eventide.dead_letters ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT $${values.push(filter.limit ?? 1000)}`,
        values,
      )
      .catch((error: unknown) => {
        // No dispatcher has run against this database yet: no table, so no dead letters.
        if ((error as { code?: string }).code === '42P01') return { rows: [] };
        throw error;
      });
    return rows.map((r) => ({
      id: Number(r.id),
      trigger: r.trigger,
      eventId: r.event_id,
      eventJson: r.event,
      attributesJson: attributesJson(r.event),
      dataJson: r.data,
      oldJson: r.old,
      newJson: r.new,
      attempts: r.attempts,
      lastStatus: r.last_status,
      lastError: r.last_error,
      reason: r.reason,
      firstAttemptAt: r.first_attempt_at,
      deadLetteredAt: r.dead_lettered_at,
      replayedAt: r.replayed_at,
      replayCount: r.replay_count,
    }));
  }

  /** Every dead letter matching the filter, oldest first, a page at a time. */
  async *pages(filter: DeadLetterFilter = {}, pageSize = 500): AsyncGenerator<StoredDeadLetter[]> {
    let afterId = 0;
    for (;;) {
      const page = await this.list({ ...filter, afterId, limit: pageSize });
      if (page.length) yield page;
      if (page.length < pageSize) return;
      afterId = page[page.length - 1]!.id;
    }
  }

  /** Marks dead letters replayed; the rows stay as the record. */
  async markReplayed(ids: number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.pool.query('UPDATE eventide.dead_letters SET replayed_at = now(), replay_count = replay_count + 1 WHERE id = ANY($1::bigint[])', [ids]);
  }
}

/** The CloudEvent attributes of a stored event (all but data), in their stored order. */
function attributesJson(eventJson: string): string {
  const { data: _data, ...attributes } = JSON.parse(eventJson) as Record<string, unknown>;
  return JSON.stringify(attributes);
}
