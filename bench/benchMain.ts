import { cpus } from 'node:os';
import pg from 'pg';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../common/embeddedPostgres.js';
import { PG_SETTINGS } from './harness.js';
import { printTable } from './report.js';
import { type Sink, startSink } from './sink.js';

/** What every bench runs on: its own PostgreSQL (wal_level=logical), a client of it, and the local HTTP sink. */
export interface BenchGround {
  pgServer: EmbeddedPostgres;
  db: pg.Client;
  sink: Sink;
}

/**
 * Runs a bench: prints the machine, starts PostgreSQL, the sink and a client, runs `body`, tears them
 * down whatever happens, prints the table (`labels` as printTable takes them) and the total time, and
 * exits 0, or 1 with the error.
 */
export function runBench(title: string, body: (ground: BenchGround) => Promise<void>, labels?: Parameters<typeof printTable>[0]): void {
  const main = async () => {
    console.log(`${title}: ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}`);
    const started = Date.now();
    const pgServer = await startEmbeddedPostgres({ settings: PG_SETTINGS });
    const sink = await startSink();
    const db = new pg.Client({ connectionString: pgServer.url });
    try {
      await db.connect();
      const version = await db.query<{ server_version: string }>('SHOW server_version');
      console.log(`PostgreSQL ${version.rows[0]?.server_version}`);
      await body({ pgServer, db, sink });
    } finally {
      await db.end().catch(() => undefined);
      sink.stop();
      await pgServer.destroy();
    }
    printTable(labels);
    console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);
  };
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
