import { PgoutputPlugin } from 'pg-logical-replication';
import type { AbstractPlugin } from 'pg-logical-replication/dist/output-plugins/abstract.plugin.js';
import { PgoutputParser } from 'pg-logical-replication/dist/output-plugins/pgoutput/pgoutput-parser.js';

/** Marks a value Postgres did not send: a TOASTed column an update left unchanged. */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');

/** A column value exactly as pgoutput sent it in text mode. */
export type RawValue = string | null | typeof UNCHANGED_TOAST;

/**
 * A row's values in the relation's column order (undefined past the columns sent). An array, not an
 * object keyed by column name: one per change, and a dictionary-mode object per row cost more
 * allocation than the rest of decoding it.
 */
export type RawTuple = RawValue[];

export interface RelationColumn {
  name: string;
  flags: number;
  typeOid: number;
  typeMod: number;
}

export interface Relation {
  tag: 'relation';
  relationOid: number;
  schema: string;
  name: string;
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  columns: RelationColumn[];
  keyColumns: string[];
}

/** The pgoutput messages, with row values kept as text. */
export type PgoutputMessage =
  | { tag: 'begin'; commitLsn: string; commitTime: bigint; xid: number }
  | { tag: 'commit'; flags: number; commitLsn: string; commitEndLsn: string; commitTime: bigint }
  | Relation
  | { tag: 'insert'; relation: Relation; new: RawTuple }
  | { tag: 'update'; relation: Relation; key: RawTuple | null; old: RawTuple | null; new: RawTuple }
  | { tag: 'delete'; relation: Relation; key: RawTuple | null; old: RawTuple | null }
  | { tag: 'truncate'; cascade: boolean; restartIdentity: boolean; relations: Relation[] }
  | { tag: 'type'; typeOid: number; typeSchema: string; typeName: string }
  | { tag: 'origin'; originLsn: string; originName: string }
  | { tag: 'message'; prefix: string; content: Uint8Array };

interface ParserInternals {
  readTuple(reader: TupleReader, relation: { columns: RelationColumn[] }, fallback?: RawTuple): RawTuple;
  readKeyTuple(reader: TupleReader, relation: { columns: RelationColumn[] }): RawTuple;
  readRelationColumn(reader: TupleReader): RelationColumn;
}

interface TupleReader {
  readInt16(): number;
  readInt32(): number;
  readUint8(): number;
  readString(): string;
  read(n: number): Uint8Array;
  decodeText(buf: Uint8Array): string;
}

/**
 * The library's parser runs pg's global type parsers over every value, which loses numeric and
 * bigint digits and reshapes timestamps. This parser keeps the text Postgres sent, so each value can
 * be turned into exactly the JSON to_jsonb gives.
 */
class TextPgoutputParser extends PgoutputParser {
  constructor() {
    super();
    const self = this as unknown as ParserInternals;
    self.readRelationColumn = (reader) => ({
      flags: reader.readUint8(),
      name: reader.readString(),
      typeOid: reader.readInt32(),
      typeMod: reader.readInt32(),
    });
    self.readTuple = (reader) => {
      const count = reader.readInt16();
      const tuple: RawTuple = [];
      for (let i = 0; i < count; i++) {
        const kind = reader.readUint8();
        if (kind === 0x74 /* t */) tuple.push(reader.decodeText(reader.read(reader.readInt32())));
        else if (kind === 0x6e /* n */) tuple.push(null);
        else if (kind === 0x75 /* u */) tuple.push(UNCHANGED_TOAST);
        else throw new Error(`unexpected pgoutput column kind ${String.fromCharCode(kind)} (binary mode is not requested)`);
      }
      return tuple;
    };
    // A key tuple is a whole tuple with NULL placeholders for the columns outside the key: the decoder reads only the key's.
    self.readKeyTuple = (reader, relation) => self.readTuple(reader, relation);
  }
}

/** A pgoutput plugin (protocol 1) whose messages keep row values as text. */
export type TextPgoutputPlugin = AbstractPlugin & { parse(buffer: Buffer): PgoutputMessage };

/**
 * Creates the plugin for one replication connection. Logical messages are asked for: a backfill writes
 * its chunks' watermarks into the WAL as messages and reads them back here, in stream order.
 */
export function createTextPgoutputPlugin(publicationNames: string[]): TextPgoutputPlugin {
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames, messages: true });
  (plugin as unknown as { parser: PgoutputParser }).parser = new TextPgoutputParser();
  return plugin as unknown as TextPgoutputPlugin;
}
