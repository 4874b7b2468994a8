import type pg from 'pg';
import type { ResolvedTypes } from './pgJson.js';

/** What decoding needs to know about a type. */
export type TypeInfo =
  | { kind: 'base'; oid: number }
  | { kind: 'array'; oid: number; element: number; delimiter: string }
  | { kind: 'domain'; oid: number; base: number }
  | { kind: 'enum'; oid: number }
  /** hstore, whose cast to json (which to_jsonb uses) makes an object of strings. */
  | { kind: 'hstore'; oid: number }
  | { kind: 'composite'; oid: number; attributes: { name: string; type: number }[] };

/** Array types of the built-in element types, so common arrays need no catalog query. */
const BUILTIN_ARRAYS: Record<number, number> = {
  1000: 16,
  1001: 17,
  1002: 18,
  1003: 19,
  1016: 20,
  1005: 21,
  1007: 23,
  1009: 25,
  1028: 26,
  199: 114,
  143: 142,
  1021: 700,
  1022: 701,
  791: 790,
  1014: 1042,
  1015: 1043,
  1182: 1082,
  1183: 1083,
  1115: 1114,
  1185: 1184,
  1187: 1186,
  1270: 1266,
  1561: 1560,
  1563: 1562,
  1231: 1700,
  2951: 2950,
  3807: 3802,
  1041: 869,
  651: 650,
  1040: 829,
};

/** Built-in scalar types (OID < 10000 and not an array above) are answered without a query. */
const BUILTIN_SCALARS = new Set([
  16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 650, 700, 701, 790, 829, 869, 1042, 1043, 1082, 1083, 1114, 1184, 1186, 1266, 1560, 1562, 1700, 2950, 3802, 3614, 3615, 3220, 600, 601, 602, 603, 604,
  628, 718, 774, 1033, 2249, 2278, 3904, 3906, 3908, 3910, 3912, 3926,
]);

/** The built-in types' infos, made once. */
const BUILTIN_TYPES = new Map<number, TypeInfo>([
  ...[...BUILTIN_SCALARS].map((oid): [number, TypeInfo] => [oid, { kind: 'base', oid }]),
  ...Object.entries(BUILTIN_ARRAYS).map(([key, element]): [number, TypeInfo] => {
    const oid = Number(key);
    return [oid, { kind: 'array', oid, element, delimiter: oid === 1020 ? ';' : ',' }];
  }),
]);

/**
 * Resolves type OIDs to what decoding needs, querying pg_type (and pg_attribute for composites)
 * once per unknown OID. Types can be altered (a new enum label is fine; a composite can gain an
 * attribute), so the cache is dropped when the stream reconnects.
 */
export class TypeCatalog {
  private cache = new Map<number, TypeInfo>();
  private view = typesOf(this.cache);

  constructor(private readonly query: (sql: string, params: unknown[]) => Promise<pg.QueryResult>) {}

  /** Answers from the built-in table or the cache, without I/O (this runs for every column of every row). */
  known(oid: number): TypeInfo | undefined {
    return this.view.known(oid);
  }

  /**
   * The types resolved so far, as they stay after a clear(): a decoded row converts its values for a
   * filter only when one reads them, which may be after the catalog moved on.
   */
  resolved(): ResolvedTypes {
    return this.view;
  }

  /** Resolves a type, and every type it is built from, so that decoding can then run synchronously. */
  async resolve(oid: number): Promise<TypeInfo> {
    const known = this.known(oid);
    const info = known ?? (await this.lookup(oid));
    if (!known) this.cache.set(oid, info);
    if (info.kind === 'array') await this.resolve(info.element);
    if (info.kind === 'domain') await this.resolve(info.base);
    if (info.kind === 'composite') for (const a of info.attributes) await this.resolve(a.type);
    return info;
  }

  /** Forgets looked-up types (after a reconnect: the schema may have changed meanwhile). */
  clear(): void {
    this.cache = new Map();
    this.view = typesOf(this.cache);
  }

  private async lookup(oid: number): Promise<TypeInfo> {
    const { rows } = await this.query('SELECT typtype, typelem::int AS elem, typbasetype::int AS base, typrelid::int AS rel, typdelim, typcategory FROM pg_type WHERE oid = $1', [oid]);
    const row = rows[0] as { typtype: string; elem: number; base: number; rel: number; typdelim: string; typcategory: string } | undefined;
    if (!row) return { kind: 'base', oid };
    if (row.typtype === 'd') return { kind: 'domain', oid, base: row.base };
    if (row.typtype === 'e') return { kind: 'enum', oid };
    if (row.typcategory === 'A' && row.elem !== 0) return { kind: 'array', oid, element: row.elem, delimiter: row.typdelim };
    if (row.typtype === 'c') {
      const attrs = await this.query('SELECT attname AS name, atttypid::int AS type FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum', [row.rel]);
      return { kind: 'composite', oid, attributes: attrs.rows as { name: string; type: number }[] };
    }
    if (row.typtype === 'b' && oid >= 16384) {
      // to_jsonb converts a non-built-in type through its cast to json when it has one; of the
      // extensions PostgreSQL ships, only hstore's has (hstore_to_json, an object of strings).
      const cast = await this.query(
        `SELECT 1 FROM pg_cast c JOIN pg_proc p ON p.oid = c.castfunc
          WHERE c.castsource = $1 AND c.casttarget = 'json'::regtype AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') AND p.prosrc = 'hstore_to_json'`,
        [oid],
      );
      if (cast.rows.length > 0) return { kind: 'hstore', oid };
    }
    return { kind: 'base', oid };
  }
}

function typesOf(cache: ReadonlyMap<number, TypeInfo>): ResolvedTypes {
  return { known: (oid) => cache.get(oid) ?? BUILTIN_TYPES.get(oid) };
}
