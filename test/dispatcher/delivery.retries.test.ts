/**
 * Retries as a user relies on them: which answers are retried, how often, how long apart, and what
 * the dispatcher logs: a summary per trigger at info level, and each failed attempt at debug level. One real Postgres, the real `eventide dispatch`
 * command, and one small HTTP sink per trigger answering from a script.
 */

import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTEMPT_HEADER } from '../../api/v1alpha1/index.js';
import { freePort, listenOnLoopback } from '../../common/loopback.js';
import { type ControlledSink, metricSum, parsePrometheusText, startControlledSink } from '../harness/controlledSink.js';
import { deadLetterRows, type LogLine, logLines, sleep } from '../harness/deliveryHelpers.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually, type RecordingSink, type SinkReply, startRecordingSink } from '../harness/recordingSink.js';

const TABLES = ['flaky', 'bad', 'throttled', 'slowdown', 'hung', 'stale', 'capped', 'reset', 'down', 'trickle', 'fractional', 'crowd'];
const FAST = { delay: '50ms', maxDelay: '200ms' };

/** A sink answering the n-th request with script[n] (the last entry repeats). */
function scripted(script: SinkReply[]): Promise<RecordingSink> {
  return startRecordingSink((_req, index) => script[Math.min(index, script.length - 1)]!);
}

describe('retries', () => {
  let db: SourceDatabase;
  let proc: DispatcherProcess;
  const sinks: Record<string, RecordingSink> = {};
  /** A function that takes a second over every request. */
  let crowdSink: ControlledSink;
  /** A function that drops the connection of its first request without answering, then answers 200. */
  let resetting: Server;
  const resetRequests: { at: number; attempt: string | undefined; id: string | undefined }[] = [];
  /** A function that answers 200 at once but never finishes the body. */
  let trickling: Server;
  const trickleRequests: { at: number; attempt: string | undefined }[] = [];

  beforeAll(async () => {
    db = await startSourceDatabase(TABLES.map((t) => `CREATE TABLE ${t} (id int PRIMARY KEY, note text);`).join('\n'));
    sinks.flaky = await scripted([{ status: 500, body: 'database is down' }, { status: 500, body: 'database is down' }, { status: 200 }]);
    sinks.bad = await scripted([{ status: 400, body: '{"error":"missing field customer"}' }, { status: 200 }]);
    sinks.throttled = await scripted([{ status: 408 }, { status: 429 }, { status: 200 }]);
    sinks.slowdown = await scripted([{ status: 429, headers: { 'retry-after': '2' } }, { status: 200 }]);
    sinks.fractional = await scripted([{ status: 503, headers: { 'retry-after': '1.5' } }, { status: 200 }]);
    crowdSink = await startControlledSink(async () => {
      await sleep(1000);
      return { status: 200 };
    });
    sinks.hung = await startRecordingSink(() => ({ status: 200, hang: true }));
    sinks.stale = await scripted([{ status: 503 }]);
    sinks.capped = await scripted([
      { status: 429, headers: { 'retry-after': new Date(Date.now() + 60_000).toUTCString() } }, // an HTTP date a minute away
      { status: 503, headers: { 'retry-after': '3600' } },
      { status: 200 },
    ]);
    resetting = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        resetRequests.push({ at: Date.now(), attempt: req.headers[ATTEMPT_HEADER] as string | undefined, id: req.headers['ce-id'] as string | undefined });
        if (resetRequests.length === 1) req.socket.destroy();
        else res.writeHead(200).end();
      });
    });
    const resetPort = await listenOnLoopback(resetting);
    trickling = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        trickleRequests.push({ at: Date.now(), attempt: req.headers[ATTEMPT_HEADER] as string | undefined });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"accepted":'); // ...and nothing more
      });
    });
    const tricklePort = await listenOnLoopback(trickling);
    const downPort = await freePort(); // nothing listens here: the function is down
    const urls: Record<string, string> = { crowd: crowdSink.url, reset: `http://127.0.0.1:${resetPort}/`, down: `http://127.0.0.1:${downPort}/hook`, trickle: `http://127.0.0.1:${tricklePort}/` };
    const manifest = (table: string, delivery: Record<string, unknown>) =>
      triggerManifest(table, { table: { name: table }, sink: { url: urls[table] ?? sinks[table]!.url }, operations: ['insert'], delivery });
    const file = writeManifests([
      manifest('flaky', { retries: 5, backoff: FAST }),
      manifest('bad', { retries: 5, backoff: FAST }),
      manifest('throttled', { retries: 5, backoff: FAST }),
      manifest('slowdown', { retries: 5, backoff: { delay: '10ms', maxDelay: '20ms' } }),
      manifest('hung', { retries: 2, backoff: FAST, timeout: '300ms' }),
      manifest('stale', { retries: 100, backoff: FAST, maxEventAge: '1500ms' }),
      manifest('capped', { retries: 5, backoff: FAST, retryAfterMax: '1s' }),
      manifest('reset', { retries: 5, backoff: FAST }),
      manifest('down', { retries: 2, backoff: FAST }),
      triggerManifest('crowd', {
        table: { name: 'crowd' },
        sink: { url: crowdSink.url },
        operations: ['insert'],
        ordering: 'none',
        concurrency: 200,
        delivery: { retries: 0, timeout: '1700ms' },
      }),
      manifest('fractional', { retries: 5, backoff: FAST }),
      manifest('trickle', { retries: 1, backoff: FAST, timeout: '300ms' }),
    ]);
    proc = await startDispatcherProcess(['--database-url', db.url, '-f', file], { LOG_LEVEL: 'debug' });
    await proc.ready(60_000);
  }, 120_000);

  afterAll(async () => {
    await proc?.kill('SIGTERM');
    for (const sink of Object.values(sinks)) await sink.close();
    await crowdSink?.close();
    resetting?.closeAllConnections();
    await new Promise((resolve) => (resetting ? resetting.close(resolve) : resolve(undefined)));
    trickling?.closeAllConnections();
    await new Promise((resolve) => (trickling ? trickling.close(resolve) : resolve(undefined)));
    await db?.close();
  });

  /** The dispatcher's "delivery attempt failed" lines for one event, in order. */
  const failedAttemptLogs = (eventId: string): LogLine[] => logLines(proc.output()).filter((l) => l.msg === 'delivery attempt failed' && l.eventId === eventId);

  it('500, 500, 200: three attempts numbered 1, 2, 3 with the same event id, one success, nothing dead-lettered, one debug line per failure and a summary', async () => {
    const sink = sinks.flaky!;
    await db.sql("INSERT INTO flaky VALUES (1, 'a')");
    await sink.waitFor(3, 10_000);
    await sleep(600); // several backoff periods: a fourth attempt would have come
    expect(sink.requests).toHaveLength(3);
    expect(sink.requests.map((r) => r.headers[ATTEMPT_HEADER])).toEqual(['1', '2', '3']);
    const ids = new Set(sink.requests.map((r) => r.headers['ce-id']));
    expect(ids.size).toBe(1);
    expect(sink.requests.every((r) => r.body === sink.requests[0]!.body)).toBe(true);
    expect(await deadLetterRows(db, 'test/flaky')).toEqual([]);

    const eventId = String(sink.requests[0]!.headers['ce-id']);
    const logs = failedAttemptLogs(eventId);
    expect(logs.map((l) => [l.level, l.trigger, l.attempt, l.status, l.reason])).toEqual([
      [20, 'test/flaky', 1, 500, 'HTTP 500: database is down'],
      [20, 'test/flaky', 2, 500, 'HTTP 500: database is down'],
    ]);
    // At info level: the first failure with its reason, then the recovery with what happened in between.
    const summary = logLines(proc.output()).filter((l) => l.trigger === 'test/flaky' && l.level >= 30);
    expect(summary.map((l) => [l.level, l.msg, l.reason ?? null, l.status ?? null])).toEqual([
      [40, 'delivery failing', 'HTTP 500: database is down', 500],
      [30, 'delivery recovered', null, null],
    ]);
    expect(summary[1]).toMatchObject({ failures: 1, retries: 1 });
    for (const l of logs) expect(String(l.next)).toMatch(/^retry in \d+ms$/);
    const samples = parsePrometheusText(await proc.metrics());
    const deliveries = (outcome: string) => metricSum(samples, 'eventide_dispatcher_deliveries_total', { trigger: 'test/flaky', outcome }) ?? 0;
    expect([deliveries('success'), deliveries('retry'), deliveries('dead_letter')]).toEqual([1, 2, 0]);
  });

  it('400 is not retried: one attempt, then a dead letter with status 400 and the answer', async () => {
    const sink = sinks.bad!;
    await db.sql("INSERT INTO bad VALUES (1, 'a')");
    const [letter] = await eventually(
      async () => {
        const rows = await deadLetterRows(db, 'test/bad');
        return rows.length ? rows : undefined;
      },
      10_000,
      'a dead letter for test/bad',
    );
    await sleep(400);
    expect(sink.requests).toHaveLength(1);
    expect(letter).toMatchObject({
      event_id: sink.requests[0]!.headers['ce-id'],
      attempts: 1,
      last_status: 400,
      last_error: 'HTTP 400: {"error":"missing field customer"}',
      reason: 'not-retryable',
    });
    const logs = failedAttemptLogs(letter!.event_id);
    expect(logs.map((l) => [l.attempt, l.status, l.next])).toEqual([[1, 400, 'not-retryable']]);
    const deadLettered = logLines(proc.output()).filter((l) => l.msg === 'event dead-lettered' && l.eventId === letter!.event_id);
    expect(deadLettered.map((l) => [l.level, l.reason, l.lastError])).toEqual([[20, 'not-retryable', 'HTTP 400: {"error":"missing field customer"}']]);
    const summary = logLines(proc.output()).filter((l) => l.trigger === 'test/bad' && l.level >= 30);
    expect(summary.map((l) => [l.level, l.msg, l.reason, l.outcome])).toEqual([[40, 'delivery failing', 'not-retryable: HTTP 400: {"error":"missing field customer"}', 'dead_letter']]);
  });

  it('408 and 429 are retried', async () => {
    const sink = sinks.throttled!;
    await db.sql("INSERT INTO throttled VALUES (1, 'a')");
    await sink.waitFor(3, 10_000);
    await sleep(400);
    expect(sink.requests).toHaveLength(3);
    expect(sink.requests.map((r) => r.headers[ATTEMPT_HEADER])).toEqual(['1', '2', '3']);
    expect(new Set(sink.requests.map((r) => r.headers['ce-id'])).size).toBe(1);
    expect(await deadLetterRows(db, 'test/throttled')).toEqual([]);
    const logs = failedAttemptLogs(String(sink.requests[0]!.headers['ce-id']));
    expect(logs.map((l) => [l.status, l.reason])).toEqual([
      [408, 'HTTP 408'],
      [429, 'HTTP 429'],
    ]);
  });

  it('Retry-After is honoured: 429 with Retry-After: 2 delays the next attempt by 2 s although the backoff is 10 ms', async () => {
    const sink = sinks.slowdown!;
    await db.sql("INSERT INTO slowdown VALUES (1, 'a')");
    await sink.waitFor(2, 10_000);
    const gap = sink.requests[1]!.receivedAt - sink.requests[0]!.receivedAt;
    expect(gap).toBeGreaterThanOrEqual(1950);
    expect(gap).toBeLessThan(3500);
    expect(sink.requests[1]!.headers[ATTEMPT_HEADER]).toBe('2');
    const logs = failedAttemptLogs(String(sink.requests[0]!.headers['ce-id']));
    expect(logs.map((l) => [l.status, l.next])).toEqual([[429, 'retry in 2000ms']]);
    expect(await deadLetterRows(db, 'test/slowdown')).toEqual([]);
  });

  it('Retry-After in fractional seconds (1.5) is waited for, not read as a date long past and retried at once', async () => {
    const sink = sinks.fractional!;
    await db.sql("INSERT INTO fractional VALUES (1, 'a')");
    await sink.waitFor(2, 10_000);
    const gap = sink.requests[1]!.receivedAt - sink.requests[0]!.receivedAt;
    expect(gap).toBeGreaterThanOrEqual(1450);
    expect(gap).toBeLessThan(3000);
    const logs = failedAttemptLogs(String(sink.requests[0]!.headers['ce-id']));
    expect(logs.map((l) => [l.status, l.next])).toEqual([[503, 'retry in 1500ms']]);
  });

  it('a function that never answers: each attempt times out, is retried, and the event is dead-lettered naming the timeout', async () => {
    const sink = sinks.hung!;
    await db.sql("INSERT INTO hung VALUES (1, 'a')");
    const [letter] = await eventually(
      async () => {
        const rows = await deadLetterRows(db, 'test/hung');
        return rows.length ? rows : undefined;
      },
      15_000,
      'a dead letter for test/hung',
    );
    await sleep(400);
    expect(sink.requests).toHaveLength(3); // the first attempt and 2 retries
    expect(sink.requests.map((r) => r.headers[ATTEMPT_HEADER])).toEqual(['1', '2', '3']);
    for (let i = 1; i < 3; i++) expect(sink.requests[i]!.receivedAt - sink.requests[i - 1]!.receivedAt).toBeGreaterThanOrEqual(290);
    expect(letter).toMatchObject({ attempts: 3, last_status: null, last_error: 'timeout after 300ms', reason: 'retries-exhausted' });
    const logs = failedAttemptLogs(letter!.event_id);
    expect(logs.map((l) => [l.attempt, l.status, l.reason])).toEqual([
      [1, undefined, 'timeout after 300ms'],
      [2, undefined, 'timeout after 300ms'],
      [3, undefined, 'timeout after 300ms'],
    ]);
    expect(logs[2]!.next).toBe('retries-exhausted');
  });

  it('maxEventAge: an event failing with 100 retries left is dead-lettered once it would be older than maxEventAge', async () => {
    const sink = sinks.stale!;
    await db.sql("INSERT INTO stale VALUES (1, 'a')");
    const [letter] = await eventually(
      async () => {
        const rows = await deadLetterRows(db, 'test/stale');
        return rows.length ? rows : undefined;
      },
      15_000,
      'a dead letter for test/stale',
    );
    await sleep(400);
    const commitTime = Date.parse(letter!.event.time);
    const age = letter!.dead_lettered_at.getTime() - commitTime;
    expect(age).toBeLessThan(1500 + 1000);
    expect(letter!.reason).toBe('max-event-age');
    expect(letter!.attempts).toBeGreaterThan(3);
    expect(letter!.attempts).toBeLessThan(100);
    expect(letter!.attempts).toBe(sink.requests.length);
    expect(letter).toMatchObject({ last_status: 503, last_error: 'HTTP 503' });
    // No attempt after the dead letter.
    expect(Math.max(...sink.requests.map((r) => r.receivedAt))).toBeLessThanOrEqual(letter!.dead_lettered_at.getTime() + 50);
    const logs = failedAttemptLogs(letter!.event_id);
    expect(logs).toHaveLength(letter!.attempts);
    expect(logs.at(-1)!.next).toBe('max-event-age');

    // Exponential backoff with full jitter, capped by maxDelay: the wait before retry n is at most
    // min(50 ms * 2^(n-1), 200 ms), and the waits are not all alike.
    const waits = logs.slice(0, -1).map((l) => Number(/^retry in (\d+)ms$/.exec(String(l.next))?.[1]));
    for (const [i, wait] of waits.entries()) expect(wait).toBeLessThanOrEqual(Math.min(50 * 2 ** i, 200));
    expect(new Set(waits).size).toBeGreaterThan(1);
    // ...and the dispatcher waits that long: each next attempt comes no sooner, and not much later.
    const at = sink.requests.map((r) => r.receivedAt);
    waits.forEach((wait, i) => {
      expect(at[i + 1]! - at[i]!).toBeGreaterThanOrEqual(wait - 5);
      expect(at[i + 1]! - at[i]!).toBeLessThan(wait + 250);
    });
  });
  it('Retry-After as an HTTP date, and capped by retryAfterMax: a minute or an hour asked, 1 s waited', async () => {
    const sink = sinks.capped!;
    await db.sql("INSERT INTO capped VALUES (1, 'a')");
    await sink.waitFor(3, 10_000);
    const [a, b, c] = sink.requests.map((r) => r.receivedAt);
    expect(b! - a!).toBeGreaterThanOrEqual(950);
    expect(b! - a!).toBeLessThan(2500);
    expect(c! - b!).toBeGreaterThanOrEqual(950);
    expect(c! - b!).toBeLessThan(2500);
    const logs = failedAttemptLogs(String(sink.requests[0]!.headers['ce-id']));
    expect(logs.map((l) => [l.status, l.next])).toEqual([
      [429, 'retry in 1000ms'],
      [503, 'retry in 1000ms'],
    ]);
  });

  it('a function that sends its status but never finishes the body times out too', async () => {
    await db.sql("INSERT INTO trickle VALUES (1, 'a')");
    const [letter] = await eventually(
      async () => {
        const rows = await deadLetterRows(db, 'test/trickle');
        return rows.length ? rows : undefined;
      },
      10_000,
      'a dead letter for test/trickle',
    );
    expect(trickleRequests.map((r) => r.attempt)).toEqual(['1', '2']);
    expect(trickleRequests[1]!.at - trickleRequests[0]!.at).toBeGreaterThanOrEqual(290);
    expect(letter).toMatchObject({ attempts: 2, last_error: 'timeout after 300ms', reason: 'retries-exhausted' });
    const logs = failedAttemptLogs(letter!.event_id);
    expect(logs.map((l) => [l.attempt, l.reason])).toEqual([
      [1, 'timeout after 300ms'],
      [2, 'timeout after 300ms'],
    ]);
  });

  it('concurrency 200 to one slow function: 200 requests open at once, none timed out waiting for a connection', async () => {
    await db.sql("INSERT INTO crowd SELECT g, 'x' FROM generate_series(1, 200) g");
    await eventually(() => crowdSink.deliveries.filter((d) => d.status === 200).length >= 200, 15_000, '200 deliveries answered');
    expect(crowdSink.peakOpen).toBe(200);
    expect(crowdSink.deliveries).toHaveLength(200);
    expect(logLines(proc.output()).filter((l) => l.msg === 'delivery attempt failed' && l.trigger === 'test/crowd')).toEqual([]);
    expect(await deadLetterRows(db, 'test/crowd')).toEqual([]);
  });

  it('a dropped connection is a failed attempt: retried, and logged with the reason', async () => {
    await db.sql("INSERT INTO reset VALUES (1, 'a')");
    await eventually(() => resetRequests.length >= 2, 10_000, 'the retry after the dropped connection');
    await sleep(300);
    expect(resetRequests.map((r) => r.attempt)).toEqual(['1', '2']);
    expect(resetRequests[1]!.id).toBe(resetRequests[0]!.id);
    const logs = failedAttemptLogs(resetRequests[0]!.id!);
    expect(logs).toHaveLength(1);
    expect(logs[0]!.status).toBeUndefined();
    expect(String(logs[0]!.reason)).toMatch(/closed|reset|socket/i);
    expect(await deadLetterRows(db, 'test/reset')).toEqual([]);
  });

  it('a function that is down (connection refused): retried, then dead-lettered with the connection error', async () => {
    await db.sql("INSERT INTO down VALUES (1, 'a')");
    const [letter] = await eventually(
      async () => {
        const rows = await deadLetterRows(db, 'test/down');
        return rows.length ? rows : undefined;
      },
      10_000,
      'a dead letter for test/down',
    );
    expect(letter).toMatchObject({ attempts: 3, last_status: null, reason: 'retries-exhausted' });
    expect(letter!.last_error).toMatch(/ECONNREFUSED 127\.0\.0\.1:\d+/);
    const logs = failedAttemptLogs(letter!.event_id);
    expect(logs.map((l) => l.attempt)).toEqual([1, 2, 3]);
    for (const l of logs) expect(String(l.reason)).toContain('ECONNREFUSED');
  });
});
