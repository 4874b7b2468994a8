/**
 * Bad configuration, through the real `eventide dispatch` process: it exits 1 with one clear message
 * ("eventide: ..." and no stack trace) naming the file, trigger, field, flag or secret that is wrong;
 * the database password never appears in what it prints; and a failed start touches neither the slot
 * nor the publication, so once the config is fixed every row written meanwhile is delivered.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { secretEnvName } from '../../common/secretEnv.js';
import { verifyPayload } from '../../dispatcher/delivery/signing.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually, type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

const PASSWORD = 's3cr3t-pw';
const SIGNING_ENV = secretEnvName({ name: 'hook-signing', key: 'hmac' });
const SIGNING_SECRET = 'test-signing-secret';

/** The config every bad variant below is derived from: orders inserts → function foo, signed. */
const goodTrigger = (spec: Record<string, unknown> = {}) =>
  triggerManifest('orders-to-foo', {
    operations: ['insert'],
    function: { name: 'foo' },
    delivery: { signingSecretRef: { name: 'hook-signing', key: 'hmac' } },
    ...spec,
  });

interface Run {
  code: number | null;
  output: string;
}

describe('bad config gets a clear error naming what is wrong, and loses nothing', () => {
  let db: SourceDatabase;
  let sink: RecordingSink;
  /** The source database URL with a password in it (trust auth ignores it for this user). */
  let url: string;
  let goodFile: string;
  let slotBefore: bigint;
  const runs: Run[] = [];
  const dirs: string[] = [];

  const goodArgs = () => ['--database-url', url, '-f', goodFile, '--function-url', `foo=${sink.url}`];

  /** Runs `eventide dispatch` expecting it to exit by itself. */
  async function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
    const child = await startDispatcherProcess(args, env);
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 20_000).unref());
    const code = await Promise.race([child.exited(), timeout]);
    if (code === 'timeout') {
      await child.kill('SIGKILL');
      throw new Error(`dispatcher still running after 20 s; it should have refused the config:\n${child.output()}`);
    }
    const run = { code, output: child.output() };
    runs.push(run);
    return run;
  }

  /** Asserts a clean refusal: exit 1, one "eventide: " message, no stack trace; returns the message. */
  function refusal(run: Run): string {
    expect(run.code, run.output).toBe(1);
    expect(run.output).not.toMatch(/^\s+at /m);
    expect(run.output).not.toContain(PASSWORD);
    const start = run.output.indexOf('eventide: ');
    expect(start, run.output).toBeGreaterThanOrEqual(0);
    return run.output.slice(start).trimEnd();
  }

  function tempDir(files: Record<string, string> = {}): string {
    const dir = mkdtempSync(join(tmpdir(), 'eventide-badconfig-'));
    dirs.push(dir);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  }

  const rowIds = () => sink.events().map((e) => (e.data.new as { id: number }).id);

  beforeAll(async () => {
    db = await startSourceDatabase(`
      CREATE TABLE orders (id int PRIMARY KEY, total numeric, status text);
      ALTER TABLE orders REPLICA IDENTITY FULL;
      CREATE TABLE audit (id int PRIMARY KEY, note text);
      ALTER TABLE audit REPLICA IDENTITY NOTHING;
      CREATE ROLE app LOGIN PASSWORD 'the-right-one';`);
    // Password authentication for "app" (the server trusts everyone else on loopback).
    const hba = join(db.server.dataDir, 'pg_hba.conf');
    writeFileSync(hba, `host all app 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
    await db.sql('SELECT pg_reload_conf()');
    const withPassword = new URL(db.url);
    withPassword.password = PASSWORD;
    url = withPassword.toString();
    sink = await startRecordingSink();
    goodFile = writeManifests([goodTrigger()]);
    dirs.push(join(goodFile, '..'));

    // A good dispatcher ran before: it owns the slot and publication and has delivered row 0.
    const first = await startDispatcherProcess(goodArgs(), { [SIGNING_ENV]: SIGNING_SECRET });
    await first.ready();
    await db.sql('INSERT INTO orders VALUES (0, 1, $1)', ['before']);
    await eventually(() => rowIds().includes(0), 15_000, 'row 0 delivered');
    expect(await first.kill('SIGTERM')).toBe(0);
    // Written while no dispatcher runs: must be delivered once a good config is back.
    await db.sql("INSERT INTO orders VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'c')");
    slotBefore = await db.confirmedLsn();
    expect(slotBefore).toBeGreaterThan(0n);
  });

  afterAll(async () => {
    await sink?.close();
    await db?.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('triggers that do not fit the tables: every problem at once, naming the trigger, field, table and column', async () => {
    const file = writeManifests([
      triggerManifest('ghost', { table: { name: 'orderz' }, sink: { url: sink.url } }),
      triggerManifest('paid', { operations: ['update'], columns: ['is_payed'], sink: { url: sink.url } }),
      triggerManifest('big', { filter: 'new.totl > 100', sink: { url: sink.url } }),
      triggerManifest('audited', { table: { name: 'audit' }, operations: ['update'], sink: { url: sink.url } }),
    ]);
    dirs.push(join(file, '..'));
    expect(refusal(await runCli(['--database-url', url, '-f', file]))).toBe(
      [
        'eventide: EventTrigger test/ghost: table public.orderz does not exist',
        'EventTrigger test/paid: spec.columns names column "is_payed", which public.orders does not have',
        'EventTrigger test/big: spec.filter names column "totl", which public.orders does not have',
        'EventTrigger test/audited: public.audit has REPLICA IDENTITY NOTHING; Postgres then refuses its updates and deletes under a publication',
      ].join('\n'),
    );
  });

  it('a filter that does not compile: the file, the trigger, the expression and where it breaks', async () => {
    const file = writeManifests([goodTrigger({ filter: 'new.total > 10 &&' })]);
    dirs.push(join(file, '..'));
    expect(refusal(await runCli([...goodArgs().slice(0, 2), '-f', file]))).toBe(
      `eventide: ${file}: EventTrigger test/orders-to-foo is invalid: spec.filter: Unexpected token: EOF at column 18 of "new.total > 10 &&"`,
    );
  });

  it('a function with no --function-url: names the function and the flag', async () => {
    const run = await runCli(['--database-url', url, '-f', goodFile, '--function-url', `bar=${sink.url}`], { [SIGNING_ENV]: SIGNING_SECRET });
    expect(refusal(run)).toBe('eventide: EventTrigger test/orders-to-foo: function "foo" has no URL: pass --function-url foo=http://host:port');
  });

  it('a signing secret that is not set: names the secret and the environment variable', async () => {
    expect(refusal(await runCli(goodArgs()))).toBe(`eventide: EventTrigger test/orders-to-foo: signing secret hook-signing/hmac is not set (environment variable ${SIGNING_ENV})`);
  });

  it.each([
    ['a wrong type', { delivery: { retries: 'three' } }, 'spec.delivery.retries: Expected integer, got "three"'],
    ['an unknown operation', { operations: ['insert', 'upsert'] }, 'spec.operations[1]: must be one of insert, update, delete, truncate, got "upsert"'],
    ['both function and sink', { sink: { url: 'http://127.0.0.1:1/' } }, 'exactly one of spec.function or spec.sink must be set'],
    ['no table', { table: undefined }, 'spec.table: required field is missing'],
    [
      'a misspelt field',
      { filtr: 'new.total > 10' },
      'spec.filtr: unknown field (known here: source, table, operations, columns, filter, function, sink, delivery, ordering, concurrency, batch, format, suspend)',
    ],
    ['a bad duration', { delivery: { timeout: '30 seconds' } }, 'spec.delivery.timeout: must be a duration such as 500ms, 30s, 5m or 1h30m, got "30 seconds"'],
  ])('an invalid manifest field (%s): names the file, the trigger and the field path', async (_case, spec, problem) => {
    const file = writeManifests([goodTrigger(spec)]);
    dirs.push(join(file, '..'));
    expect(
      refusal(
        await runCli(
          goodArgs().map((a) => (a === goodFile ? file : a)),
          { [SIGNING_ENV]: SIGNING_SECRET },
        ),
      ),
    ).toBe(`eventide: ${file}: EventTrigger test/orders-to-foo is invalid: ${problem}`);
  });

  it('malformed YAML: names the file and the line', async () => {
    const dir = tempDir({ 'a-good.yaml': stringify(goodTrigger()), 'b-bad.yaml': `${stringify(triggerManifest('other', { sink: { url: sink.url } }))}  columns: [total\n` });
    const message = refusal(await runCli(['--database-url', url, '-f', dir]));
    expect(message).toMatch(new RegExp(`^eventide: ${join(dir, 'b-bad.yaml')}: invalid YAML: .* at line \\d+, column \\d+`));
  });

  it('a YAML file that is not a resource', async () => {
    const dir = tempDir({ 'list.yaml': '- orders\n- payments\n' });
    expect(refusal(await runCli(['--database-url', url, '-f', dir]))).toBe(`eventide: ${join(dir, 'list.yaml')}: expected a YAML mapping (a resource with apiVersion and kind), got a list`);
  });

  it('one trigger defined in two files: names both files instead of serving one of them', async () => {
    const dir = tempDir({ 'a.yaml': stringify(goodTrigger()), 'b.yaml': stringify(goodTrigger({ operations: ['update'] })) });
    expect(refusal(await runCli(['--database-url', url, '-f', dir]))).toBe(
      `eventide: EventTrigger test/orders-to-foo is defined both in ${join(dir, 'a.yaml')} and in ${join(dir, 'b.yaml')}; give each a different metadata.name`,
    );
  });

  it('-f naming nothing, an empty directory, a directory without triggers, or no -f at all', async () => {
    const dir = tempDir({ 'functions.yaml': stringify({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: 'foo' }, spec: { image: 'img:1' } }) });
    const empty = tempDir();
    mkdirSync(join(empty, 'sub'));
    expect(refusal(await runCli(['--database-url', url, '-f', join(dir, 'missing.yaml')]))).toBe(`eventide: ${join(dir, 'missing.yaml')}: no such file or directory`);
    expect(refusal(await runCli(['--database-url', url, '-f', empty]))).toBe(`eventide: no EventTrigger found in ${empty}`);
    expect(refusal(await runCli(['--database-url', url, '-f', dir]))).toBe(`eventide: no EventTrigger found in ${dir}`);
    expect(refusal(await runCli(['--database-url', url]))).toMatch(/^eventide: -f <file-or-dir> is required: the EventTrigger manifests to serve\n\nUsage: eventide dispatch/);
  });

  it('bad flags: an unknown flag, a port that is not a number, no database URL, a URL pg cannot parse', async () => {
    expect(refusal(await runCli([...goodArgs(), '--frobnicate']))).toMatch(/^eventide: Unknown option '--frobnicate'.*\n\nUsage: eventide dispatch/);
    // The harness passes its own --port first; the last one given counts.
    expect(refusal(await runCli([...goodArgs(), '--port', 'abc']))).toBe('eventide: --port must be a positive integer, got "abc"');
    expect(refusal(await runCli(['-f', goodFile], { EVENTIDE_DATABASE_URL: '' }))).toMatch(/^eventide: --database-url \(or EVENTIDE_DATABASE_URL\) is required\n\nUsage: eventide dispatch/);
    const badPort = `postgres://app:${PASSWORD}@127.0.0.1:99999/postgres`;
    expect(refusal(await runCli(['--database-url', badPort, '-f', goodFile]))).toBe(
      'eventide: --database-url is not a valid connection URL (Invalid URL): check the host and port, and percent-encode special characters in the user name and password',
    );
  });

  // A database that refuses connections is waited for, not a refusal: see setAside.test.ts.

  it("a wrong password or a database that does not exist: the server's reason, without the password", async () => {
    const env = { [SIGNING_ENV]: SIGNING_SECRET };
    const wrongPassword = `postgres://app:${PASSWORD}@127.0.0.1:${db.server.port}/postgres`;
    expect(refusal(await runCli(['--database-url', wrongPassword, '-f', goodFile, '--function-url', `foo=${sink.url}`], env))).toBe(
      `eventide: cannot connect to the database at postgres://app:***@127.0.0.1:${db.server.port}/postgres: password authentication failed for user "app"`,
    );
    const noDatabase = new URL(url);
    noDatabase.pathname = '/nosuchdb';
    expect(refusal(await runCli(['--database-url', noDatabase.toString(), '-f', goodFile, '--function-url', `foo=${sink.url}`], env))).toBe(
      `eventide: cannot connect to the database at ${noDatabase.toString().replace(PASSWORD, '***')}: database "nosuchdb" does not exist`,
    );
  });

  it('after all those refusals the slot and publication are untouched, and the fixed config delivers every row written meanwhile', async () => {
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs) expect(run.output).not.toContain(PASSWORD);
    expect(await db.confirmedLsn()).toBe(slotBefore);
    const { rows: slots } = await db.sql('SELECT slot_name, active FROM pg_replication_slots');
    expect(slots).toEqual([{ slot_name: 'eventide', active: false }]);
    const { rows: published } = await db.sql("SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = 'eventide'");
    expect(published).toEqual([{ t: 'public.orders' }]);

    const fixed = await startDispatcherProcess(goodArgs(), { [SIGNING_ENV]: SIGNING_SECRET });
    try {
      await fixed.ready();
      await eventually(() => [1, 2, 3].every((id) => rowIds().includes(id)), 20_000, 'rows 1-3 delivered after the fix');
      for (const request of sink.requests) {
        const verdict = verifyPayload(
          SIGNING_SECRET,
          { id: String(request.headers['webhook-id']), timestamp: String(request.headers['webhook-timestamp']), signature: String(request.headers['webhook-signature']) },
          request.body,
        );
        expect(verdict).toBeUndefined();
      }
    } finally {
      expect(await fixed.kill('SIGTERM')).toBe(0);
    }
    expect(fixed.output()).not.toContain(PASSWORD);
  });
});
