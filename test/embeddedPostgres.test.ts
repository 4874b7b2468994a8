import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedPostgres, firstUnreachableDir, startEmbeddedPostgres } from '../common/embeddedPostgres.js';

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

describe('firstUnreachableDir (root runs Postgres as another user, who must reach the temp dir)', () => {
  const server = { uid: 100, gid: 200 };
  const tree: Record<string, { mode: number; uid: number; gid: number }> = {
    '/': { mode: 0o755, uid: 0, gid: 0 },
    '/tmp': { mode: 0o1777, uid: 0, gid: 0 },
    '/tmp/private': { mode: 0o700, uid: 0, gid: 0 },
    '/tmp/private/run': { mode: 0o755, uid: 0, gid: 0 },
    '/tmp/team': { mode: 0o750, uid: 0, gid: 200 },
    '/tmp/mine': { mode: 0o607, uid: 100, gid: 0 },
  };
  const stat = (dir: string) => tree[dir]!;

  it('finds none on an open path', () => expect(firstUnreachableDir('/tmp', server, stat)).toBeUndefined());
  it('names the first directory closed to it', () => expect(firstUnreachableDir('/tmp/private/run', server, stat)).toBe('/tmp/private'));
  it('lets the group bits count for its group', () => expect(firstUnreachableDir('/tmp/team', server, stat)).toBeUndefined());
  it('applies the owner bits to the owner, not the bits for others', () => expect(firstUnreachableDir('/tmp/mine', server, stat)).toBe('/tmp/mine'));
});
