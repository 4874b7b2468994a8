import { afterEach, describe, expect, it } from 'vitest';
import type { EventideEvent, RowChange } from '../../api/v1alpha1/event.js';
import { silentLogger } from '../../common/logger.js';
import { binaryModeHeaders } from '../../dispatcher/delivery/requestBody.js';
import { signPayload } from '../../dispatcher/delivery/signing.js';
import { type EventHandler, type HandlerContext, PermanentError, RetryLaterError, type ServeHandle, type ServeOptions, serve } from './index.js';

const data: RowChange = {
  op: 'update',
  table: { schema: 'public', name: 'orders' },
  old: { id: 7, is_paid: false },
  new: { id: 7, is_paid: true, total: 12.5, placed_at: '2026-01-02T03:04:05.000Z', items: [{ sku: 'pho', qty: 2 }] },
  lsn: '0/16B3748',
  xid: 742,
  commitTime: '2026-01-02T03:04:05.123Z',
};

function makeEvent(id: string, subject = 'public.orders/7'): EventideEvent {
  return {
    specversion: '1.0',
    id,
    source: '/eventide/food/order-paid',
    type: 'dev.eventide.row.update',
    subject,
    time: '2026-01-02T03:04:05.123Z',
    datacontenttype: 'application/json',
    data,
  };
}

const running: ServeHandle[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.close()));
});

async function start(handler: EventHandler, options: ServeOptions = {}): Promise<{ handle: ServeHandle; url: string }> {
  const handle = await serve(handler, { port: 0, host: '127.0.0.1', handleSignals: false, logger: silentLogger(), signingSecret: '', ...options });
  running.push(handle);
  return { handle, url: `http://127.0.0.1:${handle.port}` };
}

function postBinary(url: string, event: EventideEvent, extra: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { ...binaryModeHeaders(event), ...extra }, body: JSON.stringify(event.data) });
}

describe('serve: CloudEvents in', () => {
  it('parses a binary-mode event into exactly the EventideEvent fields and answers 200', async () => {
    const seen: { event: EventideEvent; ctx: HandlerContext }[] = [];
    const { url } = await start(async (event, ctx) => {
      seen.push({ event, ctx });
    });
    const sent = makeEvent('evt-binary');
    const res = await postBinary(url, sent, { 'ce-traceparent': '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'eventide-attempt': '3' });
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.event).toStrictEqual(sent);
    expect(Object.keys(seen[0]!.event).sort()).toStrictEqual(['data', 'datacontenttype', 'id', 'source', 'specversion', 'subject', 'time', 'type']);
    expect(seen[0]!.ctx.attempt).toBe(3);
    expect(seen[0]!.ctx.signal.aborted).toBe(false);
  });

  it('parses a structured-mode event', async () => {
    const seen: EventideEvent[] = [];
    const { url } = await start(async (event) => {
      seen.push(event);
    });
    const sent = makeEvent('evt-structured');
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(sent) });
    expect(res.status).toBe(200);
    expect(seen).toStrictEqual([sent]);
  });

  it('answers a batch with one failing item 200 and { failures: [that id] }', async () => {
    const seen: string[] = [];
    const { url } = await start(async (event) => {
      seen.push(event.id);
      if (event.id === 'b2') throw new Error('payment provider timed out');
    });
    const batch = [makeEvent('b1', 'public.orders/1'), makeEvent('b2', 'public.orders/2'), makeEvent('b3', 'public.orders/3')];
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/cloudevents-batch+json' }, body: JSON.stringify(batch) });
    expect(res.status).toBe(200);
    expect(await res.json()).toStrictEqual({ failures: [{ id: 'b2', reason: 'payment provider timed out' }] });
    expect(seen).toStrictEqual(['b1', 'b2', 'b3']);
  });

  it('does not run a batch item after an earlier failure on the same row, and lists it failed', async () => {
    const seen: string[] = [];
    const { url } = await start(async (event) => {
      seen.push(event.id);
      if (event.id === 'r1') throw new Error('locked');
    });
    const batch = [makeEvent('r1', 'public.orders/1'), makeEvent('other', 'public.orders/2'), makeEvent('r1-later', 'public.orders/1')];
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/cloudevents-batch+json' }, body: JSON.stringify(batch) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { failures: { id: string }[] };
    expect(body.failures.map((f) => f.id)).toStrictEqual(['r1', 'r1-later']);
    expect(seen).toStrictEqual(['r1', 'other']);
  });

  it('hands a batch to the batch handler when there is one', async () => {
    const batches: string[][] = [];
    const { url } = await start(
      async () => {
        throw new Error('the per-event handler must not run');
      },
      {
        batchHandler: async (events) => {
          batches.push(events.map((e) => e.id));
          return { failures: [{ id: 'c2', reason: 'no stock' }] };
        },
      },
    );
    const batch = [makeEvent('c1'), makeEvent('c2')];
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/cloudevents-batch+json' }, body: JSON.stringify(batch) });
    expect(res.status).toBe(200);
    expect(await res.json()).toStrictEqual({ failures: [{ id: 'c2', reason: 'no stock' }] });
    expect(batches).toStrictEqual([['c1', 'c2']]);
  });

  it('answers a malformed event 400 naming the missing attribute, without running the handler', async () => {
    let calls = 0;
    const { url } = await start(async () => {
      calls++;
    });
    const headers = binaryModeHeaders(makeEvent('evt-malformed'));
    delete headers['ce-source'];
    const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(data) });
    expect(res.status).toBe(400);
    expect(await res.json()).toStrictEqual({
      error: { code: 'EVENTIDE_MALFORMED_EVENT', message: 'missing required attribute ce-source', attributes: ['ce-source'] },
    });
    expect(calls).toBe(0);
  });

  it('answers invalid JSON 400', async () => {
    const { url } = await start(async () => {});
    const res = await fetch(url, { method: 'POST', headers: binaryModeHeaders(makeEvent('evt-json')), body: '{"op": "upd' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
  });

  it('answers a body over the limit 413', async () => {
    const { url } = await start(async () => {}, { maxBodyBytes: 1024 });
    const res = await fetch(url, { method: 'POST', headers: binaryModeHeaders(makeEvent('evt-big')), body: JSON.stringify({ ...data, pad: 'x'.repeat(4096) }) });
    expect(res.status).toBe(413);
  });
});

describe('serve: handler outcomes', () => {
  it('answers a thrown error 500 with its message, so the dispatcher retries', async () => {
    const { url } = await start(async () => {
      throw new Error('database unavailable');
    });
    const res = await postBinary(url, makeEvent('evt-500'));
    expect(res.status).toBe(500);
    expect(await res.json()).toStrictEqual({ error: { code: 'EVENTIDE_HANDLER_FAILED', message: 'database unavailable' } });
  });

  it('answers a PermanentError 422, so the dispatcher does not retry', async () => {
    const { url } = await start(async () => {
      throw new PermanentError('order 7 does not exist');
    });
    const res = await postBinary(url, makeEvent('evt-422'));
    expect(res.status).toBe(422);
    expect(await res.json()).toStrictEqual({ error: { code: 'EVENTIDE_PERMANENT', message: 'order 7 does not exist' } });
  });

  it('answers a RetryLaterError 503 with Retry-After', async () => {
    const { url } = await start(async () => {
      throw new RetryLaterError(42, 'restaurant closed for now');
    });
    const res = await postBinary(url, makeEvent('evt-503'));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('42');
    expect(await res.json()).toStrictEqual({ error: { code: 'EVENTIDE_RETRY_LATER', message: 'restaurant closed for now' } });
  });

  it('aborts the handler signal when the client hangs up', async () => {
    let aborted: (reason: unknown) => void = () => {};
    const abortedWith = new Promise<unknown>((resolve) => (aborted = resolve));
    let started: () => void = () => {};
    const handlerStarted = new Promise<void>((resolve) => (started = resolve));
    const { url } = await start(async (_event, { signal }) => {
      started();
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      aborted(signal.reason);
    });
    const client = new AbortController();
    const request = fetch(url, { method: 'POST', headers: binaryModeHeaders(makeEvent('evt-hangup-2')), body: JSON.stringify(data), signal: client.signal }).catch(() => undefined);
    await handlerStarted;
    client.abort();
    await request;
    expect(String(await abortedWith)).toMatch(/closed the connection/);
  });
});

describe('serve: signatures', () => {
  const secret = `whsec_${Buffer.from('a secret of thirty-two bytes....').toString('base64')}`;

  it('runs a request the dispatcher signed, and refuses a tampered or unsigned one 401 without running the handler', async () => {
    const seen: string[] = [];
    const { url } = await start(
      async (event) => {
        seen.push(event.id);
      },
      { signingSecret: secret },
    );
    const event = makeEvent('evt-signed');
    const body = JSON.stringify(event.data);
    const signed = signPayload(secret, event.id, body);
    expect((await postBinary(url, event, signed)).status).toBe(200);

    const tampered = await fetch(url, { method: 'POST', headers: { ...binaryModeHeaders(event), ...signed }, body: body.replace('12.5', '0.5') });
    expect(tampered.status).toBe(401);
    expect(((await tampered.json()) as { error: { message: string } }).error.message).toBe('webhook-signature does not match the payload');

    const unsigned = await postBinary(url, makeEvent('evt-unsigned'));
    expect(unsigned.status).toBe(401);
    expect(((await unsigned.json()) as { error: { message: string } }).error.message).toContain('missing webhook-id');
    expect(seen).toStrictEqual(['evt-signed']);
  });
});

describe('serve: health', () => {
  it('answers /healthz and /readyz 200 while serving, and other methods 405', async () => {
    const { url } = await start(async () => {});
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    expect((await fetch(url)).status).toBe(405);
  });
});
