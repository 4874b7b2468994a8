/**
 * Parsers for PostgreSQL's text output of arrays and composite values (what pgoutput sends in text
 * mode). Pure; they return the raw element texts, null for SQL NULL.
 */

/** Parses an array literal like `{1,NULL,"a \"b\""}` or `{{1,2},{3,4}}` into nested element texts. */
export function parseArrayText(text: string, delimiter = ','): NestedText {
  // Arrays with non-default lower bounds print a dimension prefix: "[0:1]={1,2}".
  const start = text.startsWith('[') ? text.indexOf('=') + 1 : 0;
  let pos = start;
  function parseLevel(): NestedText[] {
    if (text[pos] !== '{') throw new Error(`malformed array literal at ${pos}: ${text}`);
    pos++;
    const items: NestedText[] = [];
    if (text[pos] === '}') {
      pos++;
      return items;
    }
    for (;;) {
      if (text[pos] === '{') items.push(parseLevel());
      else if (text[pos] === '"') items.push(parseQuoted());
      else items.push(parseBare());
      const c = text[pos++];
      if (c === '}') return items;
      if (c !== delimiter) throw new Error(`malformed array literal at ${pos - 1}: ${text}`);
    }
  }
  function parseQuoted(): string {
    pos++;
    let out = '';
    for (;;) {
      const c = text[pos++];
      if (c === undefined) throw new Error(`unterminated quote in array literal: ${text}`);
      if (c === '\\') out += text[pos++];
      else if (c === '"') return out;
      else out += c;
    }
  }
  function parseBare(): string | null {
    let end = pos;
    while (text[end] !== delimiter && text[end] !== '}') end++;
    const raw = text.slice(pos, end).trim();
    pos = end;
    return raw === 'NULL' ? null : raw;
  }
  return parseLevel();
}

export type NestedText = string | null | NestedText[];

/** Parses a composite (row) literal like `(1,"a b",)` into field texts; an empty field is NULL. */
export function parseRecordText(text: string): (string | null)[] {
  if (text[0] !== '(' || text[text.length - 1] !== ')') throw new Error(`malformed record literal: ${text}`);
  const fields: (string | null)[] = [];
  let pos = 1;
  const end = text.length - 1;
  for (;;) {
    let value = '';
    let quoted = false;
    while (pos < end && text[pos] !== ',') {
      const c = text[pos]!;
      if (c === '"') {
        quoted = true;
        pos++;
        for (;;) {
          const q = text[pos++];
          if (q === undefined) throw new Error(`unterminated quote in record literal: ${text}`);
          if (q === '\\') value += text[pos++];
          else if (q === '"') {
            if (text[pos] === '"') {
              value += '"';
              pos++;
            } else break;
          } else value += q;
        }
      } else {
        value += c;
        pos++;
      }
    }
    fields.push(value === '' && !quoted ? null : value);
    if (pos >= end) return fields;
    pos++; // the comma
  }
}

/** Parses hstore's text output (`"a"=>"1", "b"=>NULL`; "" when empty) into key/value pairs, null for NULL. */
export function parseHstoreText(text: string): [string, string | null][] {
  const pairs: [string, string | null][] = [];
  let pos = 0;
  const skipSpace = () => {
    while (text[pos] === ' ') pos++;
  };
  const quoted = (): string => {
    if (text[pos] !== '"') throw new Error(`malformed hstore at ${pos}: ${text}`);
    pos++;
    let out = '';
    for (;;) {
      const c = text[pos++];
      if (c === undefined) throw new Error(`unterminated quote in hstore: ${text}`);
      if (c === '\\') out += text[pos++];
      else if (c === '"') return out;
      else out += c;
    }
  };
  skipSpace();
  while (pos < text.length) {
    const key = quoted();
    skipSpace();
    if (!text.startsWith('=>', pos)) throw new Error(`malformed hstore at ${pos}: ${text}`);
    pos += 2;
    skipSpace();
    let value: string | null;
    if (text.startsWith('NULL', pos)) {
      value = null;
      pos += 4;
    } else value = quoted();
    pairs.push([key, value]);
    skipSpace();
    if (pos < text.length) {
      if (text[pos] !== ',') throw new Error(`malformed hstore at ${pos}: ${text}`);
      pos++;
      skipSpace();
    }
  }
  return pairs;
}
