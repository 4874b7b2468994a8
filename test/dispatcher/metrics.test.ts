import { afterAll, describe, expect, it } from 'vitest';
import { type ControlledSink, type MetricSample, metricFamilies, metricSum, parsePrometheusText, startControlledSink } from '../harness/controlledSink.js';
import { type SourceDatabase, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';

describe('/metrics after traffic', () => {
  let db: SourceDatabase;
  let sink: ControlledSink;
  let proc: DispatcherProcess;
  afterAll(async () => {
    await proc?.kill('SIGKILL');
    await sink?.close();
    await db?.close();
  });

  it('exposes every dispatcher metric family with values that add up', async () => {
    db = await startSourceDatabase('CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL); CREATE TABLE audit (id int);');
    const attempts = new Map<string, number>();
    // Orders 10, 20 ... fail once (500) and are retried; orders 7, 57, 107 are refused (400) and dead-lettered.
    sink = await startControlledSink((d) => {
      const id = Number(d.subject.split('/')[1]);
      const n = (attempts.get(d.subject) ?? 0) + 1;
      attempts.set(d.subject, n);
      if (id % 50 === 7) return { status: 400, body: '{"error":"bad order"}' };
      if (id % 10 === 0 && n === 1) return { status: 500 };
      return { status: 200 };
    });
    const trigger = 'test/orders';
    const file = writeManifests([
      triggerManifest('orders', {
        table: { name: 'orders' },
        sink: { url: sink.url },
        operations: ['insert'],
        filter: 'new.id <= 150',
        delivery: { retries: 3, backoff: { policy: 'constant', delay: '20ms', maxDelay: '20ms' } },
      }),
    ]);
    proc = await startDispatcherProcess(['--database-url', db.url, '-f', file]);
    await proc.ready(60_000);
    await db.sql('INSERT INTO audit SELECT generate_series(1, 100)'); // not routed: neither received nor matched
    await db.sql('INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 200) g');
    const matched = 150;
    const retried = 15; // 10, 20 ... 150
    const dead = 3; // 7, 57, 107
    await eventually(() => sink.deliveries.filter((d) => d.status !== undefined).length >= matched + retried, 30_000, 'every attempt answered');

    // The gauges are sampled each second: wait until the window shows empty and the slot caught up.
    const lsn = async () => (await db.sql('SELECT pg_current_wal_lsn() - $1::pg_lsn AS n', ['0/0'])).rows[0].n as string;
    let text = '';
    let samples: MetricSample[] = [];
    const end = Number(await lsn());
    await eventually(
      async () => {
        text = await proc.metrics();
        samples = parsePrometheusText(text);
        return metricSum(samples, 'eventide_dispatcher_inflight_events') === 0 && (metricSum(samples, 'eventide_dispatcher_confirmed_lsn') ?? 0) >= end;
      },
      15_000,
      'an empty window and a caught-up slot in /metrics',
    );
    const value = (name: string, labels: Record<string, string> = {}) => metricSum(samples, name, labels);

    const families = metricFamilies(text);
    const expected: Record<string, string> = {
      eventide_dispatcher_events_received_total: 'counter',
      eventide_dispatcher_events_matched_total: 'counter',
      eventide_dispatcher_deliveries_total: 'counter',
      eventide_dispatcher_attempt_duration_seconds: 'histogram',
      eventide_dispatcher_end_to_end_latency_seconds: 'histogram',
      eventide_dispatcher_retries_total: 'counter',
      eventide_dispatcher_dead_letters_total: 'counter',
      eventide_dispatcher_inflight_events: 'gauge',
      eventide_dispatcher_inflight_bytes: 'gauge',
      eventide_dispatcher_replication_lag_bytes: 'gauge',
      eventide_dispatcher_confirmed_lsn: 'gauge',
      eventide_dispatcher_replication_connected: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) expect(families.get(name), name).toBe(type);
    expect(value('eventide_dispatcher_process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);

    // Received: every change of a published table; matched: those the filter passed, per trigger.
    expect(value('eventide_dispatcher_events_received_total', { table: 'public.orders', op: 'insert' })).toBe(200);
    expect(value('eventide_dispatcher_events_received_total', { table: 'public.audit' })).toBeUndefined();
    expect(value('eventide_dispatcher_events_matched_total', { trigger })).toBe(matched);
    // Deliveries by trigger and outcome.
    expect(value('eventide_dispatcher_deliveries_total', { trigger, outcome: 'success' })).toBe(matched - dead);
    expect(value('eventide_dispatcher_deliveries_total', { trigger, outcome: 'retry' })).toBe(retried);
    expect(value('eventide_dispatcher_deliveries_total', { trigger, outcome: 'dead_letter' })).toBe(dead);
    expect(value('eventide_dispatcher_retries_total', { trigger })).toBe(retried);
    expect(value('eventide_dispatcher_dead_letters_total', { trigger, reason: 'not-retryable' })).toBe(dead);
    const { rows } = await db.sql('SELECT count(*)::int AS n FROM eventide.dead_letters');
    expect(rows[0].n).toBe(dead);

    // One attempt-duration observation per HTTP attempt, each a plausible loopback duration.
    const attemptCount = value('eventide_dispatcher_attempt_duration_seconds_count', { trigger })!;
    expect(attemptCount).toBe(sink.deliveries.length);
    expect(attemptCount).toBe(matched + retried);
    expect(value('eventide_dispatcher_attempt_duration_seconds_sum', { trigger })! / attemptCount).toBeLessThan(1);
    expect(value('eventide_dispatcher_attempt_duration_seconds_bucket', { trigger, le: '+Inf' })).toBe(attemptCount);
    // End-to-end latency: one observation per delivered event, from commit to delivery.
    const e2eCount = value('eventide_dispatcher_end_to_end_latency_seconds_count', { trigger })!;
    expect(e2eCount).toBe(matched - dead);
    const e2eMean = value('eventide_dispatcher_end_to_end_latency_seconds_sum', { trigger })! / e2eCount;
    expect(e2eMean).toBeGreaterThan(0);
    expect(e2eMean).toBeLessThan(30);
    const buckets = samples.filter((s) => s.name === 'eventide_dispatcher_end_to_end_latency_seconds_bucket' && s.labels.trigger === trigger);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);

    // In flight: nothing left; the slot: connected, confirmed where Postgres says, little lag.
    expect(value('eventide_dispatcher_inflight_bytes')).toBe(0);
    expect(value('eventide_dispatcher_replication_connected')).toBe(1);
    const slotConfirmed = await db.confirmedLsn();
    expect(BigInt(value('eventide_dispatcher_confirmed_lsn')!)).toBeLessThanOrEqual(slotConfirmed);
    expect(BigInt(value('eventide_dispatcher_confirmed_lsn')!)).toBeGreaterThanOrEqual(BigInt(end));
    const lag = value('eventide_dispatcher_replication_lag_bytes')!;
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThan(1024 * 1024);
  }, 60_000);
});
