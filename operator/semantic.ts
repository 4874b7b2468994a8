import { createHash } from 'node:crypto';

/** JSON with object keys sorted and undefined members dropped: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(normalize(value));
}

function normalize(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const member = (value as Record<string, unknown>)[key];
      if (member !== undefined) out[key] = normalize(member);
    }
    return out;
  }
  return value;
}

/** Deep equality of JSON-like values, ignoring key order and undefined members. */
export function semanticEqual(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/** A short, stable hash of a JSON-like value (hex). */
export function shortHash(value: unknown, length = 10): string {
  const text = typeof value === 'string' ? value : canonicalJson(value);
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/**
 * True when every field set in `desired` has the same value in `live` (which may carry more: defaults,
 * status, other managers' fields). Arrays must have the same length, element by element.
 */
export function isSubset(desired: unknown, live: unknown): boolean {
  return firstDifference(desired, live) === undefined;
}

/** The path of the first field where `live` does not hold `desired` (see isSubset), for logs. */
export function firstDifference(desired: unknown, live: unknown, path = ''): string | undefined {
  if (desired === undefined) return undefined;
  if (desired === null || typeof desired !== 'object') return desired === live ? undefined : path || '.';
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) return path || '.';
    for (let i = 0; i < desired.length; i++) {
      const found = firstDifference(desired[i], live[i], `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  if (live === null || typeof live !== 'object' || Array.isArray(live)) return path || '.';
  for (const [key, value] of Object.entries(desired)) {
    const found = firstDifference(value, (live as Record<string, unknown>)[key], path ? `${path}.${key}` : key);
    if (found) return found;
  }
  return undefined;
}
