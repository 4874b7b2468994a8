/** Log sequence numbers as bigints, so they compare and subtract exactly. */
export type Lsn = bigint;

/** Broken LSN input is a bug upstream: fail loudly instead of guessing. */
export class InvalidLsnError extends Error {
  readonly code = 'EVENTIDE_INVALID_LSN';
  override readonly name = 'InvalidLsnError';
}

/** Parses Postgres's "X/Y" text form (each half 1 to 8 hex digits). By hand: it runs for every message of the stream. */
export function parseLsn(text: string): Lsn {
  const slash = text.indexOf('/');
  const high = hexHalf(text, 0, slash);
  const low = slash < 0 ? -1 : hexHalf(text, slash + 1, text.length);
  if (high < 0 || low < 0) throw new InvalidLsnError(`invalid LSN "${text}"`);
  return (BigInt(high) << 32n) | BigInt(low);
}

/** The value of text[from, to) as 1 to 8 hex digits, or -1. */
function hexHalf(text: string, from: number, to: number): number {
  if (to - from < 1 || to - from > 8) return -1;
  let value = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

/** Formats an LSN in Postgres's "X/Y" text form (upper-case hex, as pg_lsn prints it). */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
