import type pg from 'pg';
import { withPrivilegeAdvice } from './sourceSetup.js';
import { inTransaction } from './transaction.js';

/**
 * Creates eventide's own tables (schema `eventide`) when absent: the statements run under an
 * advisory lock, since two dispatchers creating them at once race on the catalog, and a missing
 * privilege is reported with `advice` (the statement that grants it) instead of "permission denied".
 */
export async function ensureEventideTables(pool: pg.Pool, tableSql: string, advice: (role: string, reason: string) => string): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('eventide schema'))");
    // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists: a role
    // given its own schema by an administrator (least privilege) must not be asked for more.
    await withPrivilegeAdvice(
      client,
      async () => {
        const schema = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = 'eventide'");
        if (schema.rowCount === 0) await client.query('CREATE SCHEMA eventide');
        await client.query(tableSql);
      },
      advice,
    );
  });
}
