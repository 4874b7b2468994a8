import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { createLogger, silentLogger } from '../../common/logger.js';
import { Dispatcher } from '../../dispatcher/dispatcher.js';
import { parseDispatchSettings } from '../../dispatcher/settings.js';

/** An EventTrigger manifest for tests: a name, a sink URL and spec overrides. */
export function triggerManifest(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: 'test' },
    spec: { source: { connectionSecretRef: { name: 'db' } }, table: { name: 'orders' }, ...spec },
  };
}

/** Writes manifests into a fresh temp dir; returns the file path. */
export function writeManifests(manifests: Record<string, unknown>[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'eventide-manifests-'));
  const file = join(dir, 'triggers.yaml');
  writeFileSync(file, manifests.map((m) => stringify(m)).join('---\n'));
  return file;
}

/** A Postgres server plus a client, for dispatcher tests. */
export interface SourceDatabase {
  server: EmbeddedPostgres;
  url: string;
  sql(text: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** confirmed_flush_lsn of the slot, as a bigint (0 when absent). */
  confirmedLsn(slot?: string): Promise<bigint>;
  close(): Promise<void>;
}

export async function startSourceDatabase(schemaSql: string): Promise<SourceDatabase> {
  const server = await startEmbeddedPostgres();
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  client.on('error', () => undefined);
  await client.query(schemaSql);
  let current = client;
  const reconnect = async () => {
    const next = new pg.Client({ connectionString: server.url });
    next.on('error', () => undefined);
    await next.connect();
    current = next;
  };
  return {
    server,
    url: server.url,
    async sql(text, params) {
      try {
        return await current.query(text, params);
      } catch (error) {
        // After a server restart the old connection is gone; reconnect once.
        if (/terminat|ECONNRESET|not queryable|Connection/i.test((error as Error).message)) {
          await reconnect();
          return current.query(text, params);
        }
        throw error;
      }
    },
    async confirmedLsn(slot = 'eventide') {
      const { rows } = await current.query<{ lsn: string | null }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      const text = rows[0]?.lsn;
      if (!text) return 0n;
      const [hi, lo] = text.split('/');
      return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
    },
    async close() {
      await current.end().catch(() => undefined);
      await server.destroy();
    },
  };
}

/** Starts a dispatcher in this process with CLI-style arguments. */
export async function startDispatcher(databaseUrl: string, manifestFile: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<Dispatcher> {
  const settings = parseDispatchSettings(['--database-url', databaseUrl, '-f', manifestFile, '--port', '0', '--host', '127.0.0.1', ...extraArgs], env);
  const logger = process.env.EVENTIDE_TEST_LOGS ? createLogger('test-dispatcher') : silentLogger();
  return Dispatcher.start(settings, logger, env);
}

export function removeDir(path: string): void {
  rmSync(path, { recursive: true, force: true });
}
