import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Standard Webhooks secrets are "whsec_" + base64; anything else is used as raw bytes. */
function secretBytes(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret, 'utf8');
}

function signature(secret: string, id: string, timestamp: string, body: string | Buffer): string {
  return createHmac('sha256', secretBytes(secret)).update(`${id}.${timestamp}.`).update(body).digest('base64');
}

/**
 * The webhook-id of a request: Standard Webhooks wants it unique per message and the same when that
 * message is resent. One event is its own message (its id); a batch is identified by the ids it holds,
 * so a resent batch keeps its id while a batch of a different set of events (say, the failed items
 * of an earlier batch, sent again) gets its own, and a receiver deduplicating on webhook-id drops neither.
 */
export function webhookMessageId(eventIds: readonly string[]): string {
  if (eventIds.length === 1) return eventIds[0]!;
  return `batch_${createHash('sha256')
    .update([...eventIds].sort().join(','))
    .digest('hex')
    .slice(0, 32)}`;
}

/** Standard Webhooks headers for a payload: webhook-id, webhook-timestamp, webhook-signature. */
export function signPayload(secret: string, id: string, body: string, nowMs: number = Date.now()): Record<string, string> {
  const timestamp = String(Math.floor(nowMs / 1000));
  return { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature(secret, id, timestamp, body)}` };
}

/**
 * Verifies Standard Webhooks headers; returns undefined when valid, else why not. Timestamps more
 * than `toleranceSeconds` away from now are refused, so a captured request cannot be replayed later.
 */
export function verifyPayload(
  secret: string,
  headers: { id?: string; timestamp?: string; signature?: string },
  body: string | Buffer,
  nowMs: number = Date.now(),
  toleranceSeconds = 300,
): string | undefined {
  const { id, timestamp, signature: header } = headers;
  if (!id || !timestamp || !header) return 'missing webhook-id, webhook-timestamp or webhook-signature header';
  const seconds = Number(timestamp);
  if (!Number.isInteger(seconds)) return 'webhook-timestamp is not a number of seconds';
  if (Math.abs(nowMs / 1000 - seconds) > toleranceSeconds) return 'webhook-timestamp is too old or in the future';
  const expected = Buffer.from(signature(secret, id, timestamp, body));
  for (const candidate of header.split(' ')) {
    const [version, value] = candidate.split(',');
    if (version !== 'v1' || !value) continue;
    const given = Buffer.from(value);
    if (given.length === expected.length && timingSafeEqual(given, expected)) return undefined;
  }
  return 'webhook-signature does not match the payload';
}
