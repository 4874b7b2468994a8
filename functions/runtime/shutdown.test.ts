import { spawn } from 'node:child_process';
import { Agent, type IncomingHttpHeaders, request } from 'node:http';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { EventideEvent } from '../../api/v1alpha1/event.js';
import { silentLogger } from '../../common/logger.js';
import { binaryModeHeaders } from '../../dispatcher/delivery/requestBody.js';
import { type EventHandler, type ServeHandle, type ServeOptions, serve } from './index.js';

function eventFor(id: string, delayMs = 0): { headers: Record<string, string>; body: string } {
  const event: Omit<EventideEvent, 'data'> = {
    specversion: '1.0',
    id,
    source: '/eventide/food/new-order',
    type: 'dev.eventide.row.insert',
    subject: `public.orders/${id}`,
    time: '2026-01-02T03:04:05.123Z',
    datacontenttype: 'application/json',
  };
  return {
    headers: binaryModeHeaders(event),
    body: JSON.stringify({
      op: 'insert',
      table: { schema: 'public', name: 'orders' },
      old: null,
      new: { id, delayMs },
      lsn: '0/1',
      xid: 1,
      commitTime: event.time,
    }),
  };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  socket: Socket;
}

/** One HTTP request over node:http, so tests can see the connection it used. */
function send(port: number, method: string, path: string, options: { agent?: Agent; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: options.agent ?? false, headers: options.headers }, (res) => {
      const socket = res.socket;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString(), socket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function postEvent(port: number, id: string, options: { agent?: Agent; delayMs?: number } = {}): Promise<Answer> {
  const { headers, body } = eventFor(id, options.delayMs);
  return send(port, 'POST', '/', { headers, body, ...(options.agent ? { agent: options.agent } : {}) });
}

/** A promise with its resolve function, for gating handlers. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open: (value: T) => void = () => {};
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

const running: ServeHandle[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.close()));
});

async function start(handler: EventHandler, options: ServeOptions = {}): Promise<ServeHandle> {
  const handle = await serve(handler, { port: 0, host: '127.0.0.1', handleSignals: false, logger: silentLogger(), signingSecret: '', ...options });
  running.push(handle);
  return handle;
}

describe('graceful shutdown', () => {
  it('lets a slow request finish with 200 while refusing new ones and reporting not ready', async () => {
    const started = gate();
    const release = gate();
    const handled: string[] = [];
    const handle = await start(async (event) => {
      if (event.id === 'slow') {
        started.open();
        await release.promise;
      }
      handled.push(event.id);
    });
    const slow = postEvent(handle.port, 'slow');
    await started.promise;

    const closed = handle.close();
    const duringDrain = await postEvent(handle.port, 'late');
    const readyz = await send(handle.port, 'GET', '/readyz');
    const healthz = await send(handle.port, 'GET', '/healthz');
    expect({ late: duringDrain.status, retryAfter: duringDrain.headers['retry-after'], readyz: readyz.status, healthz: healthz.status }).toStrictEqual({
      late: 503,
      retryAfter: '1',
      readyz: 503,
      healthz: 200,
    });

    release.open();
    const slowAnswer = await slow;
    expect(slowAnswer.status).toBe(200);
    expect(slowAnswer.headers.connection).toBe('close');
    expect(await closed).toBe(true);
    await expect(postEvent(handle.port, 'after')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(handled).toStrictEqual(['slow']);
  });

  it('closes idle keep-alive connections once in-flight requests complete', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const release = gate();
    const started = gate();
    const handle = await start(async (event) => {
      if (event.id === 'slow') {
        started.open();
        await release.promise;
      }
    });
    const warm = await postEvent(handle.port, 'warm', { agent });
    expect(warm.status).toBe(200);
    const idleSocket = warm.socket;
    const idleClosed = new Promise<void>((resolve) => idleSocket.once('close', () => resolve()));

    const slow = postEvent(handle.port, 'slow', { agent });
    await started.promise;
    let closeResolved = false;
    const closed = handle.close().then((drained) => {
      closeResolved = true;
      return drained;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(closeResolved).toBe(false);
    release.open();
    expect((await slow).status).toBe(200);
    expect(await closed).toBe(true);
    await idleClosed;
    expect(idleSocket.destroyed).toBe(true);
    agent.destroy();
  });

  it('aborts handlers that outlive shutdownTimeoutMs and cuts their connections', async () => {
    const started = gate();
    const abortReason = gate<unknown>();
    const handle = await start(
      async (_event, { signal }) => {
        started.open();
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        abortReason.open(signal.reason);
      },
      { shutdownTimeoutMs: 200 },
    );
    const stuck = postEvent(handle.port, 'stuck').then(
      (answer) => answer.status,
      (error: NodeJS.ErrnoException) => error.code,
    );
    await started.promise;
    const began = Date.now();
    expect(await handle.close()).toBe(false);
    expect(Date.now() - began).toBeGreaterThanOrEqual(190);
    expect(String(await abortReason.promise)).toMatch(/shutting down/);
    expect(await stuck).toBe('ECONNRESET');
  });

  it('on SIGTERM, finishes the request in flight, then exits 0', async () => {
    const fixture = fileURLToPath(new URL('./testdata/slowFunction.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
      env: { ...process.env, PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const lines: string[] = [];
      const port = await new Promise<number>((resolve, reject) => {
        let buffered = '';
        child.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString();
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            lines.push(line);
            const parsed = JSON.parse(line) as { msg?: string; port?: number };
            if (parsed.msg === 'function listening' && parsed.port) resolve(parsed.port);
          }
        });
        child.once('exit', (code) => reject(new Error(`fixture exited early with ${code}`)));
      });
      const slow = postEvent(port, 'slow', { delayMs: 500 });
      await new Promise((resolve) => setTimeout(resolve, 100));
      child.kill('SIGTERM');
      expect((await slow).status).toBe(200);
      expect(await exited).toBe(0);
      const handledLine = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'event handled');
      expect(handledLine).toMatchObject({ eventId: 'slow', type: 'dev.eventide.row.insert', subject: 'public.orders/slow', outcome: 'ok' });
      expect(handledLine).not.toHaveProperty('data');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
