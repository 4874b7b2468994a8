import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../common/embeddedPostgres.js';

describe('embedded postgres', () => {
  let server: EmbeddedPostgres;
  beforeAll(async () => {
    server = await startEmbeddedPostgres();
  });
  afterAll(async () => {
    await server?.destroy();
  });

  it('runs with wal_level=logical and survives a crash restart', async () => {
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level');
    expect(rows[0]?.wal_level).toBe('logical');
    await client.query('CREATE TABLE t (id int primary key)');
    await client.query('INSERT INTO t VALUES (1)');
    await client.end().catch(() => undefined);
    await server.stop('immediate');
    await server.start();
    const again = new pg.Client({ connectionString: server.url });
    await again.connect();
    const count = await again.query<{ n: string }>('SELECT count(*)::text AS n FROM t');
    expect(count.rows[0]?.n).toBe('1');
    await again.end();
  });
});
