/**
 * A failure retrying cannot fix (a spec the operator cannot act on). The controller records it in the
 * resource's status and does not requeue; the next change to the resource reconciles it again.
 */
export class TerminalError extends Error {
  readonly code = 'EVENTIDE_TERMINAL';
  override readonly name = 'TerminalError';
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The HTTP status of a failed Kubernetes API call (client-node's ApiException or a watch error). */
export function apiStatusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, statusCode } = error as { code?: unknown; statusCode?: unknown };
  if (typeof code === 'number') return code;
  if (typeof statusCode === 'number') return statusCode;
  return undefined;
}

export const isNotFound = (error: unknown): boolean => apiStatusCode(error) === 404;
/** 409: a stale resourceVersion, or a create of something that exists. */
export const isConflict = (error: unknown): boolean => apiStatusCode(error) === 409;

/** The API server's own message from a failed call (its Status body), else the error's message. */
export function apiErrorMessage(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'body' in error) {
    const body = (error as { body?: unknown }).body;
    const parsed = typeof body === 'string' ? safeJson(body) : body;
    if (typeof parsed === 'object' && parsed !== null && typeof (parsed as { message?: unknown }).message === 'string') {
      return (parsed as { message: string }).message;
    }
  }
  return error instanceof Error ? error.message : String(error);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** An API call that failed, with the server's message and status code kept for callers and logs. */
export class KubeApiError extends Error {
  readonly code = 'EVENTIDE_KUBE_API';
  override readonly name = 'KubeApiError';
  constructor(
    readonly operation: string,
    readonly statusCode: number | undefined,
    options: { cause: unknown },
  ) {
    super(`${operation}: ${statusCode ? `HTTP ${statusCode}: ` : ''}${apiErrorMessage(options.cause)}`, options);
  }
}
