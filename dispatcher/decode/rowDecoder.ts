import { flat } from '../flatText.js';
import { type Lsn, parseLsn } from '../lsn.js';
import type { ChangeDecoder, DecodedRowChange } from '../pipeline/changeIntake.js';
import { convertJson, convertText, type ResolvedTypes, TypeShapeError } from './pgJson.js';
import { type PgoutputMessage, type RawTuple, type Relation, UNCHANGED_TOAST } from './textPgoutputPlugin.js';
import type { TypeCatalog } from './typeCatalog.js';

/** A decoded row: its JSON per to_jsonb, and what its filter values are made from when a filter asks. */
interface DecodedRow {
  json: string;
  /** Each column's JSON text by position; undefined for a column the row does not carry. */
  columns: (string | undefined)[];
  unchangedToast: readonly string[];
  /** The raw values, and the full old row standing in for unchanged TOASTed ones. */
  tuple: RawTuple;
  fallback: RawTuple | undefined;
}

/** A prepared relation: what decoding its rows needs, worked out once. */
interface PreparedRelation {
  relation: Relation;
  /** Primary-key columns' positions (the row identity for ordering and subjects). */
  keyPositions: number[];
  /** Column name → position, for columnChanged. */
  positions: Map<string, number>;
  /** Each column's JSON-quoted name followed by a colon. */
  jsonKeys: string[];
  /** Positions of the replica identity's key columns (those a key tuple carries). */
  replicaKey: Set<number>;
  /** The catalog's types as they were resolved for this relation (see TypeCatalog.resolved). */
  types: ResolvedTypes;
}

const NO_COLUMNS: readonly string[] = [];

/**
 * Turns pgoutput messages into row changes. Column types are resolved (from the catalog, once per
 * relation) before the first row of a relation is decoded; after that decoding is synchronous.
 */
export class RowDecoder implements ChangeDecoder<PgoutputMessage> {
  /** Relation OID → the relation message its column types were resolved for (a new message can bring new types), prepared. */
  private readonly prepared = new Map<number, PreparedRelation>();
  /** Set while a change is decoded again after a catalog refresh (see decode). */
  private padComposites = false;

  constructor(
    private readonly catalog: TypeCatalog,
    private readonly query: (sql: string, params: unknown[]) => Promise<{ rows: unknown[] }>,
  ) {}

  /** Relations are re-announced after a reconnect; the catalog may have changed meanwhile. */
  reset(): void {
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
    if (relation && this.prepared.get(relation.relationOid)?.relation !== relation) return this.decodeSlowly(message);
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
        const prepared = this.preparedOf(message.relation);
        return [this.change('insert', prepared, null, this.row(prepared, message.new))];
      }
      case 'update': {
        const prepared = this.preparedOf(message.relation);
        // Postgres sends no old key when the key did not change: then the old key is the new one.
        const keyed = message.relation.keyColumns.length > 0;
        const oldTuple = message.old ?? message.key ?? (keyed ? message.new : null);
        const old = oldTuple ? this.row(prepared, oldTuple, message.old === null) : null;
        const full = message.old !== null;
        const row = this.row(prepared, message.new, false, full ? message.old! : undefined);
        return [this.change('update', prepared, old, row, full)];
      }
      case 'delete': {
        const prepared = this.preparedOf(message.relation);
        const oldTuple = message.old ?? message.key;
        const old = oldTuple ? this.row(prepared, oldTuple, message.old === null) : null;
        return [this.change('delete', prepared, old, null)];
      }
      case 'truncate':
        // A truncated table may have had no row change yet: its relation is described, not prepared.
        return message.relations.map((relation) => new RowChange('truncate', relation.schema, relation.name, null, null, '', undefined, false));
      default:
        return [];
    }
  }

  private preparedOf(relation: Relation): PreparedRelation {
    return this.prepared.get(relation.relationOid)!;
  }

  private async prepare(relation: Relation): Promise<void> {
    if (this.prepared.get(relation.relationOid)?.relation === relation) return;
    for (const column of relation.columns) await this.catalog.resolve(column.typeOid);
    // With REPLICA IDENTITY FULL every column is flagged as key, so the primary key comes from the catalog.
    const { rows } = await this.query(
      `SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`,
      [relation.relationOid],
    );
    const primaryKey = (rows as { name: string }[]).map((r) => r.name);
    const keyColumns = primaryKey.length ? primaryKey : relation.replicaIdentity === 'full' ? [] : relation.keyColumns;
    const positions = new Map(relation.columns.map((column, i) => [column.name, i]));
    this.prepared.set(relation.relationOid, {
      relation,
      keyPositions: keyColumns.map((name) => positions.get(name)!),
      positions,
      jsonKeys: relation.columns.map((column) => `${JSON.stringify(column.name)}:`),
      replicaKey: new Set(relation.keyColumns.map((name) => positions.get(name)!)),
      types: this.catalog.resolved(),
    });
  }

  /**
   * Decodes a tuple to JSON. `keyOnly`: a key tuple carries NULL placeholders for non-key columns, which
   * are left out. `fullOld`: the old row, whose values stand in for unchanged TOASTed ones.
   */
  private row(prepared: PreparedRelation, tuple: RawTuple, keyOnly = false, fullOld?: RawTuple): DecodedRow {
    const { relation, jsonKeys, replicaKey, types } = prepared;
    const count = relation.columns.length;
    const columns: (string | undefined)[] = new Array(count);
    let unchangedToast: string[] | undefined;
    let json = '{';
    for (let i = 0; i < count; i++) {
      let raw = tuple[i];
      // A key tuple's other columns are NULL placeholders (and a key column is never NULL).
      if (keyOnly && (raw === null || !replicaKey.has(i))) continue;
      if (raw === UNCHANGED_TOAST) {
        const fallback = fullOld?.[i];
        if (fallback === undefined || fallback === UNCHANGED_TOAST) {
          (unchangedToast ??= []).push(relation.columns[i]!.name);
          continue;
        }
        raw = fallback;
      }
      if (raw === undefined) continue;
      const converted = convertJson(raw, relation.columns[i]!.typeOid, types, this.padComposites);
      json += json.length === 1 ? jsonKeys[i] + converted : `,${jsonKeys[i]}${converted}`;
      columns[i] = converted;
    }
    return { json: flat(`${json}}`), columns, unchangedToast: unchangedToast ?? NO_COLUMNS, tuple, fallback: fullOld };
  }

  private change(op: 'insert' | 'update' | 'delete', prepared: PreparedRelation, old: DecodedRow | null, row: DecodedRow | null, oldIsFull = false): DecodedRowChange {
    const { relation, keyPositions } = prepared;
    const keySource = row ?? old;
    const rowKey = keySource ? keyOf(keySource, keyPositions) : '';
    // An update that moved the row to another key: the old key, when the old tuple carries it.
    let previousRowKey: string | undefined;
    if (old && row && keyPositions.every((i) => old.columns[i] !== undefined && old.columns[i] !== 'null')) {
      const oldKey = keyOf(old, keyPositions);
      if (oldKey !== rowKey) previousRowKey = oldKey;
    }
    return new RowChange(op, relation.schema, relation.name, old, row, rowKey, previousRowKey, oldIsFull, { prepared, padComposites: this.padComposites });
  }
}

/**
 * A decoded change. Its rows as filter values (`old`, `new`) are converted on first read: most
 * triggers have no filter, and converting (JSON.parse of a jsonb column, a BigInt per integer) cost
 * more than the JSON they are sent as.
 */
class RowChange implements DecodedRowChange {
  readonly oldJson: string | null;
  readonly newJson: string | null;
  readonly unchangedToastColumns: readonly string[];
  private oldValues: Record<string, unknown> | null | undefined;
  private newValues: Record<string, unknown> | null | undefined;

  constructor(
    readonly op: DecodedRowChange['op'],
    readonly schema: string,
    readonly table: string,
    private readonly oldRow: DecodedRow | null,
    private readonly newRow: DecodedRow | null,
    readonly rowKey: string,
    readonly previousRowKey: string | undefined,
    private readonly oldIsFull: boolean,
    /** What converting its rows to filter values needs (a truncate has no rows). */
    private readonly source?: { prepared: PreparedRelation; padComposites: boolean },
  ) {
    this.oldJson = oldRow?.json ?? null;
    this.newJson = newRow?.json ?? null;
    this.unchangedToastColumns = newRow?.unchangedToast ?? NO_COLUMNS;
  }

  get old(): Record<string, unknown> | null {
    if (this.oldValues === undefined) this.oldValues = this.oldRow ? this.valuesOf(this.oldRow) : null;
    return this.oldValues;
  }

  get new(): Record<string, unknown> | null {
    if (this.newValues === undefined) this.newValues = this.newRow ? this.valuesOf(this.newRow) : null;
    return this.newValues;
  }

  columnChanged(column: string): boolean | undefined {
    const { oldRow, newRow } = this;
    if (!this.oldIsFull || !oldRow || !newRow) return undefined;
    if (newRow.unchangedToast.includes(column)) return false;
    const i = this.source?.prepared.positions.get(column);
    return i === undefined ? false : oldRow.columns[i] !== newRow.columns[i];
  }

  /** The columns the row carries, as filter values (the same columns, and fallbacks, as its JSON). */
  private valuesOf(row: DecodedRow): Record<string, unknown> {
    const { prepared, padComposites } = this.source!;
    const columns = prepared.relation.columns;
    const values: Record<string, unknown> = {};
    for (let i = 0; i < columns.length; i++) {
      if (row.columns[i] === undefined) continue;
      const raw = row.tuple[i] === UNCHANGED_TOAST ? row.fallback![i]! : row.tuple[i]!;
      values[columns[i]!.name] = convertText(raw as string | null, columns[i]!.typeOid, prepared.types, padComposites).value;
    }
    return values;
  }
}

/** The row's key: its key columns' text, as subjects carry it. */
function keyOf(row: DecodedRow, keyPositions: readonly number[]): string {
  if (keyPositions.length === 1) return unquote(row.columns[keyPositions[0]!]);
  return keyPositions.map((i) => unquote(row.columns[i])).join(',');
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
