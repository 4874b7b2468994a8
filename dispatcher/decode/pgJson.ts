import { type NestedText, parseArrayText, parseHstoreText, parseRecordText } from './pgText.js';
import type { TypeInfo } from './typeCatalog.js';

/** One column value in both forms eventide needs. */
export interface ConvertedValue {
  /** Exactly the JSON that to_jsonb gives for the value (numbers keep every digit). */
  json: string;
  /**
   * A plain JS value for filters: integers as bigint (CEL ints, so `new.qty % 2 == 0` works),
   * real/double/numeric as number (numeric may round), json parsed, everything else as in `json`.
   */
  value: unknown;
}

const NUMERIC = new Set([20, 21, 23, 700, 701, 1700]);
const JSON_NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

const nullValue: ConvertedValue = { json: 'null', value: null };

function str(text: string): ConvertedValue {
  return { json: JSON.stringify(text), value: text };
}

/**
 * "2024-01-02 03:04:05.5+00" (DateStyle ISO) → "2024-01-02T03:04:05.5+00:00" (to_jsonb's XSD form); BC
 * keeps its " BC". By hand, not by regular expressions: this runs for every timestamp of every row.
 */
export function isoTimestamp(text: string, withZone: boolean): string {
  if (text === 'infinity' || text === '-infinity') return text;
  const space = text.indexOf(' ');
  const iso = space === -1 ? text : `${text.slice(0, space)}T${text.slice(space + 1)}`;
  if (!withZone) return iso;
  // The zone offset ends the text, or comes just before the era of a BC value ("...+00 BC"); only a
  // whole-hour offset (±HH) lacks its minutes.
  const end = iso.endsWith(' BC') ? iso.length - 3 : iso.length;
  const sign = iso.charCodeAt(end - 3);
  if ((sign !== 0x2b && sign !== 0x2d) || !isDigit(iso.charCodeAt(end - 2)) || !isDigit(iso.charCodeAt(end - 1))) return iso;
  return `${iso.slice(0, end)}:00${iso.slice(end)}`;
}

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

/** A base (built-in or extension scalar) type's value as to_jsonb's JSON. */
function baseJson(text: string, oid: number): string {
  // NaN and ±Infinity are not JSON numbers; to_jsonb turns them into strings.
  if (NUMERIC.has(oid)) return JSON_NUMBER.test(text) ? text : JSON.stringify(text);
  switch (oid) {
    case 16:
      return text === 't' ? 'true' : 'false';
    case 114:
    case 3802:
      return text;
    case 1114:
    case 1184:
      // Digits, dashes, colons, a dot, a T, a sign and " BC": nothing JSON would escape.
      return `"${isoTimestamp(text, oid === 1184)}"`;
    default:
      return JSON.stringify(text);
  }
}

/** A base type's value as filters see it. */
function baseValue(text: string, oid: number): unknown {
  if (NUMERIC.has(oid)) {
    if (!JSON_NUMBER.test(text)) return text;
    // A JS number would be a CEL double, for which integer arithmetic (`+ 1`, `% 2`) has no overload.
    return oid === 20 || oid === 21 || oid === 23 ? BigInt(text) : Number(text);
  }
  switch (oid) {
    case 16:
      return text === 't';
    case 114:
    case 3802:
      return JSON.parse(text) as unknown;
    case 1114:
    case 1184:
      return isoTimestamp(text, oid === 1184);
    default:
      return text;
  }
}

/** What converting needs of the catalog: the types it has resolved. */
export interface ResolvedTypes {
  known(oid: number): TypeInfo | undefined;
}

/**
 * A composite value whose field count differs from the catalog's attributes: the type was altered
 * (ALTER TYPE ... ADD/DROP ATTRIBUTE) since it was looked up, and Postgres announces no relation for that.
 */
export class TypeShapeError extends Error {
  constructor(
    readonly oid: number,
    readonly fields: number,
    readonly attributes: number,
  ) {
    super(`composite type ${oid} has ${attributes} attributes in the catalog but a value with ${fields} fields`);
  }
}

/**
 * Converts a column's text (as pgoutput sends it) to to_jsonb's JSON. The type and the types it is
 * built from must have been resolved in the catalog first, so this runs without I/O.
 * `padComposites`: a composite value with fewer fields than the (freshly read) catalog has attributes
 * predates an ADD ATTRIBUTE; the missing ones are null, as Postgres reads such stored values.
 */
export function convertText(text: string | null, oid: number, catalog: ResolvedTypes, padComposites = false): ConvertedValue {
  if (text === null) return nullValue;
  const info = catalog.known(oid);
  if (!info) throw new Error(`type ${oid} was not resolved before decoding`);
  switch (info.kind) {
    case 'domain':
      return convertText(text, info.base, catalog, padComposites);
    case 'enum':
      return str(text);
    case 'hstore': {
      const pairs = parseHstoreText(text);
      const value: Record<string, string | null> = {};
      for (const [k, v] of pairs) value[k] = v;
      return { json: `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v === null ? 'null' : JSON.stringify(v)}`).join(',')}}`, value };
    }
    case 'array': {
      const nested = parseArrayText(text, info.delimiter);
      const build = (node: NestedText): ConvertedValue => {
        if (!Array.isArray(node)) return convertText(node, info.element, catalog, padComposites);
        const items = node.map(build);
        return { json: `[${items.map((i) => i.json).join(',')}]`, value: items.map((i) => i.value) };
      };
      return build(nested);
    }
    case 'composite': {
      const count = info.attributes.length;
      const fields = count === 0 && text === '()' ? [] : parseRecordText(text);
      if (fields.length > count || (fields.length < count && !padComposites)) throw new TypeShapeError(oid, fields.length, count);
      const parts: string[] = [];
      const value: Record<string, unknown> = {};
      info.attributes.forEach((attribute, i) => {
        const converted = convertText(fields[i] ?? null, attribute.type, catalog, padComposites);
        parts.push(`${JSON.stringify(attribute.name)}:${converted.json}`);
        value[attribute.name] = converted.value;
      });
      return { json: `{${parts.join(',')}}`, value };
    }
    case 'base':
      break;
  }
  return { json: baseJson(text, oid), value: baseValue(text, oid) };
}

/**
 * The JSON alone (what delivery needs): a base type's without building the filter value (JSON.parse of
 * a jsonb column, a BigInt per integer), which only a trigger with a filter reads.
 */
export function convertJson(text: string | null, oid: number, catalog: ResolvedTypes, padComposites = false): string {
  if (text === null) return 'null';
  const info = catalog.known(oid);
  if (info?.kind === 'base') return baseJson(text, oid);
  return convertText(text, oid, catalog, padComposites).json;
}
