import { Agent, type Dispatcher } from 'undici';
import type { OutgoingRequest } from './requestBody.js';

/** How one HTTP attempt went. Never an exception: every failure is described here. */
export interface SendResult {
  /** HTTP status; absent when no response came (refused, reset, timed out). */
  status?: number;
  retryAfter?: string;
  /** Response body, at most 64 KiB (batch answers, error messages). */
  body?: string;
  /** Why the attempt failed, for logs and dead letters; absent on 2xx. */
  error?: string;
  /** The connection was refused: nothing listens there (a Service without ready endpoints, under kube-proxy). */
  refused?: boolean;
  durationMs: number;
}

const MAX_BODY = 64 * 1024;

/**
 * Sends events over keep-alive connection pools (one pool per origin, undici's Agent), because a
 * new TCP connection per event would cost more than the event.
 *
 * It uses undici's dispatch() with its own small handler rather than request(): the response body
 * (an empty 200 or a short batch answer) needs no stream, and the timeout and the shutdown signal
 * abort the attempt through the handler's controller, without an AbortSignal per attempt. On the
 * unbatched hot path, request()'s per-call streams and signals cost about as much as the rest of the
 * delivery.
 */
export class HttpSender {
  private readonly agent: Agent;
  /** URL → its origin and path (and Basic authorization from credentials in it), parsed once. */
  private readonly targets = new Map<string, { origin: string; path: string; authorization?: string }>();
  /** Attempts in flight per shutdown signal, so one listener per signal aborts them all. */
  private readonly inFlight = new WeakMap<AbortSignal, Set<Attempt>>();

  /**
   * No cap on connections per origin by default: each trigger's lane already bounds its attempts by
   * `concurrency` (up to 1024, and several triggers may share one function). A cap below that queued
   * attempts inside the pool with their timeout running, so they timed out without being sent.
   */
  constructor(options: { connectionsPerOrigin?: number } = {}) {
    this.agent = new Agent({ connections: options.connectionsPerOrigin ?? null, keepAliveTimeout: 30_000, pipelining: 1 });
  }

  /** POSTs the request; aborts after `timeoutMs` or when `signal` fires. */
  send(url: string, outgoing: OutgoingRequest, timeoutMs: number, signal?: AbortSignal): Promise<SendResult> {
    const started = performance.now();
    if (signal?.aborted) return Promise.resolve({ error: abortedMessage(signal), durationMs: 0 });
    let target = this.targets.get(url);
    if (!target) {
      const parsed = new URL(url);
      target = { origin: parsed.origin, path: `${parsed.pathname}${parsed.search}` };
      // Credentials in the URL (https://user:pass@host/) are not part of origin or path: sent as they are meant.
      if (parsed.username || parsed.password) {
        target.authorization = `Basic ${Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString('base64')}`;
      }
      if (this.targets.size < 1024) this.targets.set(url, target);
    }
    const headers = target.authorization && outgoing.headers.authorization === undefined ? { ...outgoing.headers, authorization: target.authorization } : outgoing.headers;
    const aborts = signal ? this.abortsFor(signal) : undefined;
    return new Promise<SendResult>((resolve) => {
      const attempt = new Attempt(resolve, started, timeoutMs, aborts);
      try {
        this.agent.dispatch({ origin: target.origin, path: target.path, method: 'POST', headers, body: outgoing.body }, attempt);
      } catch (error) {
        attempt.finish({ error: (error as Error).message, durationMs: performance.now() - started });
      }
    });
  }

  private abortsFor(signal: AbortSignal): Set<Attempt> {
    let set = this.inFlight.get(signal);
    if (!set) {
      const created = new Set<Attempt>();
      signal.addEventListener(
        'abort',
        () => {
          for (const attempt of [...created]) attempt.abort(new Error(abortedMessage(signal)));
        },
        { once: true },
      );
      this.inFlight.set(signal, created);
      set = created;
    }
    return set;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function abortedMessage(signal: AbortSignal): string {
  return `aborted: ${String((signal.reason as Error | undefined)?.message ?? 'shutdown')}`;
}

function timeOut(attempt: Attempt, timeoutMs: number): void {
  attempt.abort(new Error(`timeout after ${timeoutMs}ms`));
}

/**
 * One HTTP attempt: undici's handler for it, and its outcome. A class rather than closures: one object
 * per attempt where the handler's callbacks, the abort and the finish were six (the unbatched hot path
 * makes one per event).
 */
class Attempt implements Dispatcher.DispatchHandler {
  private readonly timer: NodeJS.Timeout;
  private controller: Dispatcher.DispatchController | undefined;
  private abortReason: string | undefined;
  private status: number | undefined;
  private retryAfter: string | undefined;
  private body = '';
  private done = false;

  constructor(
    private readonly resolve: (result: SendResult) => void,
    private readonly started: number,
    timeoutMs: number,
    private readonly aborts: Set<Attempt> | undefined,
  ) {
    this.timer = setTimeout(timeOut, timeoutMs, this, timeoutMs);
    aborts?.add(this);
  }

  abort(reason: Error): void {
    this.abortReason ??= reason.message;
    this.controller?.abort(reason);
  }

  finish(result: SendResult): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.aborts?.delete(this);
    this.resolve(result);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortReason !== undefined) controller.abort(new Error(this.abortReason));
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.status = statusCode;
    const value = headers['retry-after'];
    if (typeof value === 'string') this.retryAfter = value;
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.body.length < MAX_BODY) this.body += chunk.toString('utf8');
  }

  onResponseEnd(): void {
    const code = this.status ?? 0;
    const body = this.body;
    const result: SendResult = { status: code, body: body.slice(0, MAX_BODY), durationMs: performance.now() - this.started };
    if (this.retryAfter !== undefined) result.retryAfter = this.retryAfter;
    if (code < 200 || code >= 300) result.error = `HTTP ${code}${body ? `: ${body.slice(0, 200)}` : ''}`;
    this.finish(result);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    const durationMs = performance.now() - this.started;
    if (this.abortReason !== undefined) {
      this.finish({ error: this.abortReason, durationMs });
      return;
    }
    const { code, cause } = error as { code?: string; cause?: { code?: string; message?: string } };
    const refused = code === 'ECONNREFUSED' || cause?.code === 'ECONNREFUSED';
    this.finish({ error: cause?.message ?? error.message, durationMs, ...(refused ? { refused } : {}) });
  }
}
