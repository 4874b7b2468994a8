import type pg from 'pg';
import type { BackfillPhaseT } from '../../api/v1alpha1/index.js';
import { ensureEventideTables } from '../source/eventideSchema.js';
import { privilegeAdvice } from '../source/sourceSetup.js';
import { inTransaction } from '../source/transaction.js';

/** The channel on which the CLI announces a backfill it started or cancelled, so a dispatcher acts at once. */
export const BACKFILL_CHANNEL = 'eventide_backfill';

/** Where a backfill was asked for: a Backfill resource (manifests, or the operator's config), or `eventide backfill start`. */
export type BackfillOrigin = 'manifest' | 'cli';

/** What a backfill is asked to do. */
export interface BackfillRequest {
  /** `namespace/name`. */
  name: string;
  /** metadata.uid of the resource: a new object under an old name runs anew. */
  uid?: string;
  origin: BackfillOrigin;
  /** `namespace/name` of the EventTrigger. */
  trigger: string;
  filter?: string;
  batchSize: number;
  rowsPerSecond?: number;
}

/** A backfill as eventide.backfills keeps it: the request, and its durable progress. */
export interface BackfillRecord extends BackfillRequest {
  /** This run of the backfill: a row started afresh (a new object, a changed trigger or filter) gets a new one. */
  run: string;
  phase: BackfillPhaseT;
  /** Primary-key values (as Postgres prints them) of the last row of the last completed chunk. */
  cursor: string[] | null;
  rowsRead: number;
  rowsSent: number;
  rowsEstimate: number | null;
  message: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
}

/** Phases a backfill does not leave. */
export const FINISHED_PHASES: ReadonlySet<BackfillPhaseT> = new Set(['Complete', 'Failed', 'Cancelled']);

const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS eventide.backfills (
  name text PRIMARY KEY,
  run text NOT NULL DEFAULT gen_random_uuid()::text,
  uid text,
  origin text NOT NULL,
  trigger text NOT NULL,
  filter text,
  batch_size integer NOT NULL,
  rows_per_second integer,
  phase text NOT NULL DEFAULT 'Pending',
  cursor text[],
  rows_read bigint NOT NULL DEFAULT 0,
  rows_sent bigint NOT NULL DEFAULT 0,
  rows_estimate bigint,
  message text,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
`;

const COLUMNS = `name, run, uid, origin, trigger, filter, batch_size, rows_per_second, phase, cursor, rows_read::text AS rows_read, rows_sent::text AS rows_sent,
  rows_estimate::text AS rows_estimate, message, created_at, started_at, finished_at, updated_at`;

interface Row {
  name: string;
  run: string;
  uid: string | null;
  origin: BackfillOrigin;
  trigger: string;
  filter: string | null;
  batch_size: number;
  rows_per_second: number | null;
  phase: BackfillPhaseT;
  cursor: string[] | null;
  rows_read: string;
  rows_sent: string;
  rows_estimate: string | null;
  message: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

function toRecord(r: Row): BackfillRecord {
  return {
    name: r.name,
    run: r.run,
    ...(r.uid !== null ? { uid: r.uid } : {}),
    origin: r.origin,
    trigger: r.trigger,
    ...(r.filter !== null ? { filter: r.filter } : {}),
    batchSize: r.batch_size,
    ...(r.rows_per_second !== null ? { rowsPerSecond: r.rows_per_second } : {}),
    phase: r.phase,
    cursor: r.cursor,
    rowsRead: Number(r.rows_read),
    rowsSent: Number(r.rows_sent),
    rowsEstimate: r.rows_estimate === null ? null : Number(r.rows_estimate),
    message: r.message,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    updatedAt: r.updated_at,
  };
}

/**
 * eventide.backfills in the source database: every backfill's request and durable progress. It is
 * the truth a restarted dispatcher resumes from, what `eventide backfill status` reads, and how the
 * CLI hands a backfill to the dispatcher (a row, then a notification on BACKFILL_CHANNEL).
 */
export class BackfillStore {
  constructor(private readonly pool: pg.Pool) {}

  async ensureSchema(): Promise<void> {
    const { rows } = await this.pool.query<{ present: boolean }>("SELECT to_regclass('eventide.backfills') IS NOT NULL AS present");
    if (!rows[0]?.present) await ensureEventideTables(this.pool, SCHEMA_SQL, privilegeAdvice.backfills);
  }

  async list(): Promise<BackfillRecord[]> {
    const { rows } = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM eventide.backfills ORDER BY created_at, name`);
    return rows.map(toRecord);
  }

  async get(name: string): Promise<BackfillRecord | undefined> {
    const { rows } = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM eventide.backfills WHERE name = $1`, [name]);
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  /** Adds a new backfill; false when one of that name exists already (it is left as it is). */
  async create(request: BackfillRequest): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `INSERT INTO eventide.backfills (name, uid, origin, trigger, filter, batch_size, rows_per_second) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (name) DO NOTHING`,
      [request.name, request.uid ?? null, request.origin, request.trigger, request.filter ?? null, request.batchSize, request.rowsPerSecond ?? null],
    );
    return rowCount === 1;
  }

  /**
   * Makes the table hold a Backfill resource: added when absent; started afresh (a new run) when the row
   * belongs to another object of the same name (another uid) or asks for other rows (another trigger or
   * filter); a changed rate or batch size applies from the next chunk. Progress and the phase of the
   * same request are left alone (a finished one stays finished).
   */
  async upsertResource(request: BackfillRequest): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ uid: string | null; origin: BackfillOrigin; trigger: string; filter: string | null }>(
        'SELECT uid, origin, trigger, filter FROM eventide.backfills WHERE name = $1 FOR UPDATE',
        [request.name],
      );
      const existing = rows[0];
      const sameRequest = existing && existing.uid === (request.uid ?? null) && existing.origin === 'manifest' && existing.trigger === request.trigger && existing.filter === (request.filter ?? null);
      if (existing && !sameRequest) {
        await client.query('DELETE FROM eventide.backfills WHERE name = $1', [request.name]);
      }
      await client.query(
        `INSERT INTO eventide.backfills (name, uid, origin, trigger, filter, batch_size, rows_per_second) VALUES ($1, $2, 'manifest', $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET batch_size = EXCLUDED.batch_size, rows_per_second = EXCLUDED.rows_per_second
           WHERE (eventide.backfills.batch_size, eventide.backfills.rows_per_second) IS DISTINCT FROM (EXCLUDED.batch_size, EXCLUDED.rows_per_second)`,
        [request.name, request.uid ?? null, request.trigger, request.filter ?? null, request.batchSize, request.rowsPerSecond ?? null],
      );
    });
  }

  /** Cancels a backfill that has not finished; returns the record as it is now (undefined when there is none). */
  async cancel(name: string, message = 'cancelled'): Promise<BackfillRecord | undefined> {
    await this.pool.query(`UPDATE eventide.backfills SET phase = 'Cancelled', message = $2, finished_at = now(), updated_at = now() WHERE name = $1 AND phase IN ('Pending', 'Running')`, [
      name,
      message,
    ]);
    return this.get(name);
  }

  /**
   * Marks the backfill running (keeping its first start time); false when it was cancelled meanwhile.
   * With `run`, only that run of it: a runner never writes into a run started afresh since.
   */
  async start(name: string, rowsEstimate: number, run?: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE eventide.backfills SET phase = 'Running', started_at = coalesce(started_at, now()), rows_estimate = coalesce(rows_estimate, $2),
              message = NULL, updated_at = now()
        WHERE name = $1 AND phase IN ('Pending', 'Running') AND ($3::text IS NULL OR run = $3)`,
      [name, rowsEstimate, run ?? null],
    );
    return rowCount === 1;
  }

  /** Records a completed chunk: the cursor moves past it. False when the backfill is no longer running (cancelled). */
  async recordChunk(name: string, cursor: string[], rowsRead: number, rowsSent: number, run?: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE eventide.backfills SET cursor = $2, rows_read = rows_read + $3, rows_sent = rows_sent + $4, updated_at = now()
        WHERE name = $1 AND phase = 'Running' AND ($5::text IS NULL OR run = $5)`,
      [name, cursor, rowsRead, rowsSent, run ?? null],
    );
    return rowCount === 1;
  }

  /** Ends a running or pending backfill as Complete or Failed. */
  async finish(name: string, phase: 'Complete' | 'Failed', message: string | null, run?: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE eventide.backfills SET phase = $2, message = $3, finished_at = now(), updated_at = now()
        WHERE name = $1 AND phase IN ('Pending', 'Running') AND ($4::text IS NULL OR run = $4)`,
      [name, phase, message, run ?? null],
    );
    return rowCount === 1;
  }

  /** Says what an unfinished backfill waits for (null: nothing). */
  async setMessage(name: string, message: string | null): Promise<void> {
    await this.pool.query(`UPDATE eventide.backfills SET message = $2, updated_at = now() WHERE name = $1 AND phase IN ('Pending', 'Running') AND message IS DISTINCT FROM $2`, [name, message]);
  }

  /** Forgets a finished backfill (its name can be used again). */
  async remove(name: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(`DELETE FROM eventide.backfills WHERE name = $1`, [name]);
    return rowCount === 1;
  }
}
