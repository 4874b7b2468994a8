import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedPostgres, serverIdentity, startEmbeddedPostgres } from '../../common/embeddedPostgres.js';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { removeDir, startDispatcher, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

/** A CA and a server certificate for 127.0.0.1 signed by it, plus an unrelated CA; made with openssl. */
function makeCertificates(dir: string): { ca: string; otherCa: string; cert: string; key: string } {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  for (const name of ['ca', 'other-ca']) {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=eventide test ${name}`);
  }
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext');
  // Postgres reads its key only when the server's user owns it and no one else can.
  const identity = serverIdentity();
  for (const file of readdirSync(dir)) {
    if (identity) chownSync(join(dir, file), identity.uid, identity.gid);
    chmodSync(join(dir, file), file.endsWith('.key') ? 0o600 : 0o644);
  }
  return { ca: join(dir, 'ca.crt'), otherCa: join(dir, 'other-ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
}

describe('a source database that requires TLS', () => {
  let certDir: string;
  let certs: ReturnType<typeof makeCertificates>;
  let server: EmbeddedPostgres;
  let admin: pg.Client;
  let sink: RecordingSink;
  let dispatcher: Dispatcher | undefined;
  let manifest: string;

  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'eventide-tls-'));
    chmodSync(certDir, 0o755);
    certs = makeCertificates(certDir);
    server = await startEmbeddedPostgres({ settings: { ssl: 'on', ssl_cert_file: certs.cert, ssl_key_file: certs.key } });
    // Plain connections from anywhere but the local socket are refused: TLS or nothing.
    writeFileSync(join(server.dataDir, 'pg_hba.conf'), 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl replication all 127.0.0.1/32 trust\n');
    admin = new pg.Client({ connectionString: `${server.url}?sslmode=verify-full&sslrootcert=${certs.ca}` });
    await admin.connect();
    await admin.query('SELECT pg_reload_conf()');
    await admin.query('CREATE TABLE orders (id int PRIMARY KEY, note text)');
    sink = await startRecordingSink();
    manifest = writeManifests([triggerManifest('orders', { sink: { url: sink.url }, operations: ['insert'] })]);
  }, 60_000);

  afterAll(async () => {
    await dispatcher?.stop();
    await sink?.close();
    await admin?.end().catch(() => undefined);
    await server?.destroy();
    removeDir(certDir);
  });

  it('refuses a plain connection, so the test really needs TLS', async () => {
    const plain = new pg.Client({ connectionString: server.url });
    await expect(plain.connect()).rejects.toThrow(/no encryption|pg_hba\.conf/);
  });

  it('streams over a verified TLS connection (sslmode=verify-full with the CA in sslrootcert)', async () => {
    dispatcher = await startDispatcher(`${server.url}?sslmode=verify-full&sslrootcert=${certs.ca}`, manifest);
    await admin.query("INSERT INTO orders VALUES (1, 'over tls')");
    await sink.waitFor(1);
    expect(JSON.parse(sink.requests[0]!.body)).toMatchObject({ op: 'insert', new: { id: 1, note: 'over tls' } });
    const { rows } = await admin.query<{ ssl: boolean }>(
      "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'walsender' AND a.application_name = 'eventide-dispatcher'",
    );
    expect(rows).toEqual([{ ssl: true }]);
    await dispatcher.stop();
    dispatcher = undefined;
  });

  it('refuses a server certificate its CA did not sign, saying why', async () => {
    const error = await startDispatcher(`${server.url}?sslmode=verify-full&sslrootcert=${certs.otherCa}`, manifest).then(
      (d) => {
        dispatcher = d;
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/^cannot connect to the database at postgres:\/\/eventide@127\.0\.0\.1:\d+\/postgres\?sslmode=verify-full&sslrootcert=\S+: .*certificate/);
  });

  it('--database-ca (how the operator passes a CA mounted from a Secret or ConfigMap): verified TLS with a plain URL', async () => {
    dispatcher = await startDispatcher(server.url, manifest, ['--database-ca', certs.ca]);
    await admin.query("INSERT INTO orders VALUES (2, 'ca from a file')");
    await sink.waitFor(2);
    expect(JSON.parse(sink.requests[1]!.body)).toMatchObject({ new: { id: 2, note: 'ca from a file' } });
    const { rows } = await admin.query<{ ssl: boolean; application_name: string }>(
      "SELECT s.ssl, a.application_name FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'eventide-dispatcher%' ORDER BY 2",
    );
    // The stream, the pool and the backlog's connections: every one over TLS.
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(rows.every((r) => r.ssl)).toBe(true);
    await dispatcher.stop();
    dispatcher = undefined;
  });

  it("--database-ca with a CA that did not sign the server's certificate: refused, saying why", async () => {
    const error = await startDispatcher(server.url, manifest, ['--database-ca', certs.otherCa]).then(
      (d) => {
        dispatcher = d;
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/^cannot connect to the database at postgres:\/\/eventide@127\.0\.0\.1:\d+\/postgres: .*certificate/);
  });
});
