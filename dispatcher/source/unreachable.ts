import { redactUrl } from '../../common/logger.js';

/** Network errors and server states that a later attempt may get past. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', '57P01', '57P02', '57P03']);

/**
 * Whether the database could not be reached (refused, timed out, unknown host yet, starting up or
 * shutting down), as opposed to refusing us (a wrong password, a database that does not exist), which
 * retrying cannot fix. pg reports connect timeouts and dropped connections without a code.
 */
export function isUnreachable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && UNREACHABLE_CODES.has(code)) return true;
  const message = error instanceof Error ? error.message : '';
  return /timeout expired|Connection terminated|ECONNREFUSED|connect ETIMEDOUT/.test(message);
}

/** One line naming the database (without its password) and why it could not be reached. */
export function unreachableMessage(url: string, error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const reason = code === 'ECONNREFUSED' || (error instanceof Error && error.message.includes('ECONNREFUSED')) ? 'connection refused' : error instanceof Error ? error.message : String(error);
  return `cannot connect to the database at ${redactUrl(url)}: ${reason}`;
}
