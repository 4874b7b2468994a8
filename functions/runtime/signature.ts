import type { IncomingHttpHeaders } from 'node:http';
import { verifyPayload } from '../../dispatcher/delivery/signing.js';

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The dispatcher signs with Standard Webhooks headers; returns why a request fails the check, or undefined. */
export function checkSignature(secret: string, headers: IncomingHttpHeaders, body: Buffer): string | undefined {
  return verifyPayload(secret, { id: header(headers, 'webhook-id'), timestamp: header(headers, 'webhook-timestamp'), signature: header(headers, 'webhook-signature') }, body);
}
