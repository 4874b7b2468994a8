import { type ParseArgsConfig, parseArgs } from 'node:util';
import type pg from 'pg';
import { type EventTriggerResource, filterProblem, loadManifests, resourceKey } from '../../api/v1alpha1/index.js';
import { DATABASE_URL_ENV } from '../../common/secretEnv.js';
import { withCommandDatabase } from '../cliDatabase.js';
import { compileFilter } from '../routing/filter.js';
import { durationFlag, SettingsError } from '../settings.js';
import { quoteIdent } from '../source/sourceSetup.js';
import { addSample, changeKey, changeLine, detailLines, formatCount, listTable, progressLine, type RateSample, redraw } from './render.js';
import { BACKFILL_CHANNEL, type BackfillRecord, BackfillStore, FINISHED_PHASES } from './store.js';

export const BACKFILL_USAGE = `Usage: eventide backfill start  --database-url <url> -f <manifests> --trigger ns/name [--name <name>] [--filter <cel>]
                               [--batch-size <n>] [--rows-per-second <n>] [--wait] [--json]
       eventide backfill status --database-url <url> [name] [--watch] [--interval <duration>] [--json]
       eventide backfill cancel --database-url <url> <name>

  start sends every existing row of the trigger's table through the trigger as an event of op "read"
  (a dispatcher serving the trigger runs it). --name defaults to <trigger name>-<yyyymmddhhmmss> (UTC),
  in the trigger's namespace; --batch-size 1..10000 (default 1000); --filter is CEL over new.
  A name without a namespace is default/<name> (start: the trigger's namespace).
  Exit codes: start --wait and status <name> --watch: 0 Complete, 1 Failed or Cancelled;
  status --watch without a name: 0 once no backfill is unfinished; cancel: 0 when the backfill is
  now Cancelled (also if it was already), 1 when it had already completed or failed; 1 on errors.
`;

type Out = (line: string) => void;
const stdout: Out = (l) => process.stdout.write(`${l}\n`);

/** Where `--watch` redraws in place: the terminal stdout is, when it is one. */
export interface Terminal {
  write(text: string): void;
  /** Width in characters, to keep redrawn lines from wrapping. */
  readonly columns?: number;
}

function stdoutTerminal(): Terminal | undefined {
  if (!process.stdout.isTTY) return undefined;
  return {
    write: (text) => process.stdout.write(text),
    get columns() {
      return process.stdout.columns;
    },
  };
}

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>, positionals = 0): { values: Values; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: positionals > 0 });
  } catch (error) {
    throw new SettingsError(`${(error as Error).message}\n\n${BACKFILL_USAGE}`);
  }
  if (parsed.positionals.length > positionals) throw new SettingsError(`unexpected argument "${parsed.positionals[positionals]}"\n\n${BACKFILL_USAGE}`);
  return { values: parsed.values, positionals: parsed.positionals };
}

/** Runs `action` on the database named by the flag or the environment. */
function withDatabase<T>(databaseUrl: string | undefined, action: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const url = databaseUrl ?? process.env[DATABASE_URL_ENV];
  if (!url) throw new SettingsError(`--database-url (or ${DATABASE_URL_ENV}) is required\n\n${BACKFILL_USAGE}`);
  return withCommandDatabase(url, 'database error', action);
}

/** `ns/name` as given; a bare name is in `namespace` (default: "default"). */
export function qualifiedName(text: string, namespace = 'default'): string {
  return text.includes('/') ? text : `${namespace}/${text}`;
}

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** `<trigger name>-<yyyymmddhhmmss>` (UTC). */
export function defaultBackfillName(triggerName: string, now: Date): string {
  return `${triggerName}-${now.toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
}

function integerFlag(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new SettingsError(`${flag} must be an integer from ${formatCount(min)} to ${formatCount(max)}, got "${text}"`);
  }
  return value;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function tablePresent(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query<{ present: boolean }>("SELECT to_regclass('eventide.backfills') IS NOT NULL AS present");
  return rows[0]!.present;
}

async function serverNow(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ now: Date }>('SELECT now() AS now');
  return rows[0]!.now.getTime();
}

/** A backfill that is not there: says so, and names same-named ones in other namespaces. */
async function unknownBackfill(pool: pg.Pool, name: string): Promise<SettingsError> {
  if (!(await tablePresent(pool))) return new SettingsError(`no backfill named ${name}: no backfill was ever started in this database`);
  const bare = name.slice(name.indexOf('/') + 1);
  const others = (await new BackfillStore(pool).list()).map((r) => r.name).filter((n) => n !== name && n.endsWith(`/${bare}`));
  return new SettingsError(`no backfill named ${name}${others.length ? `; did you mean ${others.join(' or ')}?` : ' (eventide backfill status lists them)'}`);
}

const RELKIND: Record<string, string> = { v: 'a view', m: 'a materialized view', f: 'a foreign table', S: 'a sequence', i: 'an index', c: 'a composite type' };

/**
 * Checks that the trigger's table is there and has a primary key, the order a backfill reads it in;
 * returns its columns (to check the filter against).
 */
async function checkTable(pool: pg.Pool, trigger: EventTriggerResource): Promise<string[]> {
  const { schema, name } = trigger.spec.table;
  const label = `${schema}.${name}`;
  const qualified = `${quoteIdent(schema)}.${quoteIdent(name)}`;
  const { rows } = await pool.query<{ oid: string; kind: string }>('SELECT c.oid::text AS oid, c.relkind::text AS kind FROM pg_class c WHERE c.oid = to_regclass($1)', [qualified]);
  const table = rows[0];
  if (!table) throw new SettingsError(`table ${label} (of EventTrigger ${resourceKey(trigger.metadata)}) does not exist in this database`);
  if (table.kind !== 'r' && table.kind !== 'p') throw new SettingsError(`${label} is ${RELKIND[table.kind] ?? 'not a table'}: a backfill reads a table`);
  const { rows: keys } = await pool.query('SELECT 1 FROM pg_index WHERE indrelid = $1::oid AND indisprimary', [table.oid]);
  if (keys.length === 0) {
    // A unique index over NOT NULL columns can become the primary key as it is, without another index build.
    const { rows: candidates } = await pool.query<{ index: string }>(
      `SELECT c.relname AS index FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = $1::oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
          AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) AND NOT a.attnotnull)
        ORDER BY i.indnatts, c.relname LIMIT 1`,
      [table.oid],
    );
    const fix = candidates[0] ? `ALTER TABLE ${qualified} ADD PRIMARY KEY USING INDEX ${quoteIdent(candidates[0].index)}` : `ALTER TABLE ${qualified} ADD PRIMARY KEY (<columns>)`;
    throw new SettingsError(`table ${label} has no primary key: a backfill reads the table in primary-key order, so each chunk can be checked against live changes; add one (${fix})`);
  }
  const { rows: columns } = await pool.query<{ name: string }>('SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum', [table.oid]);
  return columns.map((c) => c.name);
}

/** Syntax of --filter, before anything else is done; the table's columns are checked once it is found. */
function checkFilterSyntax(filter: string | undefined): void {
  if (filter === undefined) return;
  if (filter.trim() === '') throw new SettingsError('--filter is empty: leave it out to send every row');
  if (filter.length > 4096) throw new SettingsError(`--filter is ${filter.length} characters long; at most 4096`);
  const problem = filterProblem(filter);
  if (problem) throw new SettingsError(`--filter: ${problem.replace(/^spec\.filter: /, '')}`);
  if (compileFilter(filter).readsOld) {
    throw new SettingsError(`--filter reads old, but a backfill's rows have no old state (op "read", old is null): write the filter over new, e.g. "new.status == 'open'"`);
  }
}

function checkFilterColumns(filter: string | undefined, table: string, columns: string[]): void {
  if (filter === undefined) return;
  const missing = [...compileFilter(filter).columns].filter((c) => !columns.includes(c));
  if (missing.length) {
    throw new SettingsError(`--filter names column ${missing.map((c) => `"${c}"`).join(', ')}, which ${table} does not have (its columns: ${columns.join(', ')})`);
  }
}

interface FollowOptions {
  intervalMs: number;
  json: boolean;
  out: Out;
  terminal: Terminal | undefined;
}

/**
 * Follows one backfill until it finishes: on a terminal its details redrawn in place with a progress
 * bar, elsewhere a line (or with --json a record) per change. 0 when it completed, 1 when it failed or
 * was cancelled.
 */
async function followOne(pool: pg.Pool, name: string, o: FollowOptions): Promise<number> {
  const store = new BackfillStore(pool);
  let samples: RateSample[] = [];
  let lastKey: string | undefined;
  let drawn = 0;
  for (;;) {
    const [record, now] = await Promise.all([store.get(name), serverNow(pool)]);
    if (!record) throw new SettingsError(`backfill ${name} was removed while being watched`);
    samples = addSample(samples, { at: Date.now(), rowsRead: record.rowsRead });
    const key = changeKey(record);
    if (o.json) {
      if (key !== lastKey) o.out(JSON.stringify(record));
    } else if (o.terminal) {
      const lines = detailLines(record, now, { samples, bar: true });
      o.terminal.write(redraw(drawn, lines, o.terminal.columns));
      drawn = lines.length;
    } else if (key !== lastKey) {
      o.out(changeLine(record, samples));
    }
    lastKey = key;
    if (FINISHED_PHASES.has(record.phase)) return record.phase === 'Complete' ? 0 : 1;
    await sleep(o.intervalMs);
  }
}

/** Follows every backfill until none is unfinished: the table redrawn on a terminal, elsewhere a line (or record) per change. */
async function followAll(pool: pg.Pool, o: FollowOptions): Promise<number> {
  const samples = new Map<string, RateSample[]>();
  const keys = new Map<string, string>();
  let drawn = 0;
  let saidNone = false;
  for (;;) {
    const present = await tablePresent(pool);
    const [records, now] = await Promise.all([present ? new BackfillStore(pool).list() : Promise.resolve([]), serverNow(pool)]);
    const changed: BackfillRecord[] = [];
    for (const record of records) {
      samples.set(record.name, addSample(samples.get(record.name) ?? [], { at: Date.now(), rowsRead: record.rowsRead }));
      const key = changeKey(record);
      if (keys.get(record.name) !== key) changed.push(record);
      keys.set(record.name, key);
    }
    const removed = [...keys.keys()].filter((name) => !records.some((r) => r.name === name));
    for (const name of removed) {
      keys.delete(name);
      samples.delete(name);
    }
    if (o.json) {
      for (const record of changed) o.out(JSON.stringify(record));
      for (const name of removed) o.out(JSON.stringify({ name, removed: true }));
    } else if (o.terminal) {
      const lines = records.length ? listTable(records, now, { bar: true }) : ['no backfills'];
      o.terminal.write(redraw(drawn, lines, o.terminal.columns));
      drawn = lines.length;
    } else {
      for (const record of changed) o.out(changeLine(record, samples.get(record.name)));
      for (const name of removed) o.out(`${name}  removed`);
      if (records.length === 0 && !saidNone) o.out('no backfills');
      saidNone = records.length === 0;
    }
    if (records.every((r) => FINISHED_PHASES.has(r.phase))) return 0;
    await sleep(o.intervalMs);
  }
}

async function start(argv: string[], out: Out, terminal: Terminal | undefined): Promise<number> {
  const { values } = parse(argv, {
    'database-url': { type: 'string' },
    file: { type: 'string', short: 'f', multiple: true },
    trigger: { type: 'string' },
    name: { type: 'string' },
    filter: { type: 'string' },
    'batch-size': { type: 'string' },
    'rows-per-second': { type: 'string' },
    wait: { type: 'boolean' },
    json: { type: 'boolean' },
    interval: { type: 'string' },
  });
  const files = (values.file as string[] | undefined) ?? [];
  const triggerFlag = values.trigger as string | undefined;
  if (!triggerFlag) throw new SettingsError(`backfill start needs --trigger ns/name\n\n${BACKFILL_USAGE}`);
  if (files.length === 0) throw new SettingsError('backfill start needs -f <manifests>: the EventTrigger says which table to read and where its rows go');
  const batchSize = integerFlag('--batch-size', values['batch-size'] as string | undefined, 1, 10_000) ?? 1000;
  const rowsPerSecond = integerFlag('--rows-per-second', values['rows-per-second'] as string | undefined, 1, 1_000_000);
  const filter = values.filter as string | undefined;
  checkFilterSyntax(filter);
  const intervalMs = intervalFlag(values.interval as string | undefined);

  const triggerKey = qualifiedName(triggerFlag);
  const triggers = loadManifests(files).triggers;
  const trigger = triggers.find((t) => resourceKey(t.metadata) === triggerKey);
  if (!trigger) {
    const known = triggers.map((t) => resourceKey(t.metadata));
    throw new SettingsError(`EventTrigger ${triggerKey} is not in ${files.join(', ')}${known.length ? `; the EventTriggers there are ${known.join(', ')}` : ': there is no EventTrigger there'}`);
  }
  const namespace = trigger.metadata.namespace ?? 'default';
  const nameFlag = values.name as string | undefined;
  const name = qualifiedName(nameFlag ?? defaultBackfillName(trigger.metadata.name, new Date()), namespace);
  const [nameNamespace, shortName] = name.split('/', 2) as [string, string];
  if (name.split('/').length !== 2 || !LABEL.test(nameNamespace) || !LABEL.test(shortName) || shortName.length > 253) {
    throw new SettingsError(`--name must be a name of lower-case letters, digits and "-" (optionally namespace/name), got "${nameFlag}"`);
  }
  if (nameNamespace !== namespace) {
    throw new SettingsError(`--name ${name}: a backfill lives in the namespace of its EventTrigger (${namespace}); use --name ${namespace}/${shortName} or just ${shortName}`);
  }

  return withDatabase(values['database-url'] as string | undefined, async (pool) => {
    const columns = await checkTable(pool, trigger);
    checkFilterColumns(filter, `${trigger.spec.table.schema}.${trigger.spec.table.name}`, columns);
    const store = new BackfillStore(pool);
    await store.ensureSchema();
    const created = await store.create({ name, origin: 'cli', trigger: triggerKey, batchSize, ...(filter !== undefined ? { filter } : {}), ...(rowsPerSecond !== undefined ? { rowsPerSecond } : {}) });
    if (!created) {
      const existing = await store.get(name);
      throw new SettingsError(`backfill ${name} exists already${existing ? ` (${existing.phase}, created ${existing.createdAt.toISOString()})` : ''}; choose another --name`);
    }
    await pool.query('SELECT pg_notify($1, $2)', [BACKFILL_CHANNEL, name]);
    const follow = { intervalMs, json: values.json === true, out, terminal };
    if (values.json) {
      if (!values.wait) out(JSON.stringify(await store.get(name)));
    } else {
      out(`backfill ${name} created: the rows of ${trigger.spec.table.schema}.${trigger.spec.table.name} go through EventTrigger ${triggerKey} once a dispatcher serving it picks it up`);
      if (!values.wait) {
        out(`follow it:  eventide backfill status --database-url <url> ${name} --watch`);
        out(`cancel it:  eventide backfill cancel --database-url <url> ${name}`);
      }
    }
    return values.wait ? followOne(pool, name, follow) : 0;
  });
}

function intervalFlag(text: string | undefined): number {
  const ms = durationFlag('--interval', text, 1000);
  if (ms <= 0) throw new SettingsError(`--interval must be longer than 0, got "${text}"`);
  return ms;
}

async function status(argv: string[], out: Out, terminal: Terminal | undefined): Promise<number> {
  const { values, positionals } = parse(argv, { 'database-url': { type: 'string' }, watch: { type: 'boolean' }, json: { type: 'boolean' }, interval: { type: 'string' } }, 1);
  const intervalMs = intervalFlag(values.interval as string | undefined);
  const name = positionals[0] === undefined ? undefined : qualifiedName(positionals[0]);
  const json = values.json === true;
  return withDatabase(values['database-url'] as string | undefined, async (pool) => {
    const follow = { intervalMs, json, out, terminal };
    if (name !== undefined) {
      const record = (await tablePresent(pool)) ? await new BackfillStore(pool).get(name) : undefined;
      if (!record) throw await unknownBackfill(pool, name);
      if (values.watch) return followOne(pool, name, follow);
      if (json) out(JSON.stringify(record));
      else for (const line of detailLines(record, await serverNow(pool), { bar: terminal !== undefined })) out(line);
      return 0;
    }
    if (values.watch) return followAll(pool, follow);
    const records = (await tablePresent(pool)) ? await new BackfillStore(pool).list() : [];
    if (json) out(JSON.stringify({ backfills: records }));
    else if (records.length === 0) out('no backfills');
    else for (const line of listTable(records, await serverNow(pool), { bar: terminal !== undefined })) out(line);
    return 0;
  });
}

async function cancel(argv: string[], out: Out): Promise<number> {
  const { values, positionals } = parse(argv, { 'database-url': { type: 'string' } }, 1);
  if (positionals[0] === undefined) throw new SettingsError(`backfill cancel needs the name of a backfill\n\n${BACKFILL_USAGE}`);
  const name = qualifiedName(positionals[0]);
  return withDatabase(values['database-url'] as string | undefined, async (pool) => {
    const store = new BackfillStore(pool);
    const before = (await tablePresent(pool)) ? await store.get(name) : undefined;
    if (!before) throw await unknownBackfill(pool, name);
    const after = FINISHED_PHASES.has(before.phase) ? before : await store.cancel(name, 'cancelled with eventide backfill cancel');
    if (!after) throw new SettingsError(`backfill ${name} was removed meanwhile`);
    if (after !== before) await pool.query('SELECT pg_notify($1, $2)', [BACKFILL_CHANNEL, name]);
    const progress = progressLine(after, { sent: after.rowsSent });
    switch (after.phase) {
      case 'Cancelled':
        out(before.phase === 'Cancelled' ? `backfill ${name} was already cancelled (${progress})` : `backfill ${name} cancelled (was ${before.phase}; ${progress})`);
        return 0;
      case 'Complete':
        out(`backfill ${name} had already completed (${progress}): nothing to cancel`);
        return 1;
      case 'Failed':
        out(`backfill ${name} had already failed (${after.message ?? 'no message'}): nothing to cancel`);
        return 1;
      default:
        out(`backfill ${name} is still ${after.phase}`);
        return 1;
    }
  });
}

/**
 * `eventide backfill start|status|cancel`: sending a table's existing rows through an EventTrigger
 * (op `read`), following its progress, stopping it. The backfill itself is run by the dispatcher
 * serving the trigger: the command writes a row into eventide.backfills and notifies BACKFILL_CHANNEL.
 */
export async function runBackfillCommand(argv: string[], out: Out = stdout, terminal: Terminal | undefined = stdoutTerminal()): Promise<number> {
  const [action, ...rest] = argv;
  switch (action) {
    case 'start':
      return start(rest, out, terminal);
    case 'status':
      return status(rest, out, terminal);
    case 'cancel':
      return cancel(rest, out);
    default:
      throw new SettingsError(`backfill needs "start", "status" or "cancel"\n\n${BACKFILL_USAGE}`);
  }
}
