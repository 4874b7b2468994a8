import { Agent, request } from 'undici';
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
  durationMs: number;
}

const MAX_BODY = 64 * 1024;

/**
 * Sends events over keep-alive connection pools (one pool per origin, undici's Agent), because a
 * new TCP connection per event would cost more than the event.
 */
export class HttpSender {
  private readonly agent: Agent;

  constructor(options: { connectionsPerOrigin?: number } = {}) {
    this.agent = new Agent({ connections: options.connectionsPerOrigin ?? 128, keepAliveTimeout: 30_000, pipelining: 1 });
  }

  /** POSTs the request; aborts after `timeoutMs` or when `signal` fires. */
  async send(url: string, outgoing: OutgoingRequest, timeoutMs: number, signal?: AbortSignal): Promise<SendResult> {
    const started = performance.now();
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      const response = await request(url, { method: 'POST', headers: outgoing.headers, body: outgoing.body, dispatcher: this.agent, signal: combined });
      let body = '';
      for await (const chunk of response.body) {
        if (body.length < MAX_BODY) body += (chunk as Buffer).toString('utf8');
      }
      const durationMs = performance.now() - started;
      const retryAfter = response.headers['retry-after'];
      const result: SendResult = { status: response.statusCode, body: body.slice(0, MAX_BODY), durationMs };
      if (typeof retryAfter === 'string') result.retryAfter = retryAfter;
      if (response.statusCode < 200 || response.statusCode >= 300) result.error = `HTTP ${response.statusCode}${body ? `: ${body.slice(0, 200)}` : ''}`;
      return result;
    } catch (error) {
      const durationMs = performance.now() - started;
      if (timeout.aborted) return { error: `timeout after ${timeoutMs}ms`, durationMs };
      if (signal?.aborted) return { error: `aborted: ${String((signal.reason as Error | undefined)?.message ?? 'shutdown')}`, durationMs };
      const cause = (error as { cause?: { message?: string } }).cause;
      return { error: cause?.message ?? (error as Error).message, durationMs };
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
