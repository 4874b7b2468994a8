import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

/**
 * A role with only what the dispatcher needs, as a DBA would set it up: each missing privilege is named
 * with the statement that grants it, and the documented least-privilege setup runs.
 */
describe('a database role with least privilege', () => {
  let db: SourceDatabase;
  let sink: RecordingSink;
  let file: string;
  let appUrl: string;
  let running: DispatcherProcess | undefined;

  beforeAll(async () => {
    db = await startSourceDatabase('CREATE TABLE orders (id int PRIMARY KEY, note text); CREATE ROLE app LOGIN; GRANT SELECT ON orders TO app;');
    sink = await startRecordingSink();
    file = writeManifests([triggerManifest('orders', { sink: { url: sink.url }, operations: ['insert'] })]);
    appUrl = db.url.replace('://eventide@', '://app@');
  });

  afterAll(async () => {
    await running?.kill('SIGKILL');
    await sink?.close();
    await db?.close();
  });

  /** `eventide dispatch` as role app, expected to refuse: its exit code and message. */
  async function refusal(): Promise<{ code: number | null; message: string }> {
    const proc = await startDispatcherProcess(['--database-url', appUrl, '-f', file]);
    const code = await Promise.race([proc.exited(), new Promise<'running'>((r) => setTimeout(() => r('running'), 20_000).unref())]);
    if (code === 'running') {
      await proc.kill('SIGKILL');
      throw new Error(`the dispatcher should have refused:\n${proc.output()}`);
    }
    expect(proc.output()).not.toMatch(/^\s+at /m); // no stack trace
    return { code, message: proc.output().slice(proc.output().indexOf('eventide: ')).trimEnd() };
  }

  it('without CREATE on the database: names the publication and the statement its owner can run instead', async () => {
    expect(await refusal()).toEqual({
      code: 1,
      message:
        'eventide: the database role "app" may not create or change publication "eventide" (permission denied for database postgres): ' +
        'grant it CREATE on the database and make it the owner of the published tables, or have their owner create the publication: ' +
        'CREATE PUBLICATION "eventide" FOR TABLE "public"."orders" WITH (publish_via_partition_root = true)',
    });
  });

  it('with the publication made by the owner but no REPLICATION: says to grant it', async () => {
    await db.sql('CREATE PUBLICATION eventide FOR TABLE orders WITH (publish_via_partition_root = true)');
    expect(await refusal()).toEqual({
      code: 1,
      message:
        'eventide: the database role "app" may not create replication slot "eventide" (must be superuser or replication role to use replication slots): ' +
        'give it the REPLICATION attribute (ALTER ROLE "app" REPLICATION)',
    });
  });

  it('with REPLICATION but nowhere to keep dead letters: offers the schema, the grant or another database', async () => {
    await db.sql('ALTER ROLE app REPLICATION');
    expect(await refusal()).toEqual({
      code: 1,
      message:
        'eventide: the database role "app" may not create the dead-letter table eventide.dead_letters (permission denied for database postgres): ' +
        'grant it CREATE on the database, or create the schema for it (CREATE SCHEMA eventide AUTHORIZATION "app"), or keep dead letters elsewhere with --dead-letter-database-url',
    });
  });

  it("with the schema given to it: runs and delivers, needing nothing more (the README's least-privilege setup)", async () => {
    await db.sql('CREATE SCHEMA eventide AUTHORIZATION app');
    running = await startDispatcherProcess(['--database-url', appUrl, '-f', file]);
    await running.ready(30_000);
    await db.sql("INSERT INTO orders VALUES (1, 'least privilege')");
    await sink.waitFor(1);
    expect(JSON.parse(sink.requests[0]!.body)).toMatchObject({ op: 'insert', new: { id: 1, note: 'least privilege' } });
    const { rows } = await db.sql("SELECT rolname FROM pg_roles WHERE rolname = 'app' AND (rolsuper OR rolcreatedb OR rolcreaterole)");
    expect(rows).toEqual([]); // still no superuser or creation powers
  });

  it('with a backlog table it may not use (made by another role): names the grants it needs, and runs once they are given', async () => {
    await running?.kill('SIGKILL');
    running = undefined;
    await db.sql('ALTER TABLE eventide.backlog OWNER TO eventide; ALTER SEQUENCE eventide.backlog_id_seq OWNER TO eventide');
    expect(await refusal()).toEqual({
      code: 1,
      message:
        'eventide: the database role "app" may not use the backlog table eventide.backlog (permission denied for table backlog): grant it CREATE on the database, ' +
        'or create the schema for it (CREATE SCHEMA eventide AUTHORIZATION "app"), or, where the table exists, ' +
        'GRANT SELECT, INSERT, UPDATE, DELETE ON eventide.backlog TO "app"; GRANT USAGE ON SEQUENCE eventide.backlog_id_seq TO "app"',
    });
    await db.sql('GRANT SELECT, INSERT, UPDATE, DELETE ON eventide.backlog TO app; GRANT USAGE ON SEQUENCE eventide.backlog_id_seq TO app');
    running = await startDispatcherProcess(['--database-url', appUrl, '-f', file]);
    await running.ready(30_000);
    await db.sql("INSERT INTO orders VALUES (2, 'granted')");
    await sink.waitFor(2);
  });
});
