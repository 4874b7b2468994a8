/**
 * What a function receives in each format (structured CloudEvents, Hasura, batches with partial
 * failures) and the Standard Webhooks signature, checked on real requests from a real dispatcher.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTEMPT_HEADER, type BatchResponse, type EventideEvent } from '../../api/v1alpha1/index.js';
import { secretEnvName } from '../../common/secretEnv.js';
import { verifyPayload } from '../../dispatcher/delivery/signing.js';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { deadLetterRows, sleep } from '../harness/deliveryHelpers.js';
import { type SourceDatabase, startDispatcher, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { eventually, type ReceivedRequest, type RecordingSink, type SinkReply, startRecordingSink } from '../harness/recordingSink.js';

const SIGNING = { name: 'webhooks', key: 'secret' };
const SECRET = `whsec_${Buffer.from('a-32-byte-secret-for-signatures!').toString('base64')}`;
const FAST = { delay: '50ms', maxDelay: '200ms' };

/** Ids of the events in a batch request. */
const idsOf = (r: ReceivedRequest) => (JSON.parse(r.body) as EventideEvent[]).map((e) => e.id);

/** The Standard Webhooks headers of a request. */
const webhookHeaders = (r: ReceivedRequest) => ({ id: String(r.headers['webhook-id']), timestamp: String(r.headers['webhook-timestamp']), signature: String(r.headers['webhook-signature']) });

describe('payload formats and signing', () => {
  let db: SourceDatabase;
  let dispatcher: Dispatcher;
  const sinks: Record<string, RecordingSink> = {};
  /** How the batch sink answers the next request; set per test. */
  let batchReply: (r: ReceivedRequest) => SinkReply = () => ({ status: 200 });

  beforeAll(async () => {
    db = await startSourceDatabase(`
      CREATE TABLE structured (id int PRIMARY KEY, total numeric, tags jsonb);
      CREATE TABLE hasura (id int PRIMARY KEY, status text NOT NULL);
      ALTER TABLE hasura REPLICA IDENTITY FULL;
      CREATE TABLE batched (id int PRIMARY KEY, name text);
      CREATE TABLE signed (id int PRIMARY KEY, note text);
      CREATE TABLE ledger (id int PRIMARY KEY, v int NOT NULL);
      CREATE TABLE guarded (id int PRIMARY KEY);`);
    sinks.structured = await startRecordingSink();
    sinks.hasura = await startRecordingSink((_r, i) => ({ status: i === 0 ? 503 : 200 }));
    sinks.batched = await startRecordingSink((r) => batchReply(r));
    sinks.signed = await startRecordingSink((_r, i) => ({ status: i === 0 ? 500 : 200 }));
    sinks.guarded = await startRecordingSink((r) => ({ status: r.headers.authorization === `Basic ${Buffer.from('hook user:p@ss:word').toString('base64')}` ? 200 : 401 }));
    // Names row 1's first version as failed twice, then takes everything.
    let ledgerRefusals = 0;
    sinks.ledger = await startRecordingSink((r) => {
      const first = (JSON.parse(r.body) as EventideEvent[]).find((e) => e.data.new?.id === 1 && e.data.new.v === 1);
      if (!first || ledgerRefusals >= 2) return { status: 200 };
      ledgerRefusals += 1;
      return { status: 200, body: JSON.stringify({ failures: [{ id: first.id, reason: 'ledger locked' }] } satisfies BatchResponse) };
    });
    const file = writeManifests([
      triggerManifest('structured', { table: { name: 'structured' }, sink: { url: sinks.structured.url }, format: 'cloudevents-structured' }),
      triggerManifest('hasura', { table: { name: 'hasura' }, sink: { url: sinks.hasura.url }, format: 'hasura', delivery: { retries: 4, backoff: FAST } }),
      triggerManifest('batched', {
        table: { name: 'batched' },
        sink: { url: sinks.batched.url },
        operations: ['insert'],
        batch: { maxSize: 5, maxWait: '300ms' },
        delivery: { retries: 2, backoff: FAST, signingSecretRef: SIGNING },
      }),
      triggerManifest('guarded', {
        table: { name: 'guarded' },
        sink: { url: sinks.guarded.url.replace('http://', 'http://hook%20user:p%40ss%3Aword@') },
        delivery: { retries: 0 },
      }),
      triggerManifest('ledger', {
        table: { name: 'ledger' },
        sink: { url: sinks.ledger.url },
        ordering: 'key',
        batch: { maxSize: 5, maxWait: '100ms' },
        delivery: { retries: 5, backoff: FAST },
      }),
      triggerManifest('signed', { table: { name: 'signed' }, sink: { url: sinks.signed.url }, delivery: { retries: 3, backoff: FAST, signingSecretRef: SIGNING } }),
    ]);
    dispatcher = await startDispatcher(db.url, file, [], { ...process.env, [secretEnvName(SIGNING)]: SECRET });
  }, 120_000);

  afterAll(async () => {
    await dispatcher?.stop();
    for (const sink of Object.values(sinks)) await sink.close();
    await db?.close();
  });

  it('cloudevents-structured: one application/cloudevents+json envelope with every attribute and the row change as data', async () => {
    const sink = sinks.structured!;
    await db.sql(`INSERT INTO structured VALUES (1, 12345678901234567890.5, '{"a": [1, 2]}')`);
    await sink.waitFor(1, 10_000);
    const [req] = sink.requests;
    expect(req!.headers['content-type']).toBe('application/cloudevents+json; charset=utf-8');
    expect(req!.headers['ce-id']).toBeUndefined(); // attributes travel in the body, not in headers
    expect(req!.headers[ATTEMPT_HEADER]).toBe('1');
    const event = JSON.parse(req!.body) as EventideEvent;
    expect(Object.keys(event)).toEqual(['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'data']);
    expect(event).toMatchObject({
      specversion: '1.0',
      source: '/eventide/test/structured',
      type: 'dev.eventide.row.insert',
      subject: 'public.structured/1',
      datacontenttype: 'application/json',
    });
    expect(event.id).toMatch(/^[0-9a-f]{16}-[0-9a-f]{16}-\d+-[0-9a-f]{8}$/);
    expect(new Date(event.time).toISOString()).toBe(event.time);
    expect(Object.keys(event.data)).toEqual(['op', 'table', 'old', 'new', 'lsn', 'xid', 'commitTime']);
    expect(event.data).toMatchObject({ op: 'insert', table: { schema: 'public', name: 'structured' }, old: null, new: { id: 1, tags: { a: [1, 2] } } });
    expect(event.data.commitTime).toBe(event.time);
    expect(req!.body).toContain('"total":12345678901234567890.5'); // every digit
  });

  it('hasura: the Hasura event-trigger payload, with delivery_info counting retries', async () => {
    const sink = sinks.hasura!;
    await db.sql("INSERT INTO hasura VALUES (1, 'placed')");
    await db.sql("UPDATE hasura SET status = 'paid' WHERE id = 1");
    await sink.waitFor(3, 10_000); // insert (503, then 200), update
    const bodies = sink.requests.map((r) => JSON.parse(r.body) as Record<string, unknown>);
    for (const r of sink.requests) expect(r.headers['content-type']).toBe('application/json');
    const [first, retry, update] = bodies;
    expect(Object.keys(first!)).toEqual(['event', 'created_at', 'id', 'delivery_info', 'trigger', 'table']);
    expect(first).toEqual({
      event: { session_variables: null, op: 'INSERT', data: { old: null, new: { id: 1, status: 'placed' } }, trace_context: null },
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/) as unknown,
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/) as unknown, // a UUID, as Hasura's
      delivery_info: { max_retries: 4, current_retry: 0 },
      trigger: { name: 'hasura' },
      table: { schema: 'public', name: 'hasura' },
    });
    expect(retry).toEqual({ ...first, delivery_info: { max_retries: 4, current_retry: 1 } });
    expect(update).toMatchObject({
      event: { op: 'UPDATE', data: { old: { id: 1, status: 'placed' }, new: { id: 1, status: 'paid' } } },
      delivery_info: { max_retries: 4, current_retry: 0 },
    });
    expect(update!.id).not.toBe(first!.id);
    // Handlers written for Hasura keep its ids in uuid columns: Postgres takes these.
    const stored = await db.sql('SELECT $1::uuid AS a, $2::uuid AS b', [first!.id, update!.id]);
    expect(stored.rows[0]).toEqual({ a: first!.id, b: update!.id });
  });

  it('batch: arrays of structured events; a 200 naming failed ids retries only those, in a later batch', async () => {
    const sink = sinks.batched!;
    let firstBatch: string[] = [];
    batchReply = (r) => {
      const ids = idsOf(r);
      if (firstBatch.length) return { status: 200 };
      firstBatch = ids;
      const failures: BatchResponse = { failures: [{ id: ids[0]!, reason: 'card declined' }, { id: ids[3]! }] };
      return { status: 200, body: JSON.stringify(failures) };
    };
    await db.sql("INSERT INTO batched SELECT g, 'row ' || g FROM generate_series(1, 5) g");
    await sink.waitFor(2, 10_000);
    await sleep(800);
    const [first, ...later] = sink.requests;
    expect(first!.headers['content-type']).toBe('application/cloudevents-batch+json; charset=utf-8');
    expect(first!.headers[ATTEMPT_HEADER]).toBe('1');
    const events = JSON.parse(first!.body) as EventideEvent[];
    expect(events.map((e) => e.data.new?.id)).toEqual([1, 2, 3, 4, 5]);
    expect(events.every((e) => e.specversion === '1.0' && e.source === '/eventide/test/batched' && e.type === 'dev.eventide.row.insert')).toBe(true);
    expect(new Set(firstBatch).size).toBe(5);
    // Exactly the two failed items were sent again, once each, as attempt 2.
    expect(later.flatMap(idsOf).sort()).toEqual([firstBatch[0]!, firstBatch[3]!].sort());
    for (const r of later) expect(r.headers[ATTEMPT_HEADER]).toBe('2');
    expect(await deadLetterRows(db, 'test/batched')).toEqual([]);
    // Signed as one message each; the retry is a different message, so it has its own webhook-id.
    for (const r of sink.requests) expect(verifyPayload(SECRET, webhookHeaders(r), r.body)).toBeUndefined();
    expect(webhookHeaders(first!).id).toMatch(/^batch_[0-9a-f]{32}$/);
    for (const r of later) expect(webhookHeaders(r).id).not.toBe(webhookHeaders(first!).id);
  });

  it('batch: a 5xx retries the whole batch; an item the function keeps failing is dead-lettered with the reason it gave', async () => {
    const sink = sinks.batched!;
    const start = sink.requests.length;
    let calls = 0;
    batchReply = (r) => {
      calls += 1;
      if (calls === 1) return { status: 503, body: 'busy' };
      const cursed = (JSON.parse(r.body) as EventideEvent[]).filter((e) => e.data.new?.name === 'cursed').map((e) => ({ id: e.id, reason: 'no such customer' }));
      return { status: 200, body: JSON.stringify({ failures: cursed } satisfies BatchResponse) };
    };
    await db.sql("INSERT INTO batched VALUES (10, 'fine'), (11, 'cursed'), (12, 'fine too')");
    const [letter] = await eventually(
      async () => {
        const rows = await deadLetterRows(db, 'test/batched');
        return rows.length ? rows : undefined;
      },
      10_000,
      'the cursed item dead-lettered',
    );
    await sleep(500);
    const requests = sink.requests.slice(start);
    const [busy, whole] = requests;
    expect(idsOf(busy!)).toHaveLength(3);
    expect(idsOf(whole!).sort()).toEqual(idsOf(busy!).sort()); // all three again after the 503
    const cursedId = letter!.event_id;
    // After the second request only the cursed item is sent, until its retries (2) are spent: 3 attempts in all.
    expect(requests.slice(2).flatMap(idsOf)).toEqual([cursedId]);
    expect(requests.map((r) => r.headers[ATTEMPT_HEADER])).toEqual(['1', '2', '3']);
    expect(letter).toMatchObject({ attempts: 3, reason: 'retries-exhausted', last_status: 200 });
    expect(letter!.event.data.new).toEqual({ id: 11, name: 'cursed' });
    expect(letter!.last_error).toBe('the function reported this batch item as failed: no such customer');
    // The same batch resent keeps its webhook-id; the cursed item alone is another message, whose id is its event id.
    for (const r of requests) expect(verifyPayload(SECRET, webhookHeaders(r), r.body)).toBeUndefined();
    expect(webhookHeaders(whole!).id).toBe(webhookHeaders(busy!).id);
    for (const r of requests.slice(2)) expect(webhookHeaders(r).id).toBe(cursedId);
  });

  it("batch with ordering by key: an item named as failed holds back its row's next change (never in the same or an earlier batch), not the other rows", async () => {
    const sink = sinks.ledger!;
    await db.sql('INSERT INTO ledger VALUES (1, 1)');
    await db.sql('UPDATE ledger SET v = 2 WHERE id = 1');
    await db.sql('INSERT INTO ledger SELECT g, 1 FROM generate_series(2, 4) g');
    await eventually(() => sink.requests.some((r) => (JSON.parse(r.body) as EventideEvent[]).some((e) => e.data.new?.v === 2)), 10_000, 'row 1 update delivered');
    await sleep(300);
    const batches = sink.requests.map((r) => JSON.parse(r.body) as EventideEvent[]);
    for (const batch of batches) expect(new Set(batch.map((e) => e.subject)).size).toBe(batch.length); // one change per row in a batch
    const row1 = batches.flatMap((batch, i) => batch.filter((e) => e.data.new?.id === 1).map((e) => ({ i, type: e.type, v: e.data.new!.v })));
    expect(row1.map(({ type, v }) => [type, v])).toEqual([
      ['dev.eventide.row.insert', 1],
      ['dev.eventide.row.insert', 1],
      ['dev.eventide.row.insert', 1],
      ['dev.eventide.row.update', 2],
    ]);
    expect(new Set(row1.map((r) => r.i)).size).toBe(4); // each in its own request, in that order
    // Rows 2..4 went in the first request(s), not behind row 1's retries.
    const others = batches.flatMap((batch, i) => batch.filter((e) => e.data.new!.id !== 1).map(() => i));
    expect(others).toHaveLength(3);
    expect(Math.max(...others)).toBeLessThan(row1[1]!.i);
    expect(await deadLetterRows(db, 'test/ledger')).toEqual([]);
  });

  it('a sink URL with credentials: they are sent as Basic authorization, not dropped', async () => {
    const sink = sinks.guarded!;
    await db.sql('INSERT INTO guarded VALUES (1)');
    await sink.waitFor(1, 10_000);
    await sleep(200);
    expect(sink.requests).toHaveLength(1);
    expect(sink.requests[0]!.headers.authorization).toBe(`Basic ${Buffer.from('hook user:p@ss:word').toString('base64')}`);
    expect(await deadLetterRows(db, 'test/guarded')).toEqual([]);
  });

  it('signing: every attempt carries Standard Webhooks headers that verifyPayload accepts, and only for this body', async () => {
    const sink = sinks.signed!;
    await db.sql("INSERT INTO signed VALUES (1, 'sign me')");
    await sink.waitFor(2, 10_000); // 500, then 200
    for (const req of sink.requests) {
      const headers = webhookHeaders(req);
      expect(headers.id).toBe(req.headers['ce-id']);
      expect(Math.abs(Number(headers.timestamp) - req.receivedAt / 1000)).toBeLessThan(5);
      expect(headers.signature).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
      expect(verifyPayload(SECRET, headers, req.body)).toBeUndefined();
      expect(verifyPayload(SECRET, headers, req.body.replace('sign me', 'sign mE'))).toBe('webhook-signature does not match the payload');
      expect(verifyPayload(`whsec_${Buffer.from('another secret').toString('base64')}`, headers, req.body)).toBe('webhook-signature does not match the payload');
    }
    // Unsigned triggers send no signature headers.
    expect(sinks.structured!.requests[0]!.headers['webhook-signature']).toBeUndefined();
  });
});
