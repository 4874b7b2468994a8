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

/** The library's BinaryReader state: its buffer and read position. */
interface ReaderState {
  /** Node's Buffer, with its (undocumented, long-standing) utf8Slice: toString('utf8', ...) checks its arguments first. */
  _b: Buffer & { utf8Slice(start: number, end: number): string };
  _p: number;
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
      // Straight from the reader's buffer: a subarray and a TextDecoder call per value cost more than
      // the rest of reading the tuple (the reader's fields are the library's own; its tests pin them).
      const state = reader as unknown as ReaderState;
      const buffer = state._b;
      let at = state._p;
      if (at + 2 > buffer.length) throw new Error('unexpected end of message');
      const count = (buffer[at]! << 8) | buffer[at + 1]!;
      at += 2;
      const tuple: RawTuple = new Array(count);
      for (let i = 0; i < count; i++) {
        if (at >= buffer.length) throw new Error('unexpected end of message');
        const kind = buffer[at++]!;
        if (kind === 0x74 /* t */) {
          if (at + 4 > buffer.length) throw new Error('unexpected end of message');
          const length = buffer.readInt32BE(at);
          at += 4;
          if (at + length > buffer.length) throw new Error('unexpected end of message');
          tuple[i] = buffer.utf8Slice(at, at + length);
          at += length;
        } else if (kind === 0x6e /* n */) tuple[i] = null;
        else if (kind === 0x75 /* u */) tuple[i] = UNCHANGED_TOAST;
        else throw new Error(`unexpected pgoutput column kind ${String.fromCharCode(kind)} (binary mode is not requested)`);
      }
      state._p = at;
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
