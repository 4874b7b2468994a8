/**
 * Dead letters as a user relies on them: what the eventide.dead_letters row records, what the
 * deadLetterSink receives, that a poison event stalls nobody for long, and that `eventide deadletters
 * list|replay` (the real command) finds them and sends them again with the same event id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTEMPT_HEADER } from '../../api/v1alpha1/index.js';
import { freePort } from '../../common/loopback.js';
import { secretEnvName } from '../../common/secretEnv.js';
import { eventUuid } from '../../dispatcher/delivery/eventIds.js';
import { verifyPayload } from '../../dispatcher/delivery/signing.js';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { type DeadLetterRow, deadLetterRows, runEventide, sleep } from '../harness/deliveryHelpers.js';
import { type SourceDatabase, startDispatcher, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { eventually, type ReceivedRequest, type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

const SIGNING = { name: 'hooks', key: 'secret' };
const SECRET = `whsec_${Buffer.from('replay-signing-key-0123456789').toString('base64')}`;
const ENV = { ...process.env, [secretEnvName(SIGNING)]: SECRET };

const bodyOf = (r: ReceivedRequest) => JSON.parse(r.body) as { op: string; new: Record<string, unknown> | null };

describe('dead letters', () => {
  let db: SourceDatabase;
  let dispatcher: Dispatcher;
  let file: string;
  let failing: RecordingSink;
  let deadLetterSink: RecordingSink;
  let poisonSink: RecordingSink;
  let replaySink: RecordingSink;
  let auditSink: RecordingSink;
  let hungDeadLetterSink: RecordingSink;
  let bulkSink: RecordingSink;
  let bulkHealthy = false;
  let linesSink: RecordingSink;
  const knownSkus = new Set(['apple', 'pear']);
  let membersSink: RecordingSink;
  let membersFixed = false;
  let stuckSink: RecordingSink;
  let replayHealthy = false;
  /** Once true, the shipments function accepts even the poison row (a fix deployed). */
  let poisonFixed = false;
  let stopped = false;

  beforeAll(async () => {
    db = await startSourceDatabase(`
      CREATE TABLE payments (id int PRIMARY KEY, amount numeric NOT NULL);
      CREATE TABLE shipments (id int PRIMARY KEY, poison boolean NOT NULL DEFAULT false, note text);
      CREATE TABLE invoices (id int PRIMARY KEY, total numeric);
      CREATE TABLE refunds (id int PRIMARY KEY, total numeric);
      CREATE TABLE audits (id int PRIMARY KEY, v int NOT NULL);
      CREATE TABLE bulk (id int PRIMARY KEY);
      CREATE TABLE lines (id int PRIMARY KEY, sku text NOT NULL);
      CREATE TABLE members (id int PRIMARY KEY, tier text NOT NULL);
      CREATE TABLE stuck (id int PRIMARY KEY);`);
    failing = await startRecordingSink(() => ({ status: 503, body: 'try later' }));
    // The dead-letter sink refuses its first notification: the dispatcher tries again.
    deadLetterSink = await startRecordingSink((_r, i) => ({ status: i === 0 ? 500 : 202 }));
    // Fails the poison row slowly (150 ms per answer), so its attempts span long enough to see the others pass it.
    poisonSink = await startRecordingSink((r) => (bodyOf(r).new?.poison === true && !poisonFixed ? { status: 500, delayMs: 150 } : { status: 200 }));
    replaySink = await startRecordingSink(() => (replayHealthy ? { status: 200 } : { status: 500, body: 'still broken' }));
    // Refuses every insert (400), takes updates; its dead-letter sink never answers.
    auditSink = await startRecordingSink((r) => ({ status: bodyOf(r).op === 'insert' ? 400 : 200 }));
    hungDeadLetterSink = await startRecordingSink(() => ({ status: 200, hang: true }));
    bulkSink = await startRecordingSink(() => ({ status: bulkHealthy ? 200 : 400 }));
    // A batch function that reports the items whose sku it does not know as failed (a 200 naming them).
    linesSink = await startRecordingSink((r) => {
      const failures = (JSON.parse(r.body) as { id: string; data: { new: { sku: string } } }[])
        .filter((e) => !knownSkus.has(e.data.new.sku))
        .map((e) => ({ id: e.id, reason: `unknown sku ${e.data.new.sku}` }));
      return { status: 200, body: JSON.stringify({ failures }) };
    });
    // A Hasura-style handler that refuses updates (422) until fixed.
    membersSink = await startRecordingSink((r) => ({ status: membersFixed || !r.body.includes('"op":"UPDATE"') ? 200 : 422, body: 'tier change not allowed' }));
    stuckSink = await startRecordingSink(() => ({ status: 200, hang: true }));
    file = writeManifests([
      triggerManifest('payments', {
        table: { name: 'payments' },
        sink: { url: failing.url },
        operations: ['insert'],
        delivery: { retries: 2, backoff: { delay: '50ms', maxDelay: '200ms' }, deadLetterSink: { url: deadLetterSink.url }, signingSecretRef: SIGNING },
      }),
      triggerManifest('shipments', {
        table: { name: 'shipments' },
        sink: { url: poisonSink.url },
        operations: ['insert', 'update'],
        ordering: 'key',
        concurrency: 1, // even one slot: a key waiting for its retry does not hold it
        delivery: { retries: 5, backoff: { policy: 'constant', delay: '200ms', maxDelay: '200ms' } },
      }),
      triggerManifest('invoices', {
        table: { name: 'invoices' },
        sink: { url: replaySink.url },
        operations: ['insert'],
        delivery: { retries: 0 },
      }),
      triggerManifest('refunds', {
        table: { name: 'refunds' },
        sink: { url: replaySink.url },
        operations: ['insert'],
        delivery: { retries: 0, signingSecretRef: SIGNING },
      }),
      triggerManifest('audits', {
        table: { name: 'audits' },
        sink: { url: auditSink.url },
        operations: ['insert', 'update'],
        delivery: { retries: 0, deadLetterSink: { url: hungDeadLetterSink.url } },
      }),
      triggerManifest('bulk', { table: { name: 'bulk' }, sink: { url: bulkSink.url }, operations: ['insert'], delivery: { retries: 0 } }),
      triggerManifest('lines', {
        table: { name: 'lines' },
        sink: { url: linesSink.url },
        operations: ['insert'],
        batch: { maxSize: 3, maxWait: '200ms' },
        delivery: { retries: 0 },
      }),
      triggerManifest('members', { table: { name: 'members' }, sink: { url: membersSink.url }, format: 'hasura', delivery: { retries: 0 } }),
      triggerManifest('stuck', { table: { name: 'stuck' }, sink: { url: stuckSink.url }, operations: ['insert'], delivery: { retries: 0, timeout: '300ms' } }),
    ]);
    dispatcher = await startDispatcher(db.url, file, [], ENV);
  }, 120_000);

  afterAll(async () => {
    if (!stopped) await dispatcher?.stop();
    for (const sink of [failing, deadLetterSink, poisonSink, replaySink, auditSink, hungDeadLetterSink, bulkSink, linesSink, membersSink, stuckSink]) await sink?.close();
    await db?.close();
  });

  const lettersOf = (trigger: string, count: number) =>
    eventually(
      async () => {
        const rows = await deadLetterRows(db, trigger);
        return rows.length >= count ? rows : undefined;
      },
      15_000,
      `${count} dead letter(s) for ${trigger}`,
    );

  it('after its retries an event is a row in eventide.dead_letters with trigger, event, attempts, last status and error, and times', async () => {
    await db.sql('INSERT INTO payments VALUES (7, 19.99)');
    const [letter] = await lettersOf('test/payments', 1);
    await sleep(300);
    expect(failing.requests).toHaveLength(3);
    const sent = failing.requests[0]!;
    expect(letter).toMatchObject({
      trigger: 'test/payments',
      event_id: sent.headers['ce-id'],
      attempts: 3,
      last_status: 503,
      last_error: 'HTTP 503: try later',
      reason: 'retries-exhausted',
      replayed_at: null,
    });
    // The stored event is the whole CloudEvent, data as sent.
    expect(letter!.event).toEqual({
      specversion: '1.0',
      id: sent.headers['ce-id'],
      source: '/eventide/test/payments',
      type: 'dev.eventide.row.insert',
      subject: 'public.payments/7',
      time: sent.headers['ce-time'],
      datacontenttype: 'application/json',
      data: JSON.parse(sent.body) as unknown,
    });
    const commit = Date.parse(letter!.event.time);
    expect(letter!.first_attempt_at.getTime()).toBeGreaterThanOrEqual(commit - 1000);
    expect(letter!.first_attempt_at.getTime()).toBeLessThanOrEqual(sent.receivedAt + 1000);
    expect(letter!.dead_lettered_at.getTime()).toBeGreaterThanOrEqual(letter!.first_attempt_at.getTime());
  });

  it('the deadLetterSink receives the dead letter as a CloudEvent carrying the event and its last error (retried once when it fails)', async () => {
    await deadLetterSink.waitFor(2, 10_000);
    const [letter] = await deadLetterRows(db, 'test/payments');
    const first = deadLetterSink.requests[0]!;
    const second = deadLetterSink.requests[1]!;
    expect(second.body).toBe(first.body);
    expect(second.headers['content-type']).toBe('application/cloudevents+json; charset=utf-8');
    const payload = JSON.parse(second.body) as Record<string, unknown>;
    expect(payload).toEqual({
      specversion: '1.0',
      id: `dl-${letter!.event_id}`,
      source: '/eventide/test/payments',
      type: 'dev.eventide.deadletter',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown,
      datacontenttype: 'application/json',
      data: { trigger: 'test/payments', attempts: 3, lastStatus: 503, lastError: 'HTTP 503: try later', reason: 'retries-exhausted', event: letter!.event },
    });
    // Signed with the trigger's secret, as its events are.
    const verdict = verifyPayload(
      SECRET,
      { id: String(second.headers['webhook-id']), timestamp: String(second.headers['webhook-timestamp']), signature: String(second.headers['webhook-signature']) },
      second.body,
    );
    expect(verdict).toBeUndefined();
    expect(second.headers['webhook-id']).toBe(`dl-${letter!.event_id}`);
    await sleep(500);
    expect(deadLetterSink.requests).toHaveLength(2); // accepted the second time: no more
  });

  it('a poison event stalls neither other rows nor, once dead-lettered, its own row', async () => {
    await db.sql("INSERT INTO shipments VALUES (1, true, 'poison')");
    await db.sql("UPDATE shipments SET poison = false, note = 'fixed' WHERE id = 1"); // queued behind the poison event
    await db.sql("INSERT INTO shipments SELECT g, false, 'ok ' || g FROM generate_series(2, 6) g");
    const [letter] = await lettersOf('test/shipments', 1);
    const deadAt = letter!.dead_lettered_at.getTime();
    expect(letter).toMatchObject({ attempts: 6, last_status: 500, reason: 'retries-exhausted' });
    expect(letter!.event.data).toMatchObject({ op: 'insert', new: { id: 1, poison: true } });

    // Rows 2..6 arrived while row 1 was still being retried (its attempts are at least 150 ms apart).
    const others = poisonSink.requests.filter((r) => bodyOf(r).new?.id !== 1);
    expect(others.map((r) => Number(bodyOf(r).new?.id)).sort()).toEqual([2, 3, 4, 5, 6]); // other keys: any order
    const poisonAttempts = poisonSink.requests.filter((r) => bodyOf(r).new?.poison === true);
    expect(poisonAttempts.map((r) => r.headers[ATTEMPT_HEADER])).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(poisonAttempts).toHaveLength(6);
    for (const r of others) expect(r.receivedAt).toBeLessThan(poisonAttempts[2]!.receivedAt);

    // Row 1's next change is delivered after the dead letter, not held behind it.
    const fixed = await eventually(() => poisonSink.requests.find((r) => bodyOf(r).op === 'update'), 10_000, 'row 1 update delivered');
    expect(bodyOf(fixed).new).toMatchObject({ id: 1, poison: false, note: 'fixed' });
    expect(fixed.receivedAt).toBeGreaterThanOrEqual(poisonAttempts.at(-1)!.receivedAt);
    expect(fixed.receivedAt).toBeGreaterThanOrEqual(deadAt - 50);
    expect(fixed.headers[ATTEMPT_HEADER]).toBe('1');
    expect(await deadLetterRows(db, 'test/shipments')).toHaveLength(1);
  });

  describe('eventide deadletters list | replay', () => {
    let invoiceLetters: DeadLetterRow[];
    let refundLetter: DeadLetterRow;
    const original = new Map<string, ReceivedRequest>();
    const list = (...args: string[]) => runEventide(['deadletters', 'list', '--database-url', db.url, ...args], ENV);
    const replay = (...args: string[]) => runEventide(['deadletters', 'replay', '--database-url', db.url, '-f', file, ...args], ENV);

    beforeAll(async () => {
      replayHealthy = false;
      await db.sql('INSERT INTO invoices VALUES (1, 10), (2, 20)');
      await db.sql('INSERT INTO refunds VALUES (1, 5)');
      invoiceLetters = await lettersOf('test/invoices', 2);
      [refundLetter] = (await lettersOf('test/refunds', 1)) as [DeadLetterRow];
      for (const r of replaySink.requests) original.set(String(r.headers['ce-id']), r);
      expect(original.size).toBe(3);
    }, 30_000);

    it('list prints every pending dead letter with id, trigger, event id, attempts, reason and last error', async () => {
      const all = await deadLetterRows(db);
      const result = await list();
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const lines = result.stdout.trimEnd().split('\n');
      expect(lines[0]).toBe(`${all.length} dead letter(s)`);
      expect(lines).toHaveLength(all.length + 1);
      const invoice = invoiceLetters[0]!;
      expect(lines).toContain(`#${invoice.id}  test/invoices  event ${invoice.event_id}  attempts 1  retries-exhausted  last: HTTP 500: still broken`);

      const json = await list('--trigger', 'test/refunds', '--json');
      expect(json.code).toBe(0);
      const parsed = JSON.parse(json.stdout) as Record<string, unknown>[];
      expect(parsed).toHaveLength(1);
      expect(parsed[0]).toMatchObject({ id: refundLetter.id, trigger: 'test/refunds', eventId: refundLetter.event_id, attempts: 1, lastStatus: 500, reason: 'retries-exhausted', replayedAt: null });
    });

    it('replay --id while the function still fails: reports the failure, exits 1, and the dead letter stays pending', async () => {
      const target = invoiceLetters[0]!;
      const before = replaySink.requests.length;
      const result = await replay('--id', String(target.id));
      expect(result.code).toBe(1);
      expect(result.stdout).toContain('replayed 0, failed 1');
      expect(result.stdout).toContain(`FAILED  #${target.id}  test/invoices  event ${target.event_id}: HTTP 500: still broken`);
      expect(replaySink.requests).toHaveLength(before + 1);
      const [row] = (await deadLetterRows(db, 'test/invoices')).filter((r) => r.id === target.id);
      expect(row).toMatchObject({ replayed_at: null, replay_count: 0 });
    });

    it('replay --id to the now healthy function: the event arrives with the same id and body, and the row is marked replayed', async () => {
      replayHealthy = true;
      const target = invoiceLetters[0]!;
      const before = replaySink.requests.length;
      const result = await replay('--id', String(target.id));
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`replayed 1, failed 0\n  ok      #${target.id}  test/invoices  event ${target.event_id}\n`);
      expect(replaySink.requests).toHaveLength(before + 1);
      const sent = replaySink.requests.at(-1)!;
      const first = original.get(target.event_id)!;
      expect(sent.headers['ce-id']).toBe(target.event_id);
      for (const h of ['ce-source', 'ce-type', 'ce-subject', 'ce-time', 'ce-specversion', 'content-type']) expect(sent.headers[h]).toBe(first.headers[h]);
      expect(sent.body).toBe(first.body); // the same bytes: values, key order and all
      const [row] = (await deadLetterRows(db, 'test/invoices')).filter((r) => r.id === target.id);
      expect(row!.replayed_at).toBeInstanceOf(Date);
      expect(row!.replay_count).toBe(1);
      // The row stays as a record: hidden from the default list, shown with --include-replayed.
      expect((await list('--trigger', 'test/invoices')).stdout).not.toContain(`#${target.id} `);
      expect((await list('--trigger', 'test/invoices', '--include-replayed')).stdout).toMatch(new RegExp(`#${target.id} .* replayed \\d{4}-`));
    });

    it("replay --trigger replays only that trigger's dead letters, signed as the trigger signs", async () => {
      const before = replaySink.requests.length;
      const result = await replay('--trigger', 'test/refunds');
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`replayed 1, failed 0\n  ok      #${refundLetter.id}  test/refunds  event ${refundLetter.event_id}\n`);
      expect(replaySink.requests).toHaveLength(before + 1);
      const sent = replaySink.requests.at(-1)!;
      expect(sent.headers['ce-id']).toBe(refundLetter.event_id);
      expect(sent.headers['webhook-id']).toBe(refundLetter.event_id);
      const verdict = verifyPayload(
        SECRET,
        { id: String(sent.headers['webhook-id']), timestamp: String(sent.headers['webhook-timestamp']), signature: String(sent.headers['webhook-signature']) },
        sent.body,
      );
      expect(verdict).toBeUndefined();
      expect((await deadLetterRows(db, 'test/invoices')).filter((r) => r.replayed_at === null)).toHaveLength(1); // invoices untouched
    });

    it('replay --all replays every pending dead letter once; nothing is left pending; an unknown id is a clear error', async () => {
      const pending = (await deadLetterRows(db)).filter((r) => r.replayed_at === null);
      expect(pending.map((r) => r.trigger).sort()).toEqual(['test/invoices', 'test/payments', 'test/shipments']);
      poisonFixed = true;
      const before = replaySink.requests.length;
      const result = await replay('--all');
      // test/payments' function still answers 503, so that one fails and stays pending; the others are replayed.
      const payments = pending.find((r) => r.trigger === 'test/payments')!;
      const invoice = pending.find((r) => r.trigger === 'test/invoices')!;
      const shipment = pending.find((r) => r.trigger === 'test/shipments')!;
      expect(result.code).toBe(1);
      expect(result.stdout.split('\n')[0]).toBe('replayed 2, failed 1');
      expect(result.stdout).toContain(`  ok      #${invoice.id}  test/invoices  event ${invoice.event_id}`);
      expect(result.stdout).toContain(`  ok      #${shipment.id}  test/shipments  event ${shipment.event_id}`);
      expect(result.stdout).toContain(`  FAILED  #${payments.id}  test/payments  event ${payments.event_id}: HTTP 503: try later`);
      expect(replaySink.requests.slice(before).map((r) => r.headers['ce-id'])).toEqual([invoice.event_id]);
      expect(poisonSink.requests.at(-1)!.headers['ce-id']).toBe(shipment.event_id);

      const after = await deadLetterRows(db);
      expect(after.filter((r) => r.replayed_at === null).map((r) => r.id)).toEqual([payments.id]);
      expect(after.filter((r) => r.replayed_at !== null).every((r) => r.replay_count === 1)).toBe(true);

      const again = await list();
      expect(again.stdout.split('\n')[0]).toBe('1 dead letter(s)');

      const unknown = await replay('--id', '999999');
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toBe('eventide: no dead letter with id 999999\n');
      const noSelector = await replay();
      expect(noSelector.code).toBe(1);
      expect(noSelector.stderr).toContain('replay needs --id <n>, --trigger ns/name or --all');
    });

    it('replay with manifests that lack the trigger: reported per dead letter, which stays pending', async () => {
      const other = writeManifests([triggerManifest('invoices', { table: { name: 'invoices' }, sink: { url: replaySink.url }, operations: ['insert'] })]);
      const [payments] = (await deadLetterRows(db, 'test/payments')).filter((r) => r.replayed_at === null);
      const result = await runEventide(['deadletters', 'replay', '--database-url', db.url, '-f', other, '--trigger', 'test/payments'], ENV);
      expect(result.code).toBe(1);
      expect(result.stdout).toBe(`replayed 0, failed 1\n  FAILED  #${payments!.id}  test/payments  event ${payments!.event_id}: EventTrigger test/payments is not in the given manifests\n`);
      expect((await deadLetterRows(db, 'test/payments')).filter((r) => r.replayed_at === null)).toHaveLength(1);
    });

    it('list and replay cover every dead letter, not just the first thousand', async () => {
      await db.sql('INSERT INTO bulk SELECT generate_series(1, 1005)');
      await lettersOf('test/bulk', 1005);
      const listed = await list('--trigger', 'test/bulk');
      expect(listed.stdout.split('\n')[0]).toBe('1005 dead letter(s)');
      expect(listed.stdout.trimEnd().split('\n')).toHaveLength(1006);
      bulkHealthy = true;
      const before = bulkSink.requests.length;
      const result = await replay('--trigger', 'test/bulk');
      expect(result.code).toBe(0);
      expect(result.stdout.split('\n')[0]).toBe('replayed 1005, failed 0');
      expect(new Set(bulkSink.requests.slice(before).map((r) => r.headers['ce-id'])).size).toBe(1005);
      expect((await list('--trigger', 'test/bulk')).stdout.split('\n')[0]).toBe('0 dead letter(s)');
    }, 45_000);

    it('a database no dispatcher has used has no dead letters; one that cannot be reached is a one-line error', async () => {
      await db.sql('CREATE DATABASE untouched');
      const untouched = new URL(db.url);
      untouched.pathname = '/untouched';
      const listed = await runEventide(['deadletters', 'list', '--database-url', untouched.href], ENV);
      expect([listed.code, listed.stdout, listed.stderr]).toEqual([0, '0 dead letter(s)\n', '']);
      const replayed = await runEventide(['deadletters', 'replay', '--database-url', untouched.href, '-f', file, '--all'], ENV);
      expect([replayed.code, replayed.stdout, replayed.stderr]).toEqual([0, 'replayed 0, failed 0\n', '']);

      const port = await freePort();
      const refused = await runEventide(['deadletters', 'list', '--database-url', `postgres://eventide:hunter2@127.0.0.1:${port}/app`], ENV);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toBe(`eventide: cannot read the dead letters from the database: connect ECONNREFUSED 127.0.0.1:${port}\n`);
      const missing = new URL(db.url);
      missing.pathname = '/no_such_db';
      const noDb = await runEventide(['deadletters', 'list', '--database-url', missing.href], ENV);
      expect(noDb.code).toBe(1);
      expect(noDb.stderr).toBe('eventide: cannot read the dead letters from the database: database "no_such_db" does not exist\n');
    });

    it("replay of a batch trigger's dead letter: an answer naming the item as failed is a failed replay, not a replayed one", async () => {
      await db.sql("INSERT INTO lines VALUES (1, 'apple'), (2, 'durian'), (3, 'pear')");
      const [letter] = await lettersOf('test/lines', 1);
      expect(letter).toMatchObject({ attempts: 1, last_status: 200, last_error: 'the function reported this batch item as failed: unknown sku durian' });
      expect(letter!.event.data.new).toEqual({ id: 2, sku: 'durian' });

      // The function still does not know the sku: it answers 200 but names the item as failed.
      const before = linesSink.requests.length;
      const failed = await replay('--trigger', 'test/lines');
      expect(failed.code).toBe(1);
      expect(failed.stdout).toBe(`replayed 0, failed 1\n  FAILED  #${letter!.id}  test/lines  event ${letter!.event_id}: the function reported this batch item as failed: unknown sku durian\n`);
      expect(linesSink.requests).toHaveLength(before + 1);
      expect((await deadLetterRows(db, 'test/lines'))[0]).toMatchObject({ replayed_at: null, replay_count: 0 });

      knownSkus.add('durian');
      const ok = await replay('--trigger', 'test/lines');
      expect(ok.code).toBe(0);
      expect(ok.stdout).toBe(`replayed 1, failed 0\n  ok      #${letter!.id}  test/lines  event ${letter!.event_id}\n`);
      const sent = linesSink.requests.at(-1)!;
      expect(sent.headers['content-type']).toBe('application/cloudevents-batch+json; charset=utf-8');
      expect(JSON.parse(sent.body)).toEqual([letter!.event]); // a batch of one: the stored event as it was sent
      expect((await deadLetterRows(db, 'test/lines'))[0]!.replay_count).toBe(1);
    });

    it("replay of a hasura trigger's dead letter sends the Hasura payload it was sent first", async () => {
      await db.sql("INSERT INTO members VALUES (1, 'basic')");
      await db.sql("UPDATE members SET tier = 'gold' WHERE id = 1");
      const [letter] = await lettersOf('test/members', 1);
      expect(letter).toMatchObject({ attempts: 1, last_status: 422, reason: 'not-retryable', last_error: 'HTTP 422: tier change not allowed' });
      const original = membersSink.requests.find((r) => r.body.includes('"op":"UPDATE"'))!;
      membersFixed = true;
      const result = await replay('--id', String(letter!.id));
      expect(result.code).toBe(0);
      const sent = membersSink.requests.at(-1)!;
      expect(sent.headers['content-type']).toBe('application/json');
      expect(sent.headers['ce-id']).toBeUndefined();
      const first = JSON.parse(original.body) as Record<string, unknown>;
      // The same payload; delivery_info says it has been tried once before.
      expect(JSON.parse(sent.body)).toEqual({ ...first, delivery_info: { max_retries: 0, current_retry: 1 } });
      expect(first).toMatchObject({
        id: eventUuid(letter!.event_id), // Hasura's ids are UUIDs: the event id's
        event: { op: 'UPDATE', data: { old: { id: 1 }, new: { id: 1, tier: 'gold' } } },
        trigger: { name: 'members' },
        table: { schema: 'public', name: 'members' },
      });
    });

    it('replay to a function that never answers reports the timeout and returns', async () => {
      await db.sql('INSERT INTO stuck VALUES (1)');
      const [letter] = await lettersOf('test/stuck', 1);
      expect(letter).toMatchObject({ attempts: 1, last_status: null, last_error: 'timeout after 300ms' });
      const started = Date.now();
      const result = await replay('--trigger', 'test/stuck');
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(result.code).toBe(1);
      expect(result.stdout).toBe(`replayed 0, failed 1\n  FAILED  #${letter!.id}  test/stuck  event ${letter!.event_id}: timeout after 300ms\n`);
      expect(stuckSink.requests).toHaveLength(2);
      expect((await deadLetterRows(db, 'test/stuck'))[0]!.replayed_at).toBeNull();
    });
  });

  it("a deadLetterSink that never answers holds back neither the key's next event nor a shutdown", async () => {
    await db.sql('INSERT INTO audits VALUES (1, 1)'); // 400: dead-lettered at once
    await db.sql('UPDATE audits SET v = 2 WHERE id = 1'); // same key, behind it
    const [letter] = await lettersOf('test/audits', 1);
    await hungDeadLetterSink.waitFor(1, 10_000); // the notification hangs
    const update = await eventually(() => auditSink.requests.find((r) => bodyOf(r).op === 'update'), 5_000, 'the update delivered while the dead-letter sink hangs');
    expect(update.receivedAt - letter!.dead_lettered_at.getTime()).toBeLessThan(2000);

    await db.sql('INSERT INTO audits VALUES (2, 1)');
    await hungDeadLetterSink.waitFor(2, 10_000); // a notification in flight at the stop
    const stopping = Date.now();
    await dispatcher.stop();
    expect(Date.now() - stopping).toBeLessThan(5000);
    expect(await deadLetterRows(db, 'test/audits')).toHaveLength(2); // the table has both, notified or not
    stopped = true;
  });
});
