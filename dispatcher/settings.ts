import { accessSync, constants } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { parseDuration } from '../api/v1alpha1/duration.js';
import { EventideError } from '../common/errors.js';
import { DATABASE_URL_ENV } from '../common/secretEnv.js';
import type { DatabaseTls } from './source/connectionConfig.js';

/** Typed settings of `eventide dispatch`, parsed once at start-up. */
export interface DispatchSettings {
  databaseUrl: string;
  manifestPaths: string[];
  /** Function name (or namespace/name) → URL, for running outside a cluster. */
  functionUrls: Map<string, string>;
  /** URL template for functions in a cluster: {name} and {namespace} are replaced. */
  functionUrlTemplate?: string;
  port: number;
  host: string;
  slotName?: string;
  publicationName?: string;
  maxInflightEvents: number;
  maxInflightBytes: number;
  drainTimeoutMs: number;
  /** How long a failing event retries in memory before it moves to its trigger's backlog. */
  retryInMemoryMs: number;
  watchConfig: boolean;
  /** Database for the dead-letter table; the source database when absent. */
  deadLetterDatabaseUrl?: string;
  /** CA and client certificate files for the source database (verify-full). */
  databaseTls?: DatabaseTls;
}

/** Bad command-line input; the message says which flag and what is wrong. */
export class SettingsError extends EventideError {
  override readonly code = 'EVENTIDE_SETTINGS';
  override readonly name = 'SettingsError';
}

export const DISPATCH_USAGE = `Usage: eventide dispatch --database-url <url> -f <file-or-dir> [options]

  --database-url <url>          source database (or env ${DATABASE_URL_ENV})
  -f, --file <path>             EventTrigger/Function manifests (file or directory; repeatable)
  --function-url <name>=<url>   where a Function is served (repeatable; name or namespace/name)
  --function-url-template <t>   URL for Functions in a cluster, e.g. http://{name}.{namespace}.svc.cluster.local
  --port <n>                    /metrics, /healthz, /readyz (default 9090)
  --host <addr>                 listen address (default 0.0.0.0)
  --slot <name>                 replication slot (default from the triggers' source, else "eventide")
  --publication <name>          publication (default: the slot name)
  --max-inflight-events <n>     events held in memory before reading pauses (default 4000)
  --max-inflight-bytes <n>      payload bytes held in memory before reading pauses (default 16 MiB)
  --drain-timeout <ms>          on SIGTERM, how long in-flight deliveries may finish (default 10000)
  --retry-in-memory <duration>  how long a failing event retries in memory before it waits in its
                                trigger's backlog (table eventide.backlog) instead (default 5s)
  --watch-config                reload the manifests when the files change
  --dead-letter-database-url    database for the eventide.dead_letters table (default: the source)
  --database-ca <file>          CA certificate(s) the source database's certificate must chain to;
                                the connection is verified like sslmode=verify-full (host name too)
  --database-cert <file>, --database-key <file>
                                client certificate and key, for certificate authentication
`;

/** A duration flag (`500ms`, `5s`, `1m`) in milliseconds; absent, the fallback. */
export function durationFlag(flag: string, text: string | undefined, fallbackMs: number): number {
  if (text === undefined) return fallbackMs;
  try {
    return parseDuration(text);
  } catch {
    throw new SettingsError(`${flag} must be a duration such as 500ms, 5s or 1m, got "${text}"`);
  }
}

function positiveInt(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new SettingsError(`${flag} must be a positive integer, got "${text}"`);
  return value;
}

/**
 * Checks that pg can parse a database URL (a bad port or an unencoded "@" in the password would
 * otherwise surface as a stack trace at connect time). The URL itself is not printed: it may hold a password.
 */
function checkDatabaseUrl(flag: string, url: string): void {
  if (!/^postgres(ql)?:\/\//.test(url)) throw new SettingsError(`${flag} must be a postgres:// URL`);
  try {
    new pg.Client({ connectionString: url });
  } catch (error) {
    throw new SettingsError(`${flag} is not a valid connection URL (${(error as Error).message}): check the host and port, and percent-encode special characters in the user name and password`);
  }
}

function parseFunctionUrls(pairs: string[]): Map<string, string> {
  const urls = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    const url = pair.slice(eq + 1);
    if (eq <= 0 || !/^https?:\/\/.+/.test(url)) throw new SettingsError(`--function-url expects name=http://host:port/path, got "${pair}"`);
    urls.set(name, url);
  }
  return urls;
}

/** The TLS files, each checked to be readable now rather than at the first connection. */
function parseDatabaseTls(ca: string | undefined, cert: string | undefined, key: string | undefined): DatabaseTls | undefined {
  if ((cert === undefined) !== (key === undefined)) throw new SettingsError('--database-cert and --database-key go together: give both or neither');
  for (const [flag, file] of [
    ['--database-ca', ca],
    ['--database-cert', cert],
    ['--database-key', key],
  ] as const) {
    if (file === undefined) continue;
    try {
      accessSync(file, constants.R_OK);
    } catch {
      throw new SettingsError(`${flag}: cannot read ${file}`);
    }
  }
  if (!ca && !cert) return undefined;
  return { ...(ca ? { caFile: ca } : {}), ...(cert ? { certFile: cert } : {}), ...(key ? { keyFile: key } : {}) };
}

/** Parses `eventide dispatch` arguments; env supplies the database URL so it need not be on the command line. */
export function parseDispatchSettings(argv: string[], env: NodeJS.ProcessEnv = process.env): DispatchSettings {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'database-url': { type: 'string' },
        file: { type: 'string', short: 'f', multiple: true },
        'function-url': { type: 'string', multiple: true },
        'function-url-template': { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        slot: { type: 'string' },
        publication: { type: 'string' },
        'max-inflight-events': { type: 'string' },
        'max-inflight-bytes': { type: 'string' },
        'drain-timeout': { type: 'string' },
        'retry-in-memory': { type: 'string' },
        'watch-config': { type: 'boolean' },
        'dead-letter-database-url': { type: 'string' },
        'database-ca': { type: 'string' },
        'database-cert': { type: 'string' },
        'database-key': { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    throw new SettingsError(`${(error as Error).message}\n\n${DISPATCH_USAGE}`);
  }
  const databaseUrl = values['database-url'] ?? env[DATABASE_URL_ENV];
  if (!databaseUrl) throw new SettingsError(`--database-url (or ${DATABASE_URL_ENV}) is required\n\n${DISPATCH_USAGE}`);
  checkDatabaseUrl('--database-url', databaseUrl);
  if (values['dead-letter-database-url']) checkDatabaseUrl('--dead-letter-database-url', values['dead-letter-database-url']);
  const manifestPaths = values.file ?? [];
  if (manifestPaths.length === 0) throw new SettingsError(`-f <file-or-dir> is required: the EventTrigger manifests to serve\n\n${DISPATCH_USAGE}`);
  for (const name of ['slot', 'publication'] as const) {
    const v = values[name];
    if (v !== undefined && !/^[a-z0-9_]{1,63}$/.test(v)) throw new SettingsError(`--${name} must be lower-case letters, digits and _ (at most 63), got "${v}"`);
  }
  const databaseTls = parseDatabaseTls(values['database-ca'], values['database-cert'], values['database-key']);
  return {
    databaseUrl,
    manifestPaths,
    ...(databaseTls ? { databaseTls } : {}),
    functionUrls: parseFunctionUrls(values['function-url'] ?? []),
    ...(values['function-url-template'] ? { functionUrlTemplate: values['function-url-template'] } : {}),
    port: values.port === '0' ? 0 : positiveInt('--port', values.port, 9090),
    host: values.host ?? '0.0.0.0',
    ...(values.slot ? { slotName: values.slot } : {}),
    ...(values.publication ? { publicationName: values.publication } : {}),
    // A larger window bought nothing: with 10000 events a 1M-row backlog drained slower (more live
    // objects for the GC to trace) and peaked ~20 MiB higher than with 4000 (npm run bench -- --only rss).
    maxInflightEvents: positiveInt('--max-inflight-events', values['max-inflight-events'], 4_000),
    maxInflightBytes: positiveInt('--max-inflight-bytes', values['max-inflight-bytes'], 16 * 1024 * 1024),
    drainTimeoutMs: positiveInt('--drain-timeout', values['drain-timeout'], 10_000),
    retryInMemoryMs: durationFlag('--retry-in-memory', values['retry-in-memory'], 5_000),
    watchConfig: values['watch-config'] ?? false,
    ...(values['dead-letter-database-url'] ? { deadLetterDatabaseUrl: values['dead-letter-database-url'] } : {}),
  };
}
