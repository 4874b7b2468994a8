import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { listenOnLoopback } from '../../common/loopback.js';

/** One request the sink received. */
export interface ReceivedRequest {
  headers: IncomingHttpHeaders;
  body: string;
  receivedAt: number;
}

/** What the sink answers; the test decides per request. */
export interface SinkReply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Wait this long before answering (a slow function). */
  delayMs?: number;
  /** Never answer (a hung function). */
  hang?: boolean;
}

/** A real HTTP server on loopback standing in for a function; records every request. */
export interface RecordingSink {
  url: string;
  requests: ReceivedRequest[];
  /** Bodies of binary-mode CloudEvents parsed, with their ce-id. */
  events(): { id: string; type: string; subject: string; data: Record<string, unknown> }[];
  waitFor(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a recording sink whose answers come from `reply` (200 by default). */
export async function startRecordingSink(reply: (req: ReceivedRequest, index: number) => SinkReply = () => ({ status: 200 })): Promise<RecordingSink> {
  const requests: ReceivedRequest[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received: ReceivedRequest = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), receivedAt: Date.now() };
      const index = requests.length;
      requests.push(received);
      for (const w of waiters.filter((w) => requests.length >= w.count)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      const answer = reply(received, index);
      if (answer.hang) return;
      const send = () => {
        res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        res.end(answer.body ?? '');
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  server.keepAliveTimeout = 30_000;
  const port = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    events() {
      return requests
        .filter((r) => r.headers['ce-id'])
        .map((r) => ({
          id: String(r.headers['ce-id']),
          type: String(r.headers['ce-type']),
          subject: String(r.headers['ce-subject']),
          data: JSON.parse(r.body) as Record<string, unknown>,
        }));
    },
    waitFor(count, timeoutMs = 30_000) {
      if (requests.length >= count) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`sink got ${requests.length} of ${count} requests in ${timeoutMs}ms`)), timeoutMs);
        waiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls `check` until it returns a truthy value or the time runs out; returns that value. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 30_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
