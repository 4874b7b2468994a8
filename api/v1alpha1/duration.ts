/** Go-style duration strings ("250ms", "1s", "5m", "1h30m"), the form Kubernetes users already write. */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;

/** Error thrown for a malformed duration; `code` is stable for callers. */
export class InvalidDurationError extends Error {
  readonly code = 'EVENTIDE_INVALID_DURATION';
  override readonly name = 'InvalidDurationError';
}

/** Parses a duration string into milliseconds. */
export function parseDuration(text: string): number {
  if (!new RegExp(DURATION_PATTERN).test(text)) {
    throw new InvalidDurationError(`invalid duration "${text}": use a number with a unit, like 500ms, 30s, 5m or 1h30m`);
  }
  let total = 0;
  for (const [, amount, unit] of text.matchAll(PART)) total += Number(amount) * (UNIT_MS[unit!] ?? 0);
  return Math.round(total);
}
