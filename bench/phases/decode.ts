/**
 * 1. Decode: N inserts (--decode-rows) are written first (transactions of 10k) to a slot created before
 *    them and never confirmed, so every reader reads the same N changes from the same point; every reader
 *    runs --decode-rounds times, interleaved, and its best run counts. Baseline: pg-logical-replication
 *    with its stock PgoutputPlugin (the raw decode rate of a stock client). Also shown: the same connection
 *    with a plugin that only reads the message tag, which turns out slower (see the note it prints).
 *    Measured: the dispatcher's ReplicationStream + text pgoutput plugin + RowDecoder (rows as to_jsonb
 *    JSON), and the same plus ChangeIntake (routing, event ids, payloads, window and watermark).
 */
import pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import { loadManifests } from '../../api/v1alpha1/index.js';
import type { EmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { silentLogger } from '../../common/logger.js';
import { RowDecoder } from '../../dispatcher/decode/rowDecoder.js';
import { createTextPgoutputPlugin, type PgoutputMessage } from '../../dispatcher/decode/textPgoutputPlugin.js';
import { TypeCatalog } from '../../dispatcher/decode/typeCatalog.js';
import { eventId } from '../../dispatcher/delivery/eventIds.js';
import { ChangeIntake } from '../../dispatcher/pipeline/changeIntake.js';
import { buildRoutes } from '../../dispatcher/routing/triggerMatcher.js';
import { ReplicationStream, type StreamConsumer } from '../../dispatcher/source/replicationStream.js';
import { removeDir, writeManifests } from '../../test/harness/dispatcherFixture.js';
import { createSlots, dropSlot, PUBLICATION, triggerManifest, writeRows } from '../harness.js';
import { fmtRate, notes, record } from '../report.js';

export interface DecodeBenchOptions {
  decodeRows: number;
  decodeRounds: number;
}

/** Reads a slot with pg-logical-replication and a given plugin until `isDone` says the N-th change came. */
async function readWithLibrary(url: string, slot: string, plugin: PgoutputPlugin, isDone: (message: unknown) => boolean): Promise<number> {
  const service = new LogicalReplicationService({ connectionString: url }, { acknowledge: { auto: false, timeoutSeconds: 0 } });
  let started = 0;
  const finished = new Promise<number>((resolve, reject) => {
    service.on('error', reject);
    service.on('data', (_lsn: string, message: unknown) => {
      started ||= performance.now();
      if (isDone(message)) resolve((performance.now() - started) / 1000);
    });
  });
  const subscribed = service.subscribe(plugin, slot).catch(() => undefined);
  const seconds = await finished;
  await service.stop();
  await subscribed;
  service.removeAllListeners();
  return seconds;
}

/** Bare stream: the plugin only reads the tag byte of each message. */
function bareRead(url: string, slot: string, n: number): Promise<number> {
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION] });
  (plugin as unknown as { parse(buffer: Buffer): number }).parse = (buffer) => buffer[0]!;
  let count = 0;
  return readWithLibrary(url, slot, plugin, (tag) => tag === 0x49 && ++count === n);
}

/** The library's stock pgoutput parser (pg's type parsers over every value). */
function stockRead(url: string, slot: string, n: number): Promise<number> {
  let count = 0;
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION] });
  return readWithLibrary(url, slot, plugin, (message) => (message as { tag: string }).tag === 'insert' && ++count === n);
}

/**
 * The dispatcher's path: ReplicationStream (its queue and backpressure) + text pgoutput plugin +
 * RowDecoder. With `intake`, each change also goes through ChangeIntake (routing, ids, payloads,
 * window, watermark) and its event is settled at once.
 */
async function dispatcherRead(url: string, slot: string, n: number, intakeManifest?: string): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const query = (sql: string, params: unknown[]) => pool.query(sql, params);
  const decoder = new RowDecoder(new TypeCatalog(query), query);
  let count = 0;
  let started = 0;
  let done!: (seconds: number) => void;
  const finished = new Promise<number>((resolve) => (done = resolve));
  const counted = () => {
    if (++count === n) done((performance.now() - started) / 1000);
  };
  let consumer: StreamConsumer<PgoutputMessage>;
  if (intakeManifest) {
    const routes = buildRoutes(loadManifests([intakeManifest]).triggers);
    const intake: ChangeIntake<PgoutputMessage> = new ChangeIntake<PgoutputMessage>({
      decoder,
      routes: () => routes,
      eventId,
      startLsn: 0n,
      logger: silentLogger(),
      dispatch: (event) => {
        intake.settle(event);
        counted();
      },
    });
    consumer = {
      handle: (item) => {
        started ||= performance.now();
        return intake.handle(item);
      },
      confirmable: () => 0n,
      resumeFrom: () => intake.resumeFrom(),
      connecting: () => {
        decoder.reset();
        intake.connecting();
      },
    };
  } else {
    consumer = {
      handle: async (item) => {
        if (item.kind !== 'message') return;
        started ||= performance.now();
        const message = item.message;
        if (decoder.begin(message) || decoder.commit(message)) return;
        for (const change of await decoder.decode(message)) if (change.newJson !== null) counted();
      },
      confirmable: () => 0n,
      resumeFrom: () => 0n,
      connecting: () => decoder.reset(),
    };
  }
  const stream = new ReplicationStream<PgoutputMessage>(
    { connection: { connectionString: url }, slotName: slot, createPlugin: () => createTextPgoutputPlugin([PUBLICATION]), logger: silentLogger() },
    consumer,
  );
  const running = stream.run();
  const seconds = await finished;
  await stream.stop();
  await running;
  await pool.end();
  return seconds;
}

/** Returns the stock PgoutputPlugin's rate (changes/s): the baseline of the batched end-to-end figure. */
export async function benchDecode(pgServer: EmbeddedPostgres, db: pg.Client, options: DecodeBenchOptions, sinkUrl: string): Promise<number> {
  const n = options.decodeRows;
  const rounds = options.decodeRounds;
  console.log(`\n[1] decode: ${n.toLocaleString('en-US')} inserts written before reading; ${rounds} rounds of every reader, best of each`);
  // Nothing is ever confirmed on this slot, so every reader starts from the same point and reads the same changes.
  const slot = 'decode';
  await createSlots(db, [slot]);
  const writeSeconds = await writeRows(db, n);
  console.log(`  wrote ${n.toLocaleString('en-US')} rows in ${writeSeconds.toFixed(1)} s`);
  // Background work on the fresh rows (autovacuum, checkpoint) would otherwise compete with the first readers.
  await db.query('VACUUM ANALYZE orders');
  await db.query('CHECKPOINT');
  const manifest = writeManifests([triggerManifest(sinkUrl, { concurrency: 64, batchSize: 1 })]);
  const readers: [string, () => Promise<number>][] = [
    ['bare', () => bareRead(pgServer.url, slot, n)],
    ['stock', () => stockRead(pgServer.url, slot, n)],
    ['text', () => dispatcherRead(pgServer.url, slot, n)],
    ['intake', () => dispatcherRead(pgServer.url, slot, n, manifest)],
  ];
  const best = new Map<string, number>();
  try {
    await bareRead(pgServer.url, slot, n); // warm-up: caches (Postgres's, the OS's, V8's)
    for (let round = 0; round < rounds; round++) {
      const rates: string[] = [];
      for (const [name, read] of readers) {
        const rate = n / (await read());
        best.set(name, Math.max(best.get(name) ?? 0, rate));
        rates.push(`${name} ${fmtRate(rate, 'ch/s')}`);
      }
      console.log(`  round ${round + 1}: ${rates.join(', ')}`);
    }
  } finally {
    removeDir(manifest.replace(/\/[^/]+$/, ''));
    await dropSlot(db, slot);
  }
  const bare = best.get('bare')!;
  const stock = best.get('stock')!;
  const text = best.get('text')!;
  const intake = best.get('intake')!;
  const baseline = `stock PgoutputPlugin ${fmtRate(stock, 'ch/s')}`;
  record({ figure: 'decode: bare stream (tag byte only)', value: fmtRate(bare, 'ch/s'), baseline, ratio: bare / stock, target: '(reference)' });
  record({ figure: 'decode: dispatcher (text plugin + RowDecoder → JSON)', value: fmtRate(text, 'ch/s'), baseline, ratio: text / stock, target: '' });
  record({ figure: 'decode: + ChangeIntake (routing, ids, payloads)', value: fmtRate(intake, 'ch/s'), baseline, ratio: intake / stock, target: '' });
  notes.push(
    'decode baseline is the stock PgoutputPlugin, not the bare reader: a reader that keeps up with the walsender makes it ' +
      'flush one socket write per message, which slows the walsender itself (when tried on a 2-core machine, adding 2 µs of ' +
      'busy-work per message to the bare reader roughly doubled its rate), so the bare reader is no ceiling',
  );
  return stock;
}
