import pg from 'pg';
import { redactUrl } from '../../common/logger.js';

/** Dropping a source's slot or publication failed; `code` is stable, the cause is the database's error. */
export class SlotDropError extends Error {
  readonly code = 'EVENTIDE_SLOT_DROP_FAILED';
  override readonly name = 'SlotDropError';
}

/** What dropping found and did. */
export interface SlotDropResult {
  slotDropped: boolean;
  publicationDropped: boolean;
}

const CONNECT_TIMEOUT_MS = 5_000;
const STATEMENT_TIMEOUT_MS = 10_000;

/**
 * Drops a source's replication slot and publication over one short connection. Idempotent: a slot or
 * publication already gone is fine. A slot still in use (its dispatcher pod has not exited yet) is an
 * error, so the caller retries with backoff rather than pulling the slot from under a running consumer.
 */
export async function dropSlotAndPublication(url: string, slotName: string, publicationName: string | undefined): Promise<SlotDropResult> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    application_name: 'eventide-operator',
  });
  // A connection that dies mid-call must not crash the operator with an unhandled 'error' event.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    throw new SlotDropError(`cannot connect to ${redactUrl(url)}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const slot = await client.query<{ active: boolean; active_pid: number | null }>('SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
    const row = slot.rows[0];
    if (row?.active) {
      throw new SlotDropError(`replication slot "${slotName}" is still in use by process ${row.active_pid ?? '?'}; retrying once its dispatcher has stopped`);
    }
    if (row) await client.query('SELECT pg_drop_replication_slot($1)', [slotName]);
    // Undefined: the publication is still in use by the source's current slot.
    const publication = publicationName === undefined ? { rowCount: 0 } : await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publicationName]);
    if (publicationName !== undefined && publication.rowCount) await client.query(`DROP PUBLICATION IF EXISTS ${client.escapeIdentifier(publicationName)}`);
    return { slotDropped: row !== undefined, publicationDropped: (publication.rowCount ?? 0) > 0 };
  } catch (error) {
    if (error instanceof SlotDropError) throw error;
    throw new SlotDropError(`dropping slot "${slotName}"${publicationName ? ` / publication "${publicationName}"` : ''}: ${(error as Error).message}`, { cause: error });
  } finally {
    await client.end().catch(() => {});
  }
}
