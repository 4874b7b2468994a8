import type { BatchResponse, EventideEvent } from '../../api/v1alpha1/event.js';
import type { Logger } from '../../common/logger.js';

/** What a handler gets besides the event. */
export interface HandlerContext {
  /** A child logger carrying the event's id, type and subject. */
  logger: Logger;
  /** Aborted when the dispatcher hangs up (its per-attempt timeout) or the shutdown deadline passes. */
  signal: AbortSignal;
  /** 1 for the first delivery of this event, from the `eventide-attempt` header when the dispatcher sends it. */
  attempt?: number;
}

/**
 * Handles one event. Resolve (any value, which is ignored) to acknowledge it; throw to have it retried;
 * throw PermanentError to have it dead-lettered now; throw RetryLaterError to be retried after a delay.
 */
export type EventHandler = (event: EventideEvent, ctx: HandlerContext) => Promise<unknown>;

/** Handles a whole batch at once; answers which ids failed (the others count as delivered). */
export type BatchHandler = (events: EventideEvent[], ctx: HandlerContext) => Promise<BatchResponse | undefined>;

/** Options of serve(); each unset one falls back to its environment variable, then to its default. */
export interface ServeOptions {
  /** Default: env PORT, else 8080. 0 picks a free port. */
  port?: number;
  /** Default 0.0.0.0. */
  host?: string;
  /** Standard Webhooks secret (`whsec_<base64>` or raw). Default: env EVENTIDE_SIGNING_SECRET; unset means unsigned. */
  signingSecret?: string;
  /** Handles batches in one call instead of calling the handler per event. */
  batchHandler?: BatchHandler;
  /** How long in-flight events may finish after close() or SIGTERM. Default: env EVENTIDE_SHUTDOWN_TIMEOUT_MS, else 25000. */
  shutdownTimeoutMs?: number;
  /** Largest request body. Default 10 MiB. */
  maxBodyBytes?: number;
  /** On SIGTERM/SIGINT, drain and exit the process. Default true; set false to call close() yourself. */
  handleSignals?: boolean;
  /** Default: a pino logger named "eventide-function". */
  logger?: Logger;
}

/** serve()'s settings once resolved. */
export interface ServeSettings {
  port: number;
  host: string;
  signingSecret: string | undefined;
  shutdownTimeoutMs: number;
  maxBodyBytes: number;
  handleSignals: boolean;
}

/** A setting that cannot be used; the message names it. */
export class RuntimeSettingsError extends Error {
  readonly code = 'EVENTIDE_RUNTIME_SETTINGS';
  override readonly name = 'RuntimeSettingsError';
}

/** Kubernetes' default grace period is 30s; leave the process time to exit after draining. */
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 25_000;
const DEFAULT_PORT = 8080;
const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;

function nonNegativeInt(name: string, value: number | string | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value === '') return fallback;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new RuntimeSettingsError(`${name} must be an integer from 0 to ${max}, got "${value}"`);
  return n;
}

/** Resolves serve()'s options against the environment, once, at start-up. */
export function resolveServeSettings(options: ServeOptions, env: NodeJS.ProcessEnv = process.env): ServeSettings {
  const secret = options.signingSecret ?? env.EVENTIDE_SIGNING_SECRET;
  return {
    port: nonNegativeInt(options.port === undefined ? 'env PORT' : 'port', options.port ?? env.PORT, DEFAULT_PORT, 65535),
    host: options.host ?? '0.0.0.0',
    signingSecret: secret === undefined || secret === '' ? undefined : secret,
    shutdownTimeoutMs: nonNegativeInt(
      options.shutdownTimeoutMs === undefined ? 'env EVENTIDE_SHUTDOWN_TIMEOUT_MS' : 'shutdownTimeoutMs',
      options.shutdownTimeoutMs ?? env.EVENTIDE_SHUTDOWN_TIMEOUT_MS,
      DEFAULT_SHUTDOWN_TIMEOUT_MS,
    ),
    maxBodyBytes: nonNegativeInt('maxBodyBytes', options.maxBodyBytes, DEFAULT_MAX_BODY_BYTES),
    handleSignals: options.handleSignals ?? true,
  };
}
