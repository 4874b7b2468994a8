import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Request, type Response } from 'express';
import { ATTEMPT_HEADER } from '../../api/v1alpha1/event.js';
import { listen } from '../../common/httpServer.js';
import { createLogger } from '../../common/logger.js';
import { type ParsedRequest, parseCloudEventRequest } from './cloudEvent.js';
import { MalformedEventError, messageOf } from './errors.js';
import { InflightRequests } from './inflight.js';
import type { HttpAnswer } from './outcome.js';
import { type RunContext, runBatch, runEvent } from './runHandlers.js';
import { type EventHandler, resolveServeSettings, type ServeOptions } from './settings.js';
import { checkSignature } from './signature.js';

/** A running function server. */
export interface ServeHandle {
  /** The port it listens on (the chosen one when 0 was asked). */
  readonly port: number;
  /**
   * Drains and stops: /readyz answers 503 and new requests 503 at once; requests in flight finish (up
   * to shutdownTimeoutMs, after which their signals abort and their connections close); then the
   * listener and every keep-alive connection close. Idempotent. Resolves true when all finished in time.
   */
  close(): Promise<boolean>;
}

class BodyTooLargeError extends Error {
  readonly code = 'EVENTIDE_BODY_TOO_LARGE';
  override readonly name = 'BodyTooLargeError';
}

/** Reads the whole body up to `limit` bytes; the raw bytes are what the signature covers. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      req.resume();
      reject(new BodyTooLargeError(`body is larger than ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      tooLarge = true;
      reject(new BodyTooLargeError(`body is larger than ${limit} bytes`));
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('close', () => reject(new Error('the client closed the request before sending all of it')));
  });
}

function errorAnswer(status: number, code: string, message: string, extra: Record<string, unknown> = {}): HttpAnswer {
  return { status, body: { error: { code, message, ...extra } } };
}

function attemptOf(req: Request): number | undefined {
  const value = Number(req.get(ATTEMPT_HEADER));
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/**
 * Serves a function: CloudEvents over HTTP in (binary, structured and batch modes, with Standard
 * Webhooks signatures checked when a secret is set), the handler run per event, and an answer the
 * dispatcher's retry rules understand: 200 delivered; 500 retry; 422 PermanentError, dead-letter now;
 * 503 + Retry-After RetryLaterError; batches 200 + `{ failures }` (see answerForBatch). Also /healthz,
 * /readyz, and graceful shutdown on SIGTERM/SIGINT (a second signal exits at once).
 */
export async function serve(handler: EventHandler, options: ServeOptions = {}): Promise<ServeHandle> {
  const settings = resolveServeSettings(options);
  const logger = options.logger ?? createLogger('eventide-function');
  const inflight = new InflightRequests();
  let draining = false;

  const send = (res: Response, answer: HttpAnswer): void => {
    if (res.headersSent || res.destroyed) return;
    // Once draining, no connection is kept for another request.
    if (draining) res.set('Connection', 'close');
    if (answer.retryAfterSeconds !== undefined) res.set('Retry-After', String(answer.retryAfterSeconds));
    res.status(answer.status);
    if (answer.body === undefined) res.end();
    else res.json(answer.body);
  };

  const handleEvents = async (req: Request, res: Response, signal: AbortSignal): Promise<void> => {
    let body: Buffer;
    try {
      body = await readBody(req, settings.maxBodyBytes);
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        res.set('Connection', 'close');
        send(res, errorAnswer(413, error.code, error.message));
      }
      return;
    }
    if (settings.signingSecret !== undefined) {
      const problem = checkSignature(settings.signingSecret, req.headers, body);
      if (problem !== undefined) {
        logger.warn({ status: 401, reason: problem }, 'request rejected: bad signature');
        send(res, errorAnswer(401, 'EVENTIDE_BAD_SIGNATURE', problem));
        return;
      }
    }
    let parsed: ParsedRequest;
    try {
      parsed = parseCloudEventRequest(req.headers, body);
    } catch (error) {
      if (!(error instanceof MalformedEventError)) throw error;
      logger.warn({ status: error.status, reason: error.message, ceId: req.get('ce-id') }, 'request rejected: not an eventide CloudEvent');
      send(res, errorAnswer(error.status, error.code, error.message, { attributes: error.attributes }));
      return;
    }
    const run: RunContext = { handler, batchHandler: options.batchHandler, logger, signal, attempt: attemptOf(req) };
    send(res, parsed.mode === 'batch' ? await runBatch(parsed.events, run) : await runEvent(parsed.event, run));
  };

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.get('/healthz', (_req, res) => {
    res.status(200).type('text/plain').send('ok');
  });
  app.get('/readyz', (_req, res) => {
    if (draining) res.status(503).type('text/plain').send('not ready: shutting down');
    else res.status(200).type('text/plain').send('ok');
  });
  app.use(async (req, res) => {
    if (req.method !== 'POST') {
      send(res, errorAnswer(405, 'EVENTIDE_METHOD_NOT_ALLOWED', 'events are POSTed; GET /healthz and /readyz for health'));
      return;
    }
    if (draining) {
      send(res, { status: 503, retryAfterSeconds: 1, body: { error: { code: 'EVENTIDE_SHUTTING_DOWN', message: 'shutting down' } } });
      return;
    }
    const request = inflight.begin();
    // The dispatcher hanging up (its attempt timed out) aborts the handler's signal.
    res.once('close', () => {
      if (!res.writableFinished) request.abort(new Error('the client closed the connection before the answer'));
    });
    try {
      await handleEvents(req, res, request.signal);
    } catch (error) {
      logger.error({ err: error }, 'unexpected error handling a request');
      send(res, errorAnswer(500, 'EVENTIDE_INTERNAL', messageOf(error)));
    } finally {
      // Counted until the answer is flushed, so shutdown never closes a connection under a response.
      if (!res.writableFinished && !res.destroyed) await new Promise((resolve) => res.once('close', resolve));
      request.end();
    }
  });

  const server = await listen(app, settings.port, settings.host);
  const port = (server.address() as AddressInfo).port;
  logger.info({ port, signed: settings.signingSecret !== undefined }, 'function listening');

  let closing: Promise<boolean> | undefined;
  const drainAndClose = async (): Promise<boolean> => {
    draining = true;
    logger.info({ inflight: inflight.size, shutdownTimeoutMs: settings.shutdownTimeoutMs }, 'draining');
    const drained = await inflight.whenIdle(settings.shutdownTimeoutMs);
    if (!drained) {
      logger.warn({ inflight: inflight.size }, 'shutdown deadline passed; aborting events in flight');
      inflight.abortAll(new Error('the function is shutting down'));
    }
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    if (drained) server.closeIdleConnections();
    else server.closeAllConnections();
    // A client half-way through sending a request on a kept-alive connection gets its 503 and
    // Connection: close; one that stalls is cut after a second.
    const cut = setTimeout(() => server.closeAllConnections(), 1000);
    await closed;
    clearTimeout(cut);
    removeSignalHandlers();
    logger.info({ drained }, 'stopped');
    return drained;
  };
  const close = (): Promise<boolean> => (closing ??= drainAndClose());

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      logger.warn({ signal }, 'second signal; exiting now');
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, 'signal received');
    void close().then((drained) => process.exit(drained ? 0 : 1));
  };
  const removeSignalHandlers = (): void => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
  if (settings.handleSignals) {
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }

  return { port, close };
}
