/**
 * Debezium Server for the peer bench: its distribution from Maven Central (cached under .cache/debezium/),
 * a Java 21+ runtime found on the machine, and the server as a child process with its HTTP sink and the
 * Postgres connector (pgoutput) on the bench's database.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../common/loopback.js';

export const DEBEZIUM_VERSION = '3.6.1.Final';
/** io.debezium:debezium-server-dist:3.6.1.Final, type tar.gz, no classifier. */
export const DEBEZIUM_DIST_URL = `https://repo1.maven.org/maven2/io/debezium/debezium-server-dist/${DEBEZIUM_VERSION}/debezium-server-dist-${DEBEZIUM_VERSION}.tar.gz`;
/**
 * SHA-256 of that file as Maven Central served it when this bench was written (781,529,954 bytes; the
 * repository publishes no .sha1/.sha256 beside it, so the bench pins its own).
 */
export const DEBEZIUM_DIST_SHA256 = 'f95567c7107e5ae0a778dce850c36e86487b2c49e131dfc9bbb72c7ac2feb944';

const CACHE = fileURLToPath(new URL('../../.cache/debezium/', import.meta.url));
const ARCHIVE = join(CACHE, `debezium-server-dist-${DEBEZIUM_VERSION}.tar.gz`);
const UNPACKED = join(CACHE, `debezium-server-${DEBEZIUM_VERSION}`);

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/** Downloads (once) and unpacks (once) the distribution; returns the server directory (run.sh, lib/, the runner jar). */
export async function ensureDebeziumServer(log: (line: string) => void = console.log): Promise<string> {
  const serverDir = join(UNPACKED, 'debezium-server');
  if (existsSync(join(serverDir, 'lib'))) return serverDir;
  mkdirSync(CACHE, { recursive: true });
  if (!existsSync(ARCHIVE)) {
    log(`  downloading ${DEBEZIUM_DIST_URL} (~780 MB, once) ...`);
    const started = Date.now();
    const response = await fetch(DEBEZIUM_DIST_URL);
    if (!response.ok || !response.body) throw new Error(`GET ${DEBEZIUM_DIST_URL}: HTTP ${response.status}`);
    const partial = `${ARCHIVE}.part`;
    await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), createWriteStream(partial));
    renameSync(partial, ARCHIVE);
    log(`  downloaded in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  const digest = await sha256Of(ARCHIVE);
  if (digest !== DEBEZIUM_DIST_SHA256) {
    throw new Error(`${ARCHIVE} has SHA-256 ${digest}, expected ${DEBEZIUM_DIST_SHA256}: delete it to download it again`);
  }
  log(`  unpacking into ${UNPACKED} ...`);
  const staging = mkdtempSync(join(CACHE, 'unpack-'));
  try {
    execFileSync('tar', ['xzf', ARCHIVE, '-C', staging], { stdio: 'inherit' });
    rmSync(UNPACKED, { recursive: true, force: true });
    renameSync(staging, UNPACKED);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return serverDir;
}

export interface JavaRuntime {
  home: string;
  major: number;
  /** The first line `java -version` prints. */
  version: string;
}

function javaAt(home: string): JavaRuntime | undefined {
  const bin = join(home, 'bin', 'java');
  if (!existsSync(bin)) return undefined;
  // `java -version` prints to stderr.
  const result = spawnSync(bin, ['-version'], { encoding: 'utf8' });
  const output = `${result.stderr ?? ''}${result.stdout ?? ''}`;
  const match = /version "(\d+)(?:\.(\d+))?/.exec(output);
  if (result.status !== 0 || !match) return undefined;
  const major = match[1] === '1' ? Number(match[2]) : Number(match[1]);
  return { home, major, version: output.split('\n')[0]!.trim() };
}

/**
 * The newest JDK/JRE of major version >= `minimum` on the machine: `explicit` (--java-home) if given,
 * else JAVA_HOME and everything under /usr/lib/jvm and /opt. Undefined when there is none.
 */
export function findJava(minimum: number, explicit?: string): JavaRuntime | undefined {
  if (explicit) {
    const java = javaAt(explicit);
    if (!java) throw new Error(`--java-home ${explicit}: no bin/java there`);
    return java.major >= minimum ? java : undefined;
  }
  const homes = new Set<string>();
  if (process.env.JAVA_HOME) homes.add(process.env.JAVA_HOME);
  for (const root of ['/usr/lib/jvm', '/opt']) {
    if (!existsSync(root)) continue;
    for (const name of readdirSync(root)) homes.add(join(root, name));
  }
  const found = [...homes].map(javaAt).filter((j): j is JavaRuntime => j !== undefined && j.major >= minimum);
  found.sort((a, b) => b.major - a.major);
  return found[0];
}

/** The JVM's ergonomic defaults on this machine (heap, GC, compiler threads), for the report. */
export function jvmDefaults(java: JavaRuntime): string {
  const out = execFileSync(join(java.home, 'bin', 'java'), ['-XX:+PrintFlagsFinal', '-version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const flag = (name: string) => new RegExp(`\\s${name}\\s+=\\s+(\\S+)`).exec(out)?.[1];
  const mib = (name: string) => `${(Number(flag(name)) / 1024 / 1024).toFixed(0)} MiB`;
  const gc = ['UseG1GC', 'UseSerialGC', 'UseParallelGC', 'UseZGC', 'UseShenandoahGC'].find((g) => flag(g) === 'true')?.replace(/^Use/, '') ?? 'unknown';
  return `${gc}, initial heap ${mib('InitialHeapSize')}, max heap ${mib('MaxHeapSize')} (MaxRAMPercentage ${flag('MaxRAMPercentage')}), ${flag('ParallelGCThreads')} parallel GC threads, ${flag('CICompilerCount')} JIT compiler threads`;
}

export interface DebeziumConfig {
  java: JavaRuntime;
  serverDir: string;
  database: { host: string; port: number; user: string; dbname: string };
  slot: string;
  publication: string;
  /** Schema-qualified. */
  table: string;
  sinkUrl: string;
  /** Batch size for the HTTP sink's batch mode (debezium.sink.http.batch.*), or undefined for one request per event. */
  batchSize: number | undefined;
  /** Extra properties (full names), applied last. */
  extra: Record<string, string>;
}

/** The application.properties the bench runs Debezium Server with. */
export function debeziumProperties(config: DebeziumConfig, runDir: string, httpPort: number): Record<string, string> {
  return {
    'debezium.sink.type': 'http',
    'debezium.sink.http.url': config.sinkUrl,
    ...(config.batchSize ? { 'debezium.sink.http.batch.enabled': 'true', 'debezium.sink.http.batch.max-size': String(config.batchSize) } : {}),
    // CloudEvents (structured JSON) as eventide sends; the change as data, without a Kafka Connect schema beside it.
    'debezium.format.value': 'cloudevents',
    'debezium.format.value.data.serializer.type': 'json',
    'debezium.format.value.json.schemas.enable': 'false',
    'debezium.format.key': 'json',
    'debezium.source.connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'debezium.source.plugin.name': 'pgoutput',
    'debezium.source.slot.name': config.slot,
    'debezium.source.publication.name': config.publication,
    'debezium.source.publication.autocreate.mode': 'disabled',
    'debezium.source.snapshot.mode': 'no_data',
    'debezium.source.database.hostname': config.database.host,
    'debezium.source.database.port': String(config.database.port),
    'debezium.source.database.user': config.database.user,
    'debezium.source.database.password': '',
    'debezium.source.database.dbname': config.database.dbname,
    'debezium.source.topic.prefix': 'bench',
    'debezium.source.table.include.list': config.table,
    'debezium.source.offset.storage.file.filename': join(runDir, 'offsets.dat'),
    'quarkus.http.port': String(httpPort),
    'quarkus.http.host': '127.0.0.1',
    'quarkus.log.console.json': 'false',
    ...config.extra,
  };
}

export interface DebeziumRun {
  child: ChildProcess;
  pid: number;
  output(): string;
  properties: Record<string, string>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * Starts Debezium Server as run.sh would (`java -cp <runner jar>:config/lib:lib/* io.debezium.server.Main`,
 * no JAVA_OPTS: the JVM's defaults), in a fresh directory holding its config/application.properties and offsets.
 * Resolves once the process is up; the caller waits for its slot and first event.
 */
export async function startDebezium(config: DebeziumConfig): Promise<DebeziumRun> {
  const runDir = mkdtempSync(join(CACHE, 'run-'));
  mkdirSync(join(runDir, 'config'));
  const properties = debeziumProperties(config, runDir, await freePort());
  writeFileSync(
    join(runDir, 'config', 'application.properties'),
    `${Object.entries(properties)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n')}\n`,
  );
  const runner = readdirSync(config.serverDir).find((f) => /^debezium-server-.*runner\.jar$/.test(f));
  if (!runner) throw new Error(`no runner jar in ${config.serverDir}`);
  const classpath = [join(config.serverDir, runner), join(config.serverDir, 'config', 'lib'), join(config.serverDir, 'lib', '*')].join(':');
  const child = spawn(join(config.java.home, 'bin', 'java'), ['-cp', classpath, 'io.debezium.server.Main'], {
    cwd: runDir,
    env: { ...process.env, JAVA_HOME: config.java.home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let log = '';
  const keep = (d: Buffer) => (log = (log + d.toString()).slice(-32_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return {
    child,
    pid: child.pid!,
    output: () => log,
    properties,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(runDir, { recursive: true, force: true });
    },
  };
}
