/** Log sequence numbers as bigints, so they compare and subtract exactly. */
export type Lsn = bigint;

/** Broken LSN input is a bug upstream: fail loudly instead of guessing. */
export class InvalidLsnError extends Error {
  readonly code = 'EVENTIDE_INVALID_LSN';
  override readonly name = 'InvalidLsnError';
}

/** Parses Postgres's "X/Y" text form. */
export function parseLsn(text: string): Lsn {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!match) throw new InvalidLsnError(`invalid LSN "${text}"`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Formats an LSN in Postgres's "X/Y" text form (upper-case hex, as pg_lsn prints it). */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
