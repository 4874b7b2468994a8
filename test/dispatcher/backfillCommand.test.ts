/**
 * `eventide backfill start|status|cancel` against a real Postgres: the command functions called
 * directly with a captured output (and a fake terminal for the in-place redraw), and one run of the
 * real `eventide` command to prove the wiring. No dispatcher runs here: the test plays its part by
 * moving the rows through BackfillStore's own methods.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackfillCommand, type Terminal } from '../../dispatcher/backfill/command.js';
import { BACKFILL_CHANNEL, BackfillStore } from '../../dispatcher/backfill/store.js';
import { SettingsError } from '../../dispatcher/settings.js';
import { runEventide, sleep } from '../harness/deliveryHelpers.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { eventually } from '../harness/recordingSink.js';

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, status text NOT NULL DEFAULT 'open', note text);
INSERT INTO items SELECT g, CASE WHEN g % 2 = 0 THEN 'open' ELSE 'closed' END, 'n' FROM generate_series(1, 100) g;
CREATE TABLE nokey (a int, b text);
CREATE TABLE withunique (email text NOT NULL UNIQUE, n int);
CREATE VIEW items_view AS SELECT * FROM items;
`;

const sink = { url: 'http://127.0.0.1:9/' };
const manifests = writeManifests([
  triggerManifest('items', { table: { name: 'items' }, sink }),
  triggerManifest('nokey', { table: { name: 'nokey' }, sink }),
  triggerManifest('withunique', { table: { name: 'withunique' }, sink }),
  triggerManifest('gone', { table: { name: 'gone' }, sink }),
  triggerManifest('view', { table: { name: 'items_view' }, sink }),
]);

/** A terminal that keeps what was written to it. */
function fakeTerminal(columns = 200): Terminal & { text: string } {
  const terminal = {
    text: '',
    columns,
    write(text: string) {
      terminal.text += text;
    },
  };
  return terminal;
}

describe('eventide backfill', () => {
  let server: SourceDatabase;
  const pools: pg.Pool[] = [];
  const clients: pg.Client[] = [];
  let databases = 0;

  beforeAll(async () => {
    server = await startSourceDatabase('SELECT 1');
  });
  afterAll(async () => {
    for (const client of clients) await client.end().catch(() => undefined);
    for (const pool of pools) await pool.end().catch(() => undefined);
    await server?.close();
  });

  /** A database of its own for each test, with the tables above. */
  async function database() {
    const name = `backfill_${++databases}`;
    await server.sql(`CREATE DATABASE ${name}`);
    const url = server.server.urlFor(name);
    const pool = new pg.Pool({ connectionString: url, max: 3 });
    pools.push(pool);
    await pool.query(SCHEMA);
    const lines: string[] = [];
    const run = (argv: string[], terminal?: Terminal) => runBackfillCommand([argv[0]!, '--database-url', url, ...argv.slice(1)], (l) => lines.push(l), terminal);
    /** The message of the SettingsError the command throws. */
    const refusal = async (argv: string[]) => {
      const error = await run(argv).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SettingsError);
      return (error as Error).message;
    };
    const listen = async () => {
      const client = new pg.Client({ connectionString: url });
      clients.push(client);
      await client.connect();
      const payloads: string[] = [];
      client.on('notification', (n) => {
        if (n.channel === BACKFILL_CHANNEL) payloads.push(n.payload ?? '');
      });
      await client.query(`LISTEN ${BACKFILL_CHANNEL}`);
      return payloads;
    };
    return { url, pool, store: new BackfillStore(pool), lines, run, refusal, listen };
  }

  it('start adds a Pending backfill with the given settings and notifies the dispatcher', async () => {
    const { store, lines, run, listen, pool } = await database();
    const payloads = await listen();
    const code = await run(['start', '-f', manifests, '--trigger', 'test/items', '--name', 'first', '--filter', "new.status == 'open'", '--batch-size', '50', '--rows-per-second', '200']);
    expect(code).toBe(0);
    expect(await store.get('test/first')).toMatchObject({
      name: 'test/first',
      origin: 'cli',
      trigger: 'test/items',
      filter: "new.status == 'open'",
      batchSize: 50,
      rowsPerSecond: 200,
      phase: 'Pending',
      rowsRead: 0,
      rowsSent: 0,
      cursor: null,
    });
    await eventually(() => payloads.includes('test/first'), 5000, 'the notification');
    expect(lines).toEqual([
      'backfill test/first created: the rows of public.items go through EventTrigger test/items once a dispatcher serving it picks it up',
      'follow it:  eventide backfill status --database-url <url> test/first --watch',
      'cancel it:  eventide backfill cancel --database-url <url> test/first',
    ]);

    // Defaults: <trigger>-<yyyymmddhhmmss> in the trigger's namespace, 1000 rows a chunk, no filter, no rate; --json prints the record.
    lines.length = 0;
    expect(await run(['start', '-f', manifests, '--trigger', 'test/items', '--json'])).toBe(0);
    const printed = JSON.parse(lines[0]!) as { name: string };
    expect(printed.name).toMatch(/^test\/items-\d{14}$/);
    const stamp = printed.name.slice(-14);
    expect(Math.abs(Date.parse(`${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)}T${stamp.slice(8, 10)}:${stamp.slice(10, 12)}:${stamp.slice(12)}Z`) - Date.now())).toBeLessThan(60_000);
    const created = await store.get(printed.name);
    expect(created).toMatchObject({ trigger: 'test/items', batchSize: 1000, phase: 'Pending', origin: 'cli' });
    expect(created).not.toHaveProperty('filter');
    expect(created).not.toHaveProperty('rowsPerSecond');
    await eventually(() => payloads.includes(printed.name), 5000, 'the second notification');
    expect((await pool.query('SELECT count(*)::int AS n FROM eventide.backfills')).rows[0].n).toBe(2);
  });

  it('refuses, with a reason, what a backfill cannot do, and adds nothing', async () => {
    const { refusal, pool, run } = await database();
    const start = (...args: string[]) => refusal(['start', '-f', manifests, ...args]);
    expect(await start('--trigger', 'test/nokey')).toBe(
      'table public.nokey has no primary key: a backfill reads the table in primary-key order, so each chunk can be checked against live changes; ' +
        'add one (ALTER TABLE "public"."nokey" ADD PRIMARY KEY (<columns>))',
    );
    expect(await start('--trigger', 'test/withunique')).toMatch(
      /^table public\.withunique has no primary key: .*add one \(ALTER TABLE "public"\."withunique" ADD PRIMARY KEY USING INDEX "withunique_email_key"\)$/,
    );
    expect(await start('--trigger', 'test/gone')).toBe('table public.gone (of EventTrigger test/gone) does not exist in this database');
    expect(await start('--trigger', 'test/view')).toBe('public.items_view is a view: a backfill reads a table');
    expect(await start('--trigger', 'test/nope')).toBe(`EventTrigger test/nope is not in ${manifests}; the EventTriggers there are test/items, test/nokey, test/withunique, test/gone, test/view`);
    expect(await start('--trigger', 'nope')).toMatch(/^EventTrigger default\/nope is not in /);
    expect(await start('--trigger', 'test/items', '--filter', 'new.status ==')).toMatch(/^--filter: .+ of "new\.status =="$/);
    expect(await start('--trigger', 'test/items', '--filter', 'old.status == "open"')).toMatch(/^--filter reads old, but a backfill's rows have no old state/);
    expect(await start('--trigger', 'test/items', '--filter', 'new.colour == "red"')).toBe('--filter names column "colour", which public.items does not have (its columns: id, status, note)');
    expect(await start('--trigger', 'test/items', '--batch-size', '0')).toBe('--batch-size must be an integer from 1 to 10,000, got "0"');
    expect(await start('--trigger', 'test/items', '--batch-size', '10001')).toBe('--batch-size must be an integer from 1 to 10,000, got "10001"');
    expect(await start('--trigger', 'test/items', '--rows-per-second', '0.5')).toBe('--rows-per-second must be an integer from 1 to 1,000,000, got "0.5"');
    expect(await start('--trigger', 'test/items', '--name', 'other/x')).toBe('--name other/x: a backfill lives in the namespace of its EventTrigger (test); use --name test/x or just x');
    expect(await start('--trigger', 'test/items', '--name', 'Bad_Name')).toMatch(/^--name must be a name of lower-case letters/);
    expect(await start('--name', 'x')).toMatch(/^backfill start needs --trigger ns\/name\n\nUsage: eventide backfill start/);
    expect(await refusal(['start', '--trigger', 'test/items'])).toMatch(/^backfill start needs -f <manifests>/);
    expect(await refusal(['start', '-f', manifests, '--trigger', 'test/items', '--bogus'])).toMatch(/Unknown option '--bogus'/);
    expect((await pool.query("SELECT to_regclass('eventide.backfills') IS NULL AS absent")).rows[0].absent).toBe(true);

    // A name that exists is refused, the first left as it was.
    expect(await run(['start', '-f', manifests, '--trigger', 'test/items', '--name', 'again'])).toBe(0);
    expect(await start('--trigger', 'test/items', '--name', 'test/again', '--batch-size', '7')).toMatch(/^backfill test\/again exists already \(Pending, created \S+\); choose another --name$/);
    expect((await pool.query('SELECT batch_size FROM eventide.backfills')).rows).toEqual([{ batch_size: 1000 }]);
  });

  it('status lists every backfill, or shows one in detail, as text or JSON, with its progress', async () => {
    const { store, lines, run, refusal } = await database();
    expect(await run(['status'])).toBe(0);
    expect(lines).toEqual(['no backfills']); // no table yet
    expect(await refusal(['status', 'x'])).toBe('no backfill named default/x: no backfill was ever started in this database');
    lines.length = 0;
    expect(await run(['status', '--json'])).toBe(0);
    expect(JSON.parse(lines[0]!)).toEqual({ backfills: [] });

    for (const name of ['running', 'pending', 'done']) expect(await run(['start', '-f', manifests, '--trigger', 'test/items', '--name', name])).toBe(0);
    await store.start('test/running', 20_000);
    await store.recordChunk('test/running', ['5000'], 5000, 4000);
    await store.recordChunk('test/running', ['10400'], 5400, 5000);
    await store.start('test/done', 100);
    await store.recordChunk('test/done', ['100'], 100, 50);
    await store.finish('test/done', 'Complete', null);
    await store.setMessage('test/pending', 'waiting for a dispatcher serving test/items');

    lines.length = 0;
    expect(await run(['status'])).toBe(0);
    expect(lines[0]).toMatch(/^NAME +TRIGGER +PHASE +PROGRESS +ROWS +SENT +ESTIMATE +DURATION +AGE +MESSAGE$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^test\/running +test\/items +Running +52% +10,400 +9,000 +20,000 +\d+s +\d+s$/),
      expect.stringMatching(/^test\/pending +test\/items +Pending +- +0 +0 +- +- +\d+s +waiting for a dispatcher serving test\/items$/),
      expect.stringMatching(/^test\/done +test\/items +Complete +100% +100 +50 +100 +\d+s +\d+s$/),
    ]);

    // On a terminal, the list has a short bar, the detail a long one.
    lines.length = 0;
    expect(await run(['status'], fakeTerminal())).toBe(0);
    expect(lines[1]).toMatch(/ \[█████░░░░░\] 52% /);
    lines.length = 0;
    expect(await run(['status', 'test/running'], fakeTerminal())).toBe(0);
    expect(lines).toContain('Phase:      Running');
    expect(lines.find((l) => l.startsWith('Progress:'))).toMatch(/^Progress: {3}\[██████████░░░░░░░░░░\] 52% {2}10,400 \/ 20,000 rows {2}[\d,.]+ rows\/s {2}eta \S+$/);
    expect(lines).toContain('Cursor:     (10400)');
    expect(lines).toContain('Rows sent:  9,000');

    lines.length = 0;
    expect(await run(['status', 'test/done'])).toBe(0);
    expect(lines).toContain('Phase:      Complete');
    expect(lines).toContain('Progress:   100%  100 / 100 rows');
    expect(lines.find((l) => l.startsWith('Finished:'))).toMatch(/^Finished: {3}\d{4}-\d\d-\d\dT\S+Z \(\d+s ago\)$/);

    lines.length = 0;
    expect(await run(['status', 'test/running', '--json'])).toBe(0);
    expect(JSON.parse(lines[0]!)).toMatchObject({ name: 'test/running', phase: 'Running', rowsRead: 10_400, rowsSent: 9000, rowsEstimate: 20_000, cursor: ['10400'], origin: 'cli' });
    lines.length = 0;
    expect(await run(['status', '--json'])).toBe(0);
    expect((JSON.parse(lines[0]!) as { backfills: { name: string }[] }).backfills.map((b) => b.name)).toEqual(['test/running', 'test/pending', 'test/done']);

    // Unknown names: a bare one is in the default namespace, and the same name elsewhere is suggested.
    expect(await refusal(['status', 'running'])).toBe('no backfill named default/running; did you mean test/running?');
    expect(await refusal(['status', 'test/nothing'])).toBe('no backfill named test/nothing (eventide backfill status lists them)');
    expect(await refusal(['status', 'a', 'b'])).toMatch(/^unexpected argument "b"/);
    expect(await refusal(['status', '--interval', 'soon'])).toBe('--interval must be a duration such as 500ms, 5s or 1m, got "soon"');
  });

  it('cancel: a pending or running backfill becomes Cancelled (exit 0, notified); a finished one says so', async () => {
    const { store, lines, run, refusal, listen } = await database();
    for (const name of ['waiting', 'busy', 'done', 'broken']) expect(await run(['start', '-f', manifests, '--trigger', 'test/items', '--name', name])).toBe(0);
    await store.start('test/busy', 100);
    await store.recordChunk('test/busy', ['10'], 10, 10);
    await store.finish('test/done', 'Complete', null);
    await store.finish('test/broken', 'Failed', 'the trigger was deleted');
    const payloads = await listen();

    lines.length = 0;
    expect(await run(['cancel', 'test/waiting'])).toBe(0);
    expect(lines).toEqual(['backfill test/waiting cancelled (was Pending; 0 rows  0 sent)']);
    expect(await store.get('test/waiting')).toMatchObject({ phase: 'Cancelled', message: 'cancelled with eventide backfill cancel' });
    expect((await store.get('test/waiting'))!.finishedAt).toBeInstanceOf(Date);
    await eventually(() => payloads.includes('test/waiting'), 5000, 'the notification');

    lines.length = 0;
    expect(await run(['cancel', 'test/busy'])).toBe(0);
    expect(lines).toEqual(['backfill test/busy cancelled (was Running; 10%  10 / 100 rows  10 sent)']);

    lines.length = 0;
    expect(await run(['cancel', 'test/waiting'])).toBe(0);
    expect(lines).toEqual(['backfill test/waiting was already cancelled (0 rows  0 sent)']);
    expect(await run(['cancel', 'test/done'])).toBe(1);
    expect(lines.at(-1)).toBe('backfill test/done had already completed (100%  0 rows  0 sent): nothing to cancel');
    expect(await store.get('test/done')).toMatchObject({ phase: 'Complete' });
    expect(await run(['cancel', 'test/broken'])).toBe(1);
    expect(lines.at(-1)).toBe('backfill test/broken had already failed (the trigger was deleted): nothing to cancel');

    expect(await refusal(['cancel', 'waiting'])).toBe('no backfill named default/waiting; did you mean test/waiting?');
    expect(await refusal(['cancel'])).toMatch(/^backfill cancel needs the name of a backfill/);
    await sleep(200);
    expect(payloads.filter((p) => p === 'test/waiting')).toHaveLength(1); // cancelling a cancelled one announces nothing
  });

  it('status --watch follows a backfill until it finishes: a line per change, or redrawn in place on a terminal', async () => {
    const { store, lines, run } = await database();
    expect(await run(['start', '-f', manifests, '--trigger', 'test/items', '--name', 'watched'])).toBe(0);
    lines.length = 0;
    const watching = run(['status', 'test/watched', '--watch', '--interval', '20ms']);
    await eventually(() => lines.length === 1, 5000, 'the first line');
    await store.start('test/watched', 100);
    await eventually(() => lines.length === 2, 5000, 'running');
    await store.recordChunk('test/watched', ['50'], 50, 40);
    await eventually(() => lines.length === 3, 5000, 'the first chunk');
    await sleep(100); // readings without change print nothing
    await store.recordChunk('test/watched', ['100'], 50, 45);
    await eventually(() => lines.length === 4, 5000, 'the second chunk');
    await store.finish('test/watched', 'Complete', null);
    expect(await watching).toBe(0);
    expect(lines).toEqual([
      'test/watched  Pending  0 rows  0 sent',
      expect.stringMatching(/^test\/watched {2}Running {2}0% {2}0 \/ 100 rows {2}0 sent( {2}0 rows\/s)?$/),
      expect.stringMatching(/^test\/watched {2}Running {2}50% {2}50 \/ 100 rows {2}40 sent {2}[\d,.]+ rows\/s( {2}eta \S+)?$/),
      expect.stringMatching(/^test\/watched {2}Running {2}99% {2}100 \/ 100 rows {2}85 sent {2}[\d,.]+ rows\/s$/),
      'test/watched  Complete  100%  100 / 100 rows  85 sent',
    ]);

    // Failed (and Cancelled) end the watch with 1; on a terminal the details are redrawn in place.
    expect(await run(['start', '-f', manifests, '--trigger', 'test/items', '--name', 'failing'])).toBe(0);
    const terminal = fakeTerminal(100);
    const failing = run(['status', 'test/failing', '--watch', '--interval', '20ms'], terminal);
    await eventually(() => terminal.text.includes('Phase:      Pending'), 5000, 'the first drawing'); // so three frames differ: Pending, 30%, Failed
    await store.start('test/failing', 1000);
    await store.recordChunk('test/failing', ['300'], 300, 300);
    await eventually(() => terminal.text.includes('30%'), 5000, 'progress drawn');
    await store.finish('test/failing', 'Failed', 'the function answered 400 to every row');
    expect(await failing).toBe(1);
    const frames = terminal.text.split('\r\x1b[17A\x1b[J');
    expect(frames.length).toBeGreaterThan(2); // redrawn several times, each over the 17 lines of the one before
    const last = frames.at(-1)!.split('\n');
    expect(last).toContain('Phase:      Failed');
    expect(last).toContain('Message:    the function answered 400 to every row');
    expect(last.find((l) => l.startsWith('Progress:'))).toBe('Progress:   [██████░░░░░░░░░░░░░░] 30%  300 / 1,000 rows');
    expect(last.every((l) => [...l].length < 100)).toBe(true);
    expect(frames.some((f) => /\[██████░{14}\] 30% {2}300 \/ 1,000 rows {2}[\d,.]+ rows\/s/.test(f))).toBe(true);

    // Without a name: until none is unfinished (JSON: a record per change).
    lines.length = 0;
    expect(await run(['start', '-f', manifests, '--trigger', 'test/items', '--name', 'last'])).toBe(0);
    lines.length = 0;
    const all = run(['status', '--watch', '--json', '--interval', '20ms']);
    await eventually(() => lines.length === 3, 5000, 'a record for each backfill');
    await store.cancel('test/last');
    expect(await all).toBe(0);
    expect(lines.map((l) => (JSON.parse(l) as { name: string; phase: string }).phase)).toEqual(['Complete', 'Failed', 'Pending', 'Cancelled']);
  });

  it('start --wait follows the backfill it started: exit 0 once Complete, 1 once Cancelled', async () => {
    const { store, lines, run } = await database();
    const started = run(['start', '-f', manifests, '--trigger', 'test/items', '--name', 'waited', '--wait', '--interval', '20ms']);
    await eventually(async () => (await store.get('test/waited')) !== undefined, 5000, 'the backfill');
    await store.start('test/waited', 100);
    await store.recordChunk('test/waited', ['100'], 100, 50);
    await store.finish('test/waited', 'Complete', null);
    expect(await started).toBe(0);
    expect(lines[0]).toBe('backfill test/waited created: the rows of public.items go through EventTrigger test/items once a dispatcher serving it picks it up');
    expect(lines.at(-1)).toBe('test/waited  Complete  100%  100 / 100 rows  50 sent');

    const cancelled = run(['start', '-f', manifests, '--trigger', 'test/items', '--name', 'stopped', '--wait', '--interval', '20ms']);
    await eventually(async () => (await store.get('test/stopped')) !== undefined, 5000, 'the backfill');
    await store.cancel('test/stopped');
    expect(await cancelled).toBe(1);
    expect(lines.at(-1)).toBe('test/stopped  Cancelled  0 rows  0 sent  cancelled');
  });

  it('the eventide command runs it (flag or environment for the database)', async () => {
    const { url, run } = await database();
    expect(await run(['start', '-f', manifests, '--trigger', 'test/items', '--name', 'smoke'])).toBe(0);
    const list = await runEventide(['backfill', 'status', '--database-url', url]);
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^NAME +TRIGGER .*\ntest\/smoke +test\/items +Pending +- +0 +0 +- +- +\d+s\n$/);
    const env = await runEventide(['backfill', 'status', 'test/smoke', '--json'], { EVENTIDE_DATABASE_URL: url });
    expect(env.code).toBe(0);
    expect(JSON.parse(env.stdout)).toMatchObject({ name: 'test/smoke', phase: 'Pending' });
    const unknown = await runEventide(['backfill', 'status', '--database-url', url, 'nothing']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('eventide: no backfill named default/nothing (eventide backfill status lists them)\n');
    const help = await runEventide(['help']);
    expect(help.stdout).toContain('eventide backfill start  --database-url <url> -f <manifests> --trigger ns/name');
  });
});
