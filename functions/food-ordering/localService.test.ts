import { createServer, type Server } from 'node:http';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { listenOnLoopback } from '../../common/loopback.js';
import { endToEndHeaders, LocalService } from './localService.js';

/** A replica: answers its own name, or holds a request until told to answer (a slow delivery). */
async function replica(name: string): Promise<{ port: number; server: Server; held: (() => void)[]; seen: number }> {
  const state = { port: 0, server: createServer(), held: [] as (() => void)[], seen: 0 };
  state.server.on('request', (req, res) => {
    state.seen += 1;
    const answer = () => res.writeHead(200, { 'content-type': 'text/plain', 'x-replica': name }).end(name);
    if (req.headers['x-hold']) state.held.push(answer);
    else answer();
  });
  state.port = await listenOnLoopback(state.server);
  return state;
}

// The dispatcher's client: keep-alive connections, as in dispatcher/delivery/httpSender.ts.
const client = new Agent({ keepAliveTimeout: 30_000 });
async function post(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string } | { refused: true }> {
  try {
    const answer = await request(url, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json', ...headers }, dispatcher: client });
    return { status: answer.statusCode, body: await answer.body.text() };
  } catch (error) {
    const { code, cause } = error as { code?: string; cause?: { code?: string } };
    if (code === 'ECONNREFUSED' || cause?.code === 'ECONNREFUSED') return { refused: true };
    throw error;
  }
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function setUp() {
  const service = await LocalService.reserve('food/validate-order');
  const a = await replica('a');
  const b = await replica('b');
  cleanup.push(async () => {
    await service.close();
    a.server.closeAllConnections();
    b.server.closeAllConnections();
    a.server.close();
    b.server.close();
  });
  return { service, a, b };
}

describe("a Function's local Service", () => {
  it('refuses connections while no replica is ready, as kube-proxy does for a Service without endpoints', async () => {
    const { service, a } = await setUp();
    expect(service.listening).toBe(false);
    expect(await post(service.url)).toEqual({ refused: true });
    service.add(1, a.port);
    await expect.poll(() => service.listening).toBe(true);
    expect(await post(service.url)).toEqual({ status: 200, body: 'a' });
  });

  it('spreads requests over the ready replicas, the least busy first', async () => {
    const { service, a, b } = await setUp();
    service.add(1, a.port);
    service.add(2, b.port);
    await expect.poll(() => service.listening).toBe(true);
    const answers = await Promise.all(Array.from({ length: 10 }, () => post(service.url)));
    expect(answers.every((answer) => 'status' in answer && answer.status === 200)).toBe(true);
    expect([a.seen, b.seen]).toEqual([5, 5]);
    // One replica busy with a slow request: the next ones go to the other.
    const slow = post(service.url, { 'x-hold': '1' });
    await expect.poll(() => a.held.length + b.held.length).toBe(1);
    const busy = a.held.length ? a : b;
    const before = busy.seen;
    for (let i = 0; i < 3; i++) expect(await post(service.url)).toMatchObject({ status: 200 });
    expect(busy.seen).toBe(before);
    busy.held.shift()!();
    expect(await slow).toMatchObject({ status: 200 });
  });

  it('a replica taken out of the rotation gets no new request and finishes the one it has before remove() resolves', async () => {
    const { service, a, b } = await setUp();
    service.add(1, a.port);
    await expect.poll(() => service.listening).toBe(true);
    const inflight = post(service.url, { 'x-hold': '1' });
    await expect.poll(() => a.held.length).toBe(1);
    service.add(2, b.port);
    let removed = false;
    const removal = service.remove(1).then(() => (removed = true));
    expect(service.ready).toBe(1);
    expect(await post(service.url)).toEqual({ status: 200, body: 'b' });
    await new Promise((r) => setTimeout(r, 50));
    expect(removed).toBe(false);
    a.held.shift()!();
    expect(await inflight).toEqual({ status: 200, body: 'a' });
    await removal;
    expect(a.seen).toBe(1);
  });

  it('the last replica out closes the address, kept-alive connections too; the next one opens it again', async () => {
    const { service, a, b } = await setUp();
    service.add(1, a.port);
    await expect.poll(() => service.listening).toBe(true);
    expect(await post(service.url)).toEqual({ status: 200, body: 'a' });
    await service.remove(1);
    await expect.poll(() => service.listening).toBe(false);
    expect(service.ready).toBe(0);
    // The client's idle keep-alive connection was closed: its next request is refused, not answered 503.
    await expect.poll(() => post(service.url)).toEqual({ refused: true });
    service.add(2, b.port);
    await expect.poll(() => service.listening).toBe(true);
    expect(await post(service.url)).toEqual({ status: 200, body: 'b' });
  });

  it("a request in flight when the last replica leaves is answered, and the client's next one is refused, not answered 503", async () => {
    const { service, a } = await setUp();
    service.add(1, a.port);
    await expect.poll(() => service.listening).toBe(true);
    const inflight = post(service.url, { 'x-hold': '1' });
    await expect.poll(() => a.held.length).toBe(1);
    const removal = service.remove(1);
    await expect.poll(() => service.listening).toBe(false);
    a.held.shift()!();
    expect(await inflight).toEqual({ status: 200, body: 'a' });
    await removal;
    expect(await post(service.url)).toEqual({ refused: true });
  });

  it('a replica that is gone answers 502 (retried by the dispatcher), not a hang', async () => {
    const { service } = await setUp();
    const gone = await replica('gone');
    gone.server.close();
    service.add(1, gone.port);
    await expect.poll(() => service.listening).toBe(true);
    expect(await post(service.url)).toMatchObject({ status: 502, body: expect.stringContaining('food/validate-order: replica 1 failed') });
  });
});

describe('forwarding headers', () => {
  it.each([
    { name: 'end-to-end headers pass', given: { 'content-type': 'application/json', 'ce-id': 'x' }, expect: { 'content-type': 'application/json', 'ce-id': 'x' } },
    { name: 'connection and keep-alive describe the hop, not the message', given: { connection: 'keep-alive', 'keep-alive': 'timeout=5', 'ce-id': 'x' }, expect: { 'ce-id': 'x' } },
    { name: 'so do the headers the Connection header names', given: { connection: 'close, X-Hop', 'x-hop': '1', 'ce-id': 'x' }, expect: { 'ce-id': 'x' } },
    { name: "transfer-encoding is the hop's framing", given: { 'transfer-encoding': 'chunked', 'content-type': 'text/plain' }, expect: { 'content-type': 'text/plain' } },
  ])('$name', ({ given, expect: expected }) => {
    expect(endToEndHeaders(given)).toEqual(expected);
  });
});
