import pg from 'pg';
import type { Logger } from '../../../common/logger.js';
import { type EventideEvent, PermanentError, type ServeHandle, serve } from '../../runtime/index.js';

/** One step of the order's journey: what it does inside the transaction that records the event. */
export type StepWork = (client: pg.PoolClient, order: OrderRow, ctx: { eventId: string; logger: Logger }) => Promise<void>;

/** The order columns the steps read. */
export interface OrderRow {
  id: number;
  customer: string;
  total: string;
  items: unknown;
}

/** The event arrived before its commit was visible to this session; a retry will see it. */
export class OrderNotVisibleYetError extends Error {
  readonly code = 'EVENTIDE_DEMO_NOT_VISIBLE_YET';
  override readonly name = 'OrderNotVisibleYetError';
}

/** A tidy error for a misconfigured function process. */
export class StepConfigError extends Error {
  readonly code = 'EVENTIDE_STEP_CONFIG';
  override readonly name = 'StepConfigError';
}

/**
 * Runs `work` exactly once per event id: the event id is recorded in the same transaction as the
 * work, so a redelivery (at-least-once) finds it and does nothing. Returns false for such a duplicate.
 */
export async function runOncePerEvent(pool: pg.Pool, functionName: string, event: EventideEvent, work: StepWork, logger: Logger): Promise<boolean> {
  const row = event.data.new as Partial<OrderRow> | null;
  if (!row || typeof row.id !== 'number') throw new PermanentError(`event ${event.id} carries no order id`);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const recorded = await client.query('INSERT INTO processed_events (function_name, event_id, order_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [functionName, event.id, row.id]);
    if (recorded.rowCount === 0) {
      await client.query('ROLLBACK');
      logger.info({ orderId: row.id }, 'duplicate delivery; already handled');
      return false;
    }
    // Postgres writes a commit to the WAL (and so to the dispatcher) a moment before other sessions
    // can see it. Lock the row, and if it is not visible yet, fail so the dispatcher retries shortly.
    const current = await client.query<OrderRow>('SELECT id, customer, total, items FROM orders WHERE id = $1 FOR UPDATE', [row.id]);
    if (current.rowCount === 0) throw new OrderNotVisibleYetError(`order ${row.id} is not visible yet; retry`);
    await work(client, { ...current.rows[0]!, id: row.id }, { eventId: event.id, logger });
    await client.query('COMMIT');
    return true;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** Starts a step as an HTTP function (the runtime) connected to the orders database from env DATABASE_URL. */
export async function serveStep(functionName: string, work: StepWork, options: { port?: number; databaseUrl?: string } = {}): Promise<ServeHandle & { pool: pg.Pool }> {
  const databaseUrl = options.databaseUrl ?? process.env.DATABASE_URL ?? process.env.url;
  if (!databaseUrl) throw new StepConfigError(`${functionName}: set DATABASE_URL to the orders database`);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 8 });
  pool.on('error', () => undefined);
  const handle = await serve(
    async (event, ctx) => {
      await runOncePerEvent(pool, functionName, event, work, ctx.logger);
    },
    options.port !== undefined ? { port: options.port } : {},
  );
  return {
    port: handle.port,
    pool,
    async close() {
      const drained = await handle.close();
      await pool.end();
      return drained;
    },
  };
}
