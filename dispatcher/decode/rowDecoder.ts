import { type Lsn, parseLsn } from '../lsn.js';
import type { ChangeDecoder, DecodedRowChange } from '../pipeline/changeIntake.js';
import { convertText, TypeShapeError } from './pgJson.js';
import { type PgoutputMessage, type RawTuple, type Relation, UNCHANGED_TOAST } from './textPgoutputPlugin.js';
import type { TypeCatalog } from './typeCatalog.js';

/** A row in both forms: JSON text per to_jsonb and JS values for filters. */
interface DecodedRow {
  json: string;
  values: Record<string, unknown>;
  /** Column → its JSON text, to compare old and new exactly. */
  columns: Map<string, string>;
  unchangedToast: string[];
}

/**
 * Turns pgoutput messages into row changes. Column types are resolved (from the catalog, once per
 * relation) before the first row of a relation is decoded; after that decoding is synchronous.
 */
export class RowDecoder implements ChangeDecoder<PgoutputMessage> {
  /** Relation OID → primary-key columns (the row identity for ordering and subjects). */
  private readonly primaryKeys = new Map<number, string[]>();
  /** Relation OID → the relation message its column types were resolved for (a new message can bring new types). */
  private readonly prepared = new Map<number, Relation>();
  /** Set while a change is decoded again after a catalog refresh (see decode). */
  private padComposites = false;
  /** Column name → its JSON-quoted form followed by a colon, built once rather than per row. */
  private readonly jsonKeys = new Map<string, string>();

  constructor(
    private readonly catalog: TypeCatalog,
    private readonly query: (sql: string, params: unknown[]) => Promise<{ rows: unknown[] }>,
  ) {}

  /** Relations are re-announced after a reconnect; the catalog may have changed meanwhile. */
  reset(): void {
    this.primaryKeys.clear();
    this.prepared.clear();
    this.catalog.clear();
  }

  begin(message: PgoutputMessage): { commitLsn: Lsn; xid: number; commitTime: Date } | undefined {
    if (message.tag !== 'begin') return undefined;
    return { commitLsn: parseLsn(message.commitLsn), xid: message.xid, commitTime: new Date(Number(message.commitTime / 1000n)) };
  }

  commit(message: PgoutputMessage): { commitLsn: Lsn; endLsn: Lsn } | undefined {
    if (message.tag !== 'commit') return undefined;
    return { commitLsn: parseLsn(message.commitLsn), endLsn: parseLsn(message.commitEndLsn) };
  }

  logicalMessage(message: PgoutputMessage): { prefix: string; content: Uint8Array } | undefined {
    return message.tag === 'message' ? message : undefined;
  }

  /**
   * Decodes a row message. Synchronous once its relation is prepared (every change but a table's
   * first): a promise per change, and the microtask hop awaiting it, cost more than decoding a small row.
   */
  decode(message: PgoutputMessage): DecodedRowChange[] | Promise<DecodedRowChange[]> {
    const relation = rowRelation(message);
    if (relation && this.prepared.get(relation.relationOid) !== relation) return this.decodeSlowly(message);
    try {
      return this.decodePrepared(message);
    } catch (error) {
      if (!(error instanceof TypeShapeError)) throw error;
      return this.decodeAfterShapeChange(message);
    }
  }

  /** A table's first change: prepare its relation, then decode as every later change is. */
  private async decodeSlowly(message: PgoutputMessage): Promise<DecodedRowChange[]> {
    await this.prepareFor(message);
    return this.decode(message);
  }

  /**
   * A composite type was altered after it was cached: read the catalog afresh and decode again.
   * Fewer fields than attributes then means the value predates an added attribute (null, as Postgres reads it);
   * more fields means it predates a dropped one, whose name is gone: that fails rather than shift values onto wrong names.
   */
  private async decodeAfterShapeChange(message: PgoutputMessage): Promise<DecodedRowChange[]> {
    this.reset();
    this.padComposites = true;
    try {
      await this.prepareFor(message);
      return this.decodePrepared(message);
    } finally {
      this.padComposites = false;
    }
  }

  private async prepareFor(message: PgoutputMessage): Promise<void> {
    const relation = rowRelation(message);
    if (relation) await this.prepare(relation);
  }

  /** Decodes a message whose relation is prepared (its types resolved, its primary key known). */
  private decodePrepared(message: PgoutputMessage): DecodedRowChange[] {
    switch (message.tag) {
      case 'insert': {
        const row = this.row(message.relation, message.new);
        return [this.change('insert', message.relation, null, row)];
      }
      case 'update': {
        // Postgres sends no old key when the key did not change: then the old key is the new one.
        const keyed = message.relation.keyColumns.length > 0;
        const oldTuple = message.old ?? message.key ?? (keyed ? message.new : null);
        const old = oldTuple ? this.row(message.relation, oldTuple, message.old === null) : null;
        const full = message.old !== null;
        const row = this.row(message.relation, message.new, false, full ? message.old! : undefined);
        return [this.change('update', message.relation, old, row, full)];
      }
      case 'delete': {
        const oldTuple = message.old ?? message.key;
        const old = oldTuple ? this.row(message.relation, oldTuple, message.old === null) : null;
        return [this.change('delete', message.relation, old, null)];
      }
      case 'truncate':
        return message.relations.map((relation) => this.change('truncate', relation, null, null));
      default:
        return [];
    }
  }

  private async prepare(relation: Relation): Promise<void> {
    if (this.prepared.get(relation.relationOid) === relation) return;
    for (const column of relation.columns) await this.catalog.resolve(column.typeOid);
    // With REPLICA IDENTITY FULL every column is flagged as key, so the primary key comes from the catalog.
    const { rows } = await this.query(
      `SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`,
      [relation.relationOid],
    );
    const primaryKey = (rows as { name: string }[]).map((r) => r.name);
    this.primaryKeys.set(relation.relationOid, primaryKey.length ? primaryKey : relation.replicaIdentity === 'full' ? [] : relation.keyColumns);
    this.prepared.set(relation.relationOid, relation);
  }

  /**
   * Decodes a tuple. `keyOnly`: a key tuple carries NULL placeholders for non-key columns, which are
   * left out. `fullOld`: the old row, whose values stand in for unchanged TOASTed ones.
   */
  private row(relation: Relation, tuple: RawTuple, keyOnly = false, fullOld?: RawTuple): DecodedRow {
    const parts: string[] = [];
    const values: Record<string, unknown> = {};
    const columns = new Map<string, string>();
    const unchangedToast: string[] = [];
    const count = relation.columns.length;
    for (let i = 0; i < count; i++) {
      const column = relation.columns[i]!;
      let raw = tuple[i];
      // A key tuple's other columns are NULL placeholders (and a key column is never NULL).
      if (keyOnly && (raw === null || !relation.keyColumns.includes(column.name))) continue;
      if (raw === UNCHANGED_TOAST) {
        const fallback = fullOld?.[i];
        if (fallback === undefined || fallback === UNCHANGED_TOAST) {
          unchangedToast.push(column.name);
          continue;
        }
        raw = fallback;
      }
      if (raw === undefined) continue;
      const converted = convertText(raw, column.typeOid, this.catalog, this.padComposites);
      let key = this.jsonKeys.get(column.name);
      if (key === undefined) {
        key = `${JSON.stringify(column.name)}:`;
        if (this.jsonKeys.size < 10_000) this.jsonKeys.set(column.name, key);
      }
      parts.push(key + converted.json);
      values[column.name] = converted.value;
      columns.set(column.name, converted.json);
    }
    return { json: `{${parts.join(',')}}`, values, columns, unchangedToast };
  }

  private change(op: DecodedRowChange['op'], relation: Relation, old: DecodedRow | null, row: DecodedRow | null, oldIsFull = false): DecodedRowChange {
    const keySource = row ?? old;
    const keyColumns = this.primaryKeys.get(relation.relationOid) ?? relation.keyColumns;
    const rowKey = keySource ? keyColumns.map((k) => unquote(keySource.columns.get(k))).join(',') : '';
    // An update that moved the row to another key: the old key, when the old tuple carries it.
    let previousRowKey: string | undefined;
    if (old && row && keyColumns.every((k) => old.columns.has(k) && old.columns.get(k) !== 'null')) {
      const oldKey = keyColumns.map((k) => unquote(old.columns.get(k))).join(',');
      if (oldKey !== rowKey) previousRowKey = oldKey;
    }
    return {
      op,
      schema: relation.schema,
      table: relation.name,
      oldJson: old?.json ?? null,
      newJson: row?.json ?? null,
      old: old?.values ?? null,
      new: row?.values ?? null,
      rowKey,
      previousRowKey,
      unchangedToastColumns: row?.unchangedToast ?? [],
      columnChanged(column) {
        if (!oldIsFull || !old || !row) return undefined;
        if (row.unchangedToast.includes(column)) return false;
        return old.columns.get(column) !== row.columns.get(column);
      },
    };
  }
}

/** The relation of a row change (insert, update, delete), which must be prepared before its rows are decoded. */
function rowRelation(message: PgoutputMessage): Relation | undefined {
  return message.tag === 'insert' || message.tag === 'update' || message.tag === 'delete' ? message.relation : undefined;
}

/** A key column's JSON text as it appears in subjects: strings as their text (no quotes, no JSON escapes). */
function unquote(json: string | undefined): string {
  if (json === undefined) return '';
  if (!json.startsWith('"')) return json;
  return json.includes('\\') ? (JSON.parse(json) as string) : json.slice(1, -1);
}
