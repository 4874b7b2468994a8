import { type ParseArgsConfig, parseArgs } from 'node:util';
import type pg from 'pg';
import { loadManifests, resourceKey } from '../../api/v1alpha1/index.js';
import { DATABASE_URL_ENV } from '../../common/secretEnv.js';
import { withCommandDatabase } from '../cliDatabase.js';
import { durationFlag, SettingsError } from '../settings.js';
import { BACKLOG_CHANNEL } from './backlogNotifications.js';
import { manualEvent, readInvokedRow } from './manualInvoke.js';
import { BacklogStore } from './store.js';

export const EVENTS_USAGE = `Usage: eventide events list      --database-url <url> [--trigger ns/name] [--json]
       eventide events redeliver --database-url <url> --trigger ns/name (--id <n> ... | --all)
       eventide invoke --database-url <url> -f <manifests> --trigger ns/name --key <column>=<value> ... [--wait <duration>]
`;

type Out = (line: string) => void;
const stdout: Out = (l) => process.stdout.write(`${l}\n`);

/** Runs `action` on the database named by the flag or the environment. */
function withDatabase<T>(databaseUrl: string | undefined, action: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const url = databaseUrl ?? process.env[DATABASE_URL_ENV];
  if (!url) throw new SettingsError(`--database-url (or ${DATABASE_URL_ENV}) is required\n\n${EVENTS_USAGE}`);
  return withCommandDatabase(url, 'database error', async (pool) => {
    try {
      return await action(pool);
    } catch (error) {
      if ((error as { code?: string }).code === '42P01') throw new SettingsError('no backlog in this database yet (no dispatcher has run against it)');
      throw error;
    }
  });
}

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>): Record<string, string | boolean | (string | boolean)[] | undefined> {
  try {
    return parseArgs({ args: argv, options, strict: true }).values;
  } catch (error) {
    throw new SettingsError(`${(error as Error).message}\n\n${EVENTS_USAGE}`);
  }
}

function ageText(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** `eventide events list|redeliver`: what waits in the trigger backlogs, and sending it again with fresh retries. */
export async function runEventsCommand(argv: string[], out: Out = stdout): Promise<number> {
  const [action, ...rest] = argv;
  if (action === 'list') {
    const values = parse(rest, { 'database-url': { type: 'string' }, trigger: { type: 'string' }, json: { type: 'boolean' } });
    const trigger = values.trigger as string | undefined;
    return withDatabase(values['database-url'] as string | undefined, async (pool) => {
      const store = new BacklogStore(pool);
      const summaries = await store.summary(trigger);
      const heads = trigger ? await store.heads(trigger, 20) : [];
      if (values.json) {
        out(JSON.stringify({ triggers: summaries.map((s) => ({ ...s, maxCommitLsn: s.maxCommitLsn.toString() })), heads }));
        return 0;
      }
      if (summaries.length === 0) out(trigger ? `no events waiting for ${trigger}` : 'no events waiting');
      const now = Date.now();
      for (const s of summaries) {
        out(`${s.trigger}  ${s.events} event(s) waiting, oldest committed ${s.oldestCommitTime ? ageText(now - s.oldestCommitTime.getTime()) : '?'} ago`);
      }
      if (heads.length) out('first waiting event per key (the ones the rest of their key waits behind):');
      for (const h of heads) {
        out(`  #${h.id}  ${h.orderingKey}  event ${h.eventId}  ${h.waiting} waiting  attempts ${h.attempts}  ${h.reason}${h.lastError ? `  last: ${h.lastError}` : ''}`);
      }
      return 0;
    });
  }
  if (action === 'redeliver') {
    const values = parse(rest, { 'database-url': { type: 'string' }, trigger: { type: 'string' }, id: { type: 'string', multiple: true }, all: { type: 'boolean' } });
    const trigger = values.trigger as string | undefined;
    if (!trigger) throw new SettingsError(`redeliver needs --trigger ns/name\n\n${EVENTS_USAGE}`);
    const ids = ((values.id as string[] | undefined) ?? []).map((text) => {
      const id = Number(text);
      if (!Number.isInteger(id) || id <= 0) throw new SettingsError(`--id must be a backlog event number (see events list), got "${text}"`);
      return id;
    });
    if (ids.length === 0 && !values.all) throw new SettingsError('redeliver needs --id <n> (repeatable) or --all');
    return withDatabase(values['database-url'] as string | undefined, async (pool) => {
      const count = await new BacklogStore(pool).redeliver(trigger, values.all ? 'all' : ids);
      await pool.query('SELECT pg_notify($1, $2)', [BACKLOG_CHANNEL, trigger]);
      out(`requeued ${count} event(s) of ${trigger} with fresh retries`);
      if (ids.length && count < ids.length) {
        out(`${ids.length - count} of the given ids were not waiting for ${trigger} (delivered already, or another trigger's)`);
        return 1;
      }
      return 0;
    });
  }
  throw new SettingsError(`events needs "list" or "redeliver"\n\n${EVENTS_USAGE}`);
}

/**
 * `eventide invoke`: sends a row's current state through a trigger as an event of op `manual`. The
 * event is added to the trigger's backlog, so the dispatcher delivers it with the trigger's format,
 * signing, retries and dead letters; --wait waits until it was delivered or dead-lettered.
 */
export async function runInvokeCommand(argv: string[], out: Out = stdout): Promise<number> {
  const values = parse(argv, {
    'database-url': { type: 'string' },
    file: { type: 'string', short: 'f', multiple: true },
    trigger: { type: 'string' },
    key: { type: 'string', multiple: true },
    wait: { type: 'string' },
  });
  const triggerKey = values.trigger as string | undefined;
  const files = (values.file as string[] | undefined) ?? [];
  if (!triggerKey) throw new SettingsError(`invoke needs --trigger ns/name\n\n${EVENTS_USAGE}`);
  if (files.length === 0) throw new SettingsError('invoke needs -f <manifests>: the trigger says which table the row is in');
  const pairs = (values.key as string[] | undefined) ?? [];
  if (pairs.length === 0) throw new SettingsError('invoke needs --key <column>=<value> naming the row');
  const match = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new SettingsError(`--key expects <column>=<value>, got "${pair}"`);
    match.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const waitMs = durationFlag('--wait', values.wait as string | undefined, 0);
  const trigger = loadManifests(files).triggers.find((t) => resourceKey(t.metadata) === triggerKey);
  if (!trigger) throw new SettingsError(`EventTrigger ${triggerKey} is not in ${files.join(', ')}`);
  return withDatabase(values['database-url'] as string | undefined, async (pool) => {
    const store = new BacklogStore(pool);
    await store.ensureSchema();
    const client = await pool.connect();
    let event;
    try {
      event = manualEvent(trigger, await readInvokedRow(client, trigger.spec.table, match), new Date());
    } finally {
      client.release();
    }
    await store.park([{ event, attempts: 0, reason: 'manual' }]);
    await pool.query('SELECT pg_notify($1, $2)', [BACKLOG_CHANNEL, triggerKey]);
    out(`queued event ${event.id} for ${triggerKey} (${event.attributes.subject})`);
    if (waitMs === 0) return 0;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const { rows } = await pool.query<{ waiting: boolean; dead: string | null }>(
        `SELECT EXISTS (SELECT 1 FROM eventide.backlog WHERE trigger = $1 AND event_id = $2) AS waiting,
                (SELECT reason || ': ' || last_error FROM eventide.dead_letters WHERE trigger = $1 AND event_id = $2) AS dead`,
        [triggerKey, event.id],
      );
      const row = rows[0]!;
      if (row.dead) {
        out(`dead-lettered: ${row.dead}`);
        return 1;
      }
      if (!row.waiting) {
        out('delivered');
        return 0;
      }
      if (Date.now() > deadline) {
        out(`still waiting after ${values.wait as string}: is a dispatcher serving ${triggerKey}? (see eventide events list --trigger ${triggerKey})`);
        return 1;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  });
}
