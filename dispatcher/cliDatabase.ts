import pg from 'pg';
import { SettingsError } from './settings.js';
import { isUnreachable } from './source/unreachable.js';

/**
 * Runs a command's work on a small pool of the given database and closes it. The database refusing
 * or not answering is a one-line error for the user, `what` saying what the command was doing (the
 * server's message never holds the password); any other error goes on as it is.
 */
export async function withCommandDatabase<T>(databaseUrl: string, what: string, action: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'eventide-cli' });
  pool.on('error', () => undefined);
  try {
    return await action(pool);
  } catch (error) {
    if (!(error instanceof SettingsError) && (error instanceof pg.DatabaseError || isUnreachable(error))) {
      throw new SettingsError(`${what}: ${(error as Error).message}`, { cause: error });
    }
    throw error;
  } finally {
    await pool.end();
  }
}
