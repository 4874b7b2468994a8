import { createHash } from 'node:crypto';

/** Longest cleaned name or key kept in a variable name; the hash tells longer ones apart. */
const READABLE_PART_MAX = 48;

/** Upper case, non-alphanumerics as `_`: readable, but many names map to one, so never used alone. */
function readablePart(text: string): string {
  return text
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, '_')
    .slice(0, READABLE_PART_MAX);
}

/**
 * 8 hex digits of the exact name and key. JSON of the pair keeps the boundary between them, so
 * ("a", "b\0c") and ("a\0b", "c") hash differently.
 */
function refHash(ref: { name: string; key: string }): string {
  return createHash('sha256')
    .update(JSON.stringify([ref.name, ref.key]))
    .digest('hex')
    .slice(0, 8)
    .toUpperCase();
}

/**
 * How a Secret key reaches the dispatcher: the operator maps each referenced Secret key into an
 * environment variable of the dispatcher container (never a ConfigMap), named by this function; the
 * dispatcher reads the same name. Locally, users set the variable themselves (the dispatcher's error for
 * a missing one names it).
 *
 * The readable part alone would make `hook-a` and `hook.a`, or keys `a-b` and `a_b`, share one
 * variable, and one trigger would sign with another's secret; the hash of the exact ref keeps
 * distinct refs apart. Always `[A-Z_][A-Z0-9_]*`, at most 16 + 48 + 2 + 48 + 9 = 123 characters.
 */
export function secretEnvName(ref: { name: string; key: string }): string {
  return `EVENTIDE_SECRET_${readablePart(ref.name)}__${readablePart(ref.key)}_${refHash(ref)}`;
}

/** The environment variable that carries the source database URL into the dispatcher. */
export const DATABASE_URL_ENV = 'EVENTIDE_DATABASE_URL';
