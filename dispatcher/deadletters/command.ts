import { parseArgs } from 'node:util';
import { loadManifests } from '../../api/v1alpha1/index.js';
import { DATABASE_URL_ENV } from '../../common/secretEnv.js';
import { withCommandDatabase } from '../cliDatabase.js';
import { HttpSender } from '../delivery/httpSender.js';
import { resolveConfig } from '../servedConfig.js';
import { SettingsError } from '../settings.js';
import { type ReplayReport, replayDeadLetters } from './replay.js';
import { DeadLetterStore, type StoredDeadLetter } from './store.js';

export const DEADLETTERS_USAGE = `Usage: eventide deadletters list   --database-url <url> [--trigger ns/name] [--include-replayed] [--json]
       eventide deadletters replay --database-url <url> -f <manifests> [--function-url name=url] (--id <n> | --trigger ns/name | --all)
`;

/** `eventide deadletters list|replay`; prints a report and returns the exit code (1 when a replay failed). */
export async function runDeadLettersCommand(argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const [action, ...rest] = argv;
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        'database-url': { type: 'string' },
        file: { type: 'string', short: 'f', multiple: true },
        'function-url': { type: 'string', multiple: true },
        'function-url-template': { type: 'string' },
        trigger: { type: 'string' },
        id: { type: 'string' },
        all: { type: 'boolean' },
        'include-replayed': { type: 'boolean' },
        json: { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new SettingsError(`${(error as Error).message}\n\n${DEADLETTERS_USAGE}`);
  }
  const databaseUrl = values['database-url'] ?? process.env[DATABASE_URL_ENV];
  if (!databaseUrl) throw new SettingsError(`--database-url is required\n\n${DEADLETTERS_USAGE}`);
  if (action !== 'list' && action !== 'replay') throw new SettingsError(`deadletters needs "list" or "replay"\n\n${DEADLETTERS_USAGE}`);
  const id = values.id !== undefined ? Number(values.id) : undefined;
  if (id !== undefined && !Number.isInteger(id)) throw new SettingsError(`--id must be a number, got "${values.id}"`);
  return withCommandDatabase(databaseUrl, 'cannot read the dead letters from the database', (pool) => runAction(action, values, id, new DeadLetterStore(pool), out));
}

async function runAction(
  action: 'list' | 'replay',
  values: { trigger?: string; 'include-replayed'?: boolean; json?: boolean; all?: boolean; file?: string[]; 'function-url'?: string[]; 'function-url-template'?: string },
  id: number | undefined,
  store: DeadLetterStore,
  out: (line: string) => void,
): Promise<number> {
  if (action === 'list') {
    const letters: StoredDeadLetter[] = [];
    for await (const page of store.pages({
      ...(values.trigger ? { trigger: values.trigger } : {}),
      ...(id !== undefined ? { id } : {}),
      includeReplayed: values['include-replayed'] ?? false,
    }))
      letters.push(...page);
    if (values.json) out(JSON.stringify(letters.map(({ eventJson: _e, attributesJson: _a, dataJson: _d, oldJson: _o, newJson: _n, ...rest }) => rest)));
    else {
      out(`${letters.length} dead letter(s)`);
      for (const l of letters) {
        out(`#${l.id}  ${l.trigger}  event ${l.eventId}  attempts ${l.attempts}  ${l.reason}  last: ${l.lastError}${l.replayedAt ? `  replayed ${l.replayedAt.toISOString()}` : ''}`);
      }
    }
    return 0;
  }
  if (id === undefined && !values.trigger && !values.all) throw new SettingsError('replay needs --id <n>, --trigger ns/name or --all');
  const files = values.file ?? [];
  if (files.length === 0) throw new SettingsError('replay needs -f <manifests>: the triggers say where each event goes');
  const functionUrls = new Map((values['function-url'] ?? []).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)] as [string, string]));
  const config = resolveConfig(loadManifests(files), { functionUrls, functionUrlTemplate: values['function-url-template'] }, process.env);
  const selector = { ...(values.trigger ? { trigger: values.trigger } : {}), ...(id !== undefined ? { id } : {}) };
  const sender = new HttpSender({ connectionsPerOrigin: 4 });
  try {
    // Page by page (after the last id seen), so --all replays every pending dead letter, however many.
    const report: ReplayReport = { replayed: [], failed: [] };
    let found = 0;
    for await (const page of store.pages(selector)) {
      found += page.length;
      const done = await replayDeadLetters(
        store,
        page.filter((l) => !l.replayedAt || id !== undefined),
        config.deliveries,
        sender,
      );
      report.replayed.push(...done.replayed);
      report.failed.push(...done.failed);
    }
    if (id !== undefined && found === 0) throw new SettingsError(`no dead letter with id ${id}`);
    if (values.json) out(JSON.stringify(report));
    else {
      out(`replayed ${report.replayed.length}, failed ${report.failed.length}`);
      for (const r of report.replayed) out(`  ok      #${r.id}  ${r.trigger}  event ${r.eventId}`);
      for (const f of report.failed) out(`  FAILED  #${f.id}  ${f.trigger}  event ${f.eventId}: ${f.reason}`);
    }
    return report.failed.length ? 1 : 0;
  } finally {
    await sender.close();
  }
}
