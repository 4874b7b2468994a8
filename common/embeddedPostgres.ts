import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './loopback.js';

/** Options for a throwaway PostgreSQL server. */
export interface EmbeddedPostgresOptions {
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  /** Database user created by initdb (trust auth on loopback). */
  user?: string;
  /** Port to listen on; a free one is picked when absent. */
  port?: number;
  /**
   * Reachable beyond loopback (pods of a real node reach a database outside the cluster, as a managed
   * one would be): extra addresses to listen on, and the networks allowed in with a password (scram).
   */
  network?: { listen: string[]; allow: string[] };
}

/** A running throwaway PostgreSQL server with logical replication enabled. */
export interface EmbeddedPostgres {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Connection URL for another database on the same server. */
  urlFor(database: string): string;
  /** Stops the server: `fast` finishes cleanly, `immediate` is a crash (recovery on next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts the server again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops the server and removes every file it wrote. */
  destroy(): Promise<void>;
}

const DEFAULT_SETTINGS: Record<string, string | number> = {
  wal_level: 'logical',
  max_replication_slots: 20,
  max_wal_senders: 20,
  // Throwaway data: durability against OS crashes buys nothing and costs seconds per test.
  fsync: 'off',
  full_page_writes: 'off',
  listen_addresses: '127.0.0.1',
  max_connections: 200,
  TimeZone: 'UTC',
};

/** Finds the newest PostgreSQL server binaries on the machine (>= 15), or EVENTIDE_PG_BIN. */
export function findPostgresBinDir(): string {
  const override = process.env.EVENTIDE_PG_BIN;
  if (override) {
    if (!existsSync(join(override, 'postgres'))) throw new Error(`EVENTIDE_PG_BIN=${override} has no postgres binary`);
    return override;
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => Number(v) >= 15 && existsSync(join(root, v, 'bin', 'postgres'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  const newest = versions[0];
  if (!newest) {
    throw new Error('No PostgreSQL >= 15 server binaries found under /usr/lib/postgresql. Install them (apt-get install postgresql) or set EVENTIDE_PG_BIN.');
  }
  return join(root, newest, 'bin');
}

/** Postgres refuses to run as root: when we are root, the unprivileged system user it runs as (else undefined). */
export function serverIdentity(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
      const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
      return { uid, gid };
    } catch {
      // try the next candidate
    }
  }
  throw new Error('running as root and neither a "postgres" nor a "nobody" user exists to run PostgreSQL as');
}

/**
 * The first directory on the way to `path` that `identity` cannot enter (no search permission for it),
 * or undefined. Only meaningful when we are root and the server runs as another user.
 */
export function firstUnreachableDir(path: string, identity: { uid: number; gid: number }, stat: (dir: string) => { mode: number; uid: number; gid: number } = statSync): string | undefined {
  const parts = resolve(path).split('/').filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    const { mode, uid, gid } = stat(dir);
    const searchable = uid === identity.uid ? mode & 0o100 : gid === identity.gid ? mode & 0o010 : mode & 0o001;
    if (!searchable) return dir;
  }
  return undefined;
}

function run(bin: string, args: string[], identity: { uid: number; gid: number } | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], ...identity, env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${bin} ${args.join(' ')} exited ${code}: ${output}`))));
  });
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts a throwaway PostgreSQL server in a temp dir on a free port, with wal_level=logical. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const binDir = findPostgresBinDir();
  const identity = serverIdentity();
  if (identity) {
    const blocked = firstUnreachableDir(tmpdir(), identity);
    if (blocked) {
      throw new Error(
        `PostgreSQL refuses to run as root, so it runs as uid ${identity.uid}, which cannot enter ${blocked} on the way to the temp dir ${tmpdir()}: ` +
          'make it searchable (chmod o+x) or set TMPDIR to a directory it can reach',
      );
    }
  }
  const root = mkdtempSync(join(tmpdir(), 'eventide-pg-'));
  const dataDir = join(root, 'data');
  const socketDir = join(root, 'sock');
  mkdirSync(socketDir);
  if (identity) {
    chownSync(root, identity.uid, identity.gid);
    chownSync(socketDir, identity.uid, identity.gid);
  }
  const user = options.user ?? 'eventide';
  await run(join(binDir, 'initdb'), ['-D', dataDir, '-U', user, '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'], identity);
  const port = options.port ?? (await freePort());
  const settings = { ...DEFAULT_SETTINGS, ...options.settings };
  if (options.network) {
    settings.listen_addresses = ['127.0.0.1', ...options.network.listen].join(',');
    settings.password_encryption = 'scram-sha-256';
    const lines = options.network.allow.map((cidr) => `host all all ${cidr} scram-sha-256\n`).join('');
    appendFileSync(join(dataDir, 'pg_hba.conf'), lines);
  }
  const args = ['-D', dataDir, '-p', String(port), '-k', socketDir];
  for (const [name, value] of Object.entries(settings)) args.push('-c', `${name}=${value}`);

  let child: ChildProcess | undefined;
  let log = '';

  async function start(): Promise<void> {
    log = '';
    const proc = spawn(join(binDir, 'postgres'), args, { stdio: ['ignore', 'pipe', 'pipe'], ...identity });
    child = proc;
    running.add(proc);
    proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
    proc.stdout?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
    proc.once('exit', () => running.delete(proc));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`postgres exited with ${proc.exitCode}: ${log}`);
      if (/ready to accept connections/.test(log)) return;
      if (Date.now() > deadline) throw new Error(`postgres did not start within 30s: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    // SIGINT is "fast" shutdown, SIGQUIT "immediate" (a crash: WAL replay on the next start).
    proc.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    await exited;
    child = undefined;
  }

  await start();
  const baseUrl = (database: string) => `postgres://${user}@127.0.0.1:${port}/${database}`;
  return {
    url: baseUrl('postgres'),
    port,
    dataDir,
    urlFor: baseUrl,
    stop,
    start,
    async destroy() {
      await stop('immediate');
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Name of the user the current process runs as (for messages). */
export function currentUser(): string {
  return userInfo().username;
}
