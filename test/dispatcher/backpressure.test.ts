import { afterEach, describe, expect, it } from 'vitest';
import { dispatcherNodeOptions } from '../../operator/eventtrigger/nodeHeap.js';
import { type ControlledSink, Gate, lsnToBigInt, metricSum, parsePrometheusText, processRssBytes, startControlledSink } from '../harness/controlledSink.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

describe('bounded memory while a function hangs', () => {
  let db: SourceDatabase;
  let sink: ControlledSink;
  let proc: DispatcherProcess;
  const gate = new Gate(false);
  const window = 2000;
  const concurrency = 64;

  // Each test starts its own database, sink and dispatcher; stop them even when the test fails halfway.
  afterEach(async () => {
    await proc?.kill('SIGKILL');
    await sink?.close();
    await db?.close();
  });

  it('holds at most the window in memory, keeps RSS flat, parks the rest in the trigger backlog so the slot keeps moving, stays connected, and delivers everything once the function recovers', async () => {
    db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL);');
    // A short sender timeout: a paused reader must still tell the server it is alive, or the server drops it.
    await db.sql("ALTER SYSTEM SET wal_sender_timeout = '3s'");
    await db.sql('SELECT pg_reload_conf()');
    sink = await startControlledSink(async () => {
      await gate.wait();
      return { status: 200 };
    });
    const file = writeManifests([
      triggerManifest('items', {
        table: { name: 'items' },
        sink: { url: sink.url },
        operations: ['insert'],
        concurrency,
        delivery: { timeout: '10m' },
      }),
    ]);
    // Run as the operator runs it in a pod with the default 512Mi limit: V8 left to its defaults grows its
    // heap lazily under the churn of parking 60 MiB of rows, which says nothing about what is held.
    proc = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--max-inflight-events', String(window)], {
      NODE_OPTIONS: dispatcherNodeOptions({ limits: { memory: '512Mi' } }),
    });
    await proc.ready(60_000);
    const pid = proc.child.pid!;
    const lsnText = async () => String((await db.sql('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn);
    const _lsnBefore = lsnToBigInt(await lsnText());

    // Warm up with a first window-full, so the baseline includes a full window and a warm heap.
    await db.sql(`INSERT INTO items SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, ${window}) g`);
    await eventually(async () => metricSum(parsePrometheusText(await proc.metrics()), 'eventide_dispatcher_inflight_events') === window, 20_000, 'a full window');
    const baselineRss = processRssBytes(pid);

    const total = 60_000;
    const samples: { rss: number; inflight: number; open: number; ready: number; lag: number }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const metrics = parsePrometheusText(await proc.metrics());
        const ready = (await fetch(`http://127.0.0.1:${proc.port}/readyz`)).status;
        samples.push({
          rss: processRssBytes(pid),
          inflight: metricSum(metrics, 'eventide_dispatcher_inflight_events') ?? -1,
          lag: metricSum(metrics, 'eventide_dispatcher_replication_lag_bytes') ?? -1,
          open: sink.open,
          ready,
        });
        await sleep(250);
      }
    })();
    // 58k more rows of 1 KiB in transactions of 5800: ~60 MiB of row data the dispatcher must not hold.
    for (let from = window + 1; from <= total; from += 5800) {
      await db.sql(`INSERT INTO items SELECT g, repeat(md5(g::text), 32) FROM generate_series($1::int, $2::int) g`, [from, Math.min(total, from + 5799)]);
    }
    const lsnAfterWrites = lsnToBigInt(await lsnText());
    // Stay paused well past the server's sender timeout.
    await sleep(8000);
    sampling = false;
    await sampler;

    const peakRss = Math.max(...samples.map((s) => s.rss));
    const growth = peakRss - baselineRss;
    console.log(`RSS baseline ${(baselineRss / MiB).toFixed(1)} MiB, peak ${(peakRss / MiB).toFixed(1)} MiB, growth ${(growth / MiB).toFixed(1)} MiB`);
    expect(samples.length).toBeGreaterThan(10);
    // The window is the bound on what is held, and only `concurrency` attempts are open.
    expect(Math.max(...samples.map((s) => s.inflight))).toBeLessThanOrEqual(window);
    expect(samples.at(-1)!.inflight).toBe(window);
    expect(Math.max(...samples.map((s) => s.open))).toBe(concurrency);
    expect(sink.deliveries.length).toBe(concurrency);
    // 60 MiB of rows went by: holding them would have grown the heap by far more than this.
    expect(growth).toBeLessThan(32 * MiB);
    // What the window cannot hold waits in the trigger backlog, and once parked it no longer holds the
    // slot: the stream was read to the end and the slot confirmed past the last write.
    // Every event ends up durable there: those the window holds too, copied when the trigger began to
    // park, so the hung requests hold neither memory beyond the window nor the slot.
    const parked = await eventually(
      async () => {
        const n = Number((await db.sql("SELECT count(*) AS n FROM eventide.backlog WHERE trigger = 'test/items'")).rows[0].n);
        return n === total ? n : undefined;
      },
      60_000,
      `all ${total} events in the backlog`,
    );
    const { rows } = await db.sql("SELECT (pg_current_wal_lsn() - sent_lsn)::bigint AS behind FROM pg_stat_replication WHERE application_name = 'eventide-dispatcher'");
    expect(rows.length).toBe(1); // still connected
    expect(Number(rows[0].behind)).toBeLessThan(4 * MiB);
    await eventually(async () => (await db.confirmedLsn()) >= lsnAfterWrites, 10_000, 'the slot confirmed past the last write');
    console.log(
      `lag metric with the function hung: ${samples
        .slice(-5)
        .map((s) => (s.lag / MiB).toFixed(1))
        .join(', ')} MiB; ${parked} events parked`,
    );
    await eventually(
      async () => (metricSum(parsePrometheusText(await proc.metrics()), 'eventide_dispatcher_replication_lag_bytes') ?? MiB * 100) < 4 * MiB,
      15_000,
      'the lag metric down to a few MiB',
    );
    // The connection stayed up and the dispatcher ready.
    expect(proc.output()).not.toContain('replication stream failed');
    expect(samples.every((s) => s.ready === 200)).toBe(true);

    // The function recovers: every row arrives, the backlog empties and the slot stays caught up.
    gate.open();
    await eventually(() => new Set(sink.deliveries.filter((d) => d.status === 200).map((d) => d.subject)).size >= total, 75_000, `all ${total} rows after the function recovered`);
    const subjects = new Set(sink.deliveries.map((d) => d.subject));
    for (let id = 1; id <= total; id++) if (!subjects.has(`public.items/${id}`)) expect.fail(`row ${id} never delivered`);
    await eventually(async () => (await db.confirmedLsn()) >= lsnAfterWrites, 15_000, 'the slot past the last write');
    await eventually(async () => metricSum(parsePrometheusText(await proc.metrics()), 'eventide_dispatcher_inflight_events') === 0, 5_000, 'an empty window');
    await eventually(async () => Number((await db.sql('SELECT count(*) AS n FROM eventide.backlog')).rows[0].n) === 0, 10_000, 'an empty backlog');
  }, 90_000);

  it('bounds the bytes in memory too: big rows past --max-inflight-bytes wait in the backlog', async () => {
    db = await startSourceDatabase('CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL);');
    const bytesGate = new Gate(false);
    sink = await startControlledSink(async () => {
      await bytesGate.wait();
      return { status: 200 };
    });
    const file = writeManifests([triggerManifest('docs', { table: { name: 'docs' }, sink: { url: sink.url }, operations: ['insert'], concurrency: 16, delivery: { timeout: '10m' } })]);
    const maxBytes = MiB;
    proc = await startDispatcherProcess(['--database-url', db.url, '-f', file, '--max-inflight-bytes', String(maxBytes)]);
    await proc.ready(60_000);
    // 2000 rows of 10 KiB: 20 MiB against a 1 MiB window.
    await db.sql('INSERT INTO docs SELECT g, repeat(md5(g::text), 320) FROM generate_series(1, 2000) g');
    const eventBytes = 10_240 + 400;
    const samples: { events: number; bytes: number }[] = [];
    for (let i = 0; i < 12; i++) {
      await sleep(250);
      const metrics = parsePrometheusText(await proc.metrics());
      samples.push({ events: metricSum(metrics, 'eventide_dispatcher_inflight_events') ?? -1, bytes: metricSum(metrics, 'eventide_dispatcher_inflight_bytes') ?? -1 });
    }
    const last = samples.at(-1)!;
    expect(last.bytes).toBeGreaterThan(maxBytes - eventBytes); // it filled up...
    expect(Math.max(...samples.map((s) => s.bytes))).toBeLessThanOrEqual(maxBytes + eventBytes); // ...to the bound, at most one event past it
    expect(Math.max(...samples.map((s) => s.events))).toBeLessThanOrEqual(Math.ceil(maxBytes / 10_240) + 1);
    expect(sink.deliveries.length).toBe(16);
    bytesGate.open();
    await eventually(() => new Set(sink.deliveries.filter((d) => d.status === 200).map((d) => d.subject)).size >= 2000, 30_000, 'all 2000 docs');
  }, 60_000);
});
