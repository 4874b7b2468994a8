/**
 * Scale from zero without burning retries, through the real `eventide dispatch` process: a Function
 * whose address refuses connections (no ready pod: kube-proxy rejects) gets its events held — not
 * counted as attempts, probed a few times a second, its demand and unavailability on /state — and
 * delivered as first attempts the moment something listens. Past its activation timeout the usual
 * retries and dead-lettering apply, and /state says so. A sibling trigger to a healthy sink is not held up.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTEMPT_HEADER } from '../../api/v1alpha1/index.js';
import type { DispatcherStateReport } from '../../common/dispatcherState.js';
import { freePort } from '../../common/loopback.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually, type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

const SCHEMA = `
  CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL);
  CREATE TABLE refunds (id int PRIMARY KEY, amount int NOT NULL);
  CREATE TABLE audit (id int PRIMARY KEY, line text NOT NULL);
`;

const fn = (name: string, activationTimeout: string) => ({
  apiVersion: 'eventide.dev/v1alpha1',
  kind: 'Function',
  metadata: { name, namespace: 'test' },
  spec: { image: 'n/a', scale: { activationTimeout } },
});

/** A function that is not there yet: `start()` makes it listen on its fixed port, recording each request's attempt header and subject. */
function lateFunction(port: number) {
  const received: { attempt: string; subject: string; at: number }[] = [];
  let server: Server | undefined;
  return {
    received,
    async start() {
      server = createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          received.push({ attempt: String(req.headers[ATTEMPT_HEADER]), subject: String(req.headers['ce-subject']), at: Date.now() });
          res.writeHead(200).end();
        });
      });
      await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
    },
    async close() {
      if (!server) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
    },
  };
}

const metricValue = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
};

describe('a Function with no ready pod: its events wait for one without spending retries', () => {
  let db: SourceDatabase;
  let dispatcher: DispatcherProcess;
  let healthy: RecordingSink;
  let sleepyPort: number;
  let sleepy: ReturnType<typeof lateFunction>;
  const state = async () => (await (await fetch(`http://127.0.0.1:${dispatcher.port}/state`)).json()) as DispatcherStateReport;

  beforeAll(async () => {
    db = await startSourceDatabase(SCHEMA);
    healthy = await startRecordingSink();
    sleepyPort = await freePort();
    const gonePort = await freePort();
    sleepy = lateFunction(sleepyPort);
    const delivery = { retries: 2, backoff: { delay: '100ms', maxDelay: '100ms' } };
    const file = writeManifests([
      fn('sleepy', '60s'),
      fn('gone', '2s'),
      triggerManifest('to-sleepy', { function: { name: 'sleepy' }, delivery }),
      triggerManifest('to-gone', { table: { name: 'refunds' }, function: { name: 'gone' }, delivery }),
      triggerManifest('audit', { table: { name: 'audit' }, sink: { url: healthy.url } }),
    ]);
    dispatcher = await startDispatcherProcess([
      '--database-url',
      db.url,
      '-f',
      file,
      '--function-url',
      `test/sleepy=http://127.0.0.1:${sleepyPort}/`,
      '--function-url',
      `test/gone=http://127.0.0.1:${gonePort}/`,
    ]);
    await dispatcher.ready();
  }, 60_000);

  afterAll(async () => {
    await dispatcher?.kill('SIGTERM');
    await sleepy?.close();
    await healthy?.close();
    await db?.close();
  });

  it('events wait uncounted while the function refuses; /state shows the demand and since when; then all arrive as first attempts', async () => {
    await db.sql('INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 20) g');
    const waiting = await eventually(
      async () => {
        const f = (await state()).functions['test/sleepy'];
        return f?.unavailableSince && f.events === 20 ? f : undefined;
      },
      15_000,
      'the function reported unavailable with its 20 events',
    );
    expect(waiting.activationTimedOut).toBeUndefined();
    expect(waiting.capacity).toBe(64);
    // A sibling trigger delivers meanwhile.
    await db.sql("INSERT INTO audit VALUES (1, 'still flowing')");
    await healthy.waitFor(1, 10_000);
    await new Promise((r) => setTimeout(r, 1500));
    const metrics = await dispatcher.metrics();
    expect(metricValue(metrics, 'eventide_dispatcher_retries_total{trigger="test/to-sleepy"}')).toBe(0);
    expect(metricValue(metrics, 'eventide_dispatcher_dead_letters_total{trigger="test/to-sleepy",reason="retries-exhausted"}')).toBe(0);
    expect(metricValue(metrics, 'eventide_dispatcher_function_unavailable{function="test/sleepy"}')).toBe(1);
    // Probed one request at a time, a few times a second — not every event on every tick.
    const held = metricValue(metrics, 'eventide_dispatcher_deliveries_total{trigger="test/to-sleepy",outcome="held"}');
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(60);
    expect((await state()).triggers['test/to-sleepy']!.lastError).toBeUndefined();

    const listening = Date.now();
    await sleepy.start();
    await eventually(() => sleepy.received.length >= 20, 10_000, 'all 20 events delivered');
    expect(sleepy.received.map((r) => r.attempt)).toEqual(Array(20).fill('1'));
    expect(new Set(sleepy.received.map((r) => r.subject)).size).toBe(20);
    // Found within a probe interval or two, not after a retry backoff.
    expect(sleepy.received[0]!.at - listening).toBeLessThan(1500);
    const after = await eventually(
      async () => {
        const f = (await state()).functions['test/sleepy'];
        return f && f.unavailableSince === undefined && f.events === 0 ? f : undefined;
      },
      10_000,
      'the function reported available and drained',
    );
    expect(after.inflight).toBe(0);
    expect(metricValue(await dispatcher.metrics(), 'eventide_dispatcher_function_unavailable{function="test/sleepy"}')).toBe(0);
    expect(dispatcher.output()).toContain('function answers again; delivering');
  });

  it('past the activation timeout the usual retries and dead-lettering apply, and /state says the activation timed out', async () => {
    await db.sql('INSERT INTO refunds VALUES (1, 5), (2, 7)');
    const timedOut = await eventually(
      async () => {
        const f = (await state()).functions['test/gone'];
        return f?.activationTimedOut ? f : undefined;
      },
      15_000,
      'activation timed out',
    );
    expect(timedOut.unavailableSince).toBeDefined();
    const letters = await eventually(
      async () => {
        const { rows } = await db.sql("SELECT attempts, reason, last_error FROM eventide.dead_letters WHERE trigger = 'test/to-gone' ORDER BY id");
        return rows.length === 2 ? rows : undefined;
      },
      15_000,
      'both refunds dead-lettered',
    );
    for (const letter of letters) {
      expect(letter).toMatchObject({ attempts: 3, reason: 'retries-exhausted' });
      expect(String(letter.last_error)).toContain('ECONNREFUSED');
    }
  });
});
