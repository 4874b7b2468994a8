/**
 * Postgres is the oracle for payload values: every row the dispatcher delivers is sent back into
 * Postgres as jsonb (no JS number parsing on the way) and compared with to_jsonb(row) of the same
 * row, both by jsonb equality and by jsonb text (which keeps numeric scale, so 1.50 is not 1.5).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { type SourceDatabase, startDispatcher, startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { eventually, type ReceivedRequest, type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';

type Sql = (text: string, params?: unknown[]) => Promise<pg.QueryResult>;

const KITCHEN_SCHEMA = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀', 'with "quote", comma');
CREATE TYPE address AS (street text, zip integer, tags text[], at timestamptz, day date, doc jsonb, price numeric);
CREATE TYPE wrapper AS (inner_addr address, label text, moods mood[]);
CREATE TYPE nothing_inside AS ();
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE DOMAIN plain_ts AS timestamp;
CREATE DOMAIN int_list AS integer[];
CREATE TABLE kitchen (
  id integer PRIMARY KEY,
  c_int2 smallint, c_int4 integer, c_int8 bigint,
  c_numeric numeric, c_num_fixed numeric(30, 10),
  c_real real, c_double double precision,
  c_bool boolean,
  c_text text, c_varchar varchar(20), c_char char(8), c_name name, c_qchar "char",
  c_bytea bytea,
  c_date date, c_ts timestamp, c_tstz timestamptz, c_time time, c_timetz timetz, c_interval interval,
  c_uuid uuid,
  c_json json, c_jsonb jsonb,
  c_int_arr integer[], c_text_arr text[], c_int_2d integer[], c_numeric_arr numeric[], c_bool_arr boolean[],
  c_jsonb_arr jsonb[], c_json_arr json[], c_tstz_arr timestamptz[], c_ts_arr timestamp[], c_date_arr date[], c_float_arr double precision[],
  c_int8_arr bigint[],
  c_enum mood, c_enum_arr mood[],
  c_composite address, c_composite_arr address[], c_wrapper wrapper, c_empty_composite nothing_inside,
  c_domain positive_int, c_domain_ts plain_ts, c_domain_arr int_list, c_arr_of_domain positive_int[],
  c_inet inet, c_cidr cidr, c_macaddr macaddr,
  c_point point, c_box_arr box[],
  c_tsvector tsvector,
  c_int4range int4range, c_tstzrange tstzrange, c_nummultirange nummultirange,
  c_bit bit(4), c_varbit varbit,
  c_money money, c_xml xml, c_oid oid
);
ALTER TABLE kitchen REPLICA IDENTITY FULL;
`;

/** Rows covering each type's ordinary values, extremes, special values and NULLs. */
const KITCHEN_ROWS = [
  // 1: ordinary values, quoting and nesting
  `INSERT INTO kitchen VALUES (1,
    1, 42, 9007199254740993,
    12345678901234567890.123456789012345678901234567890, 1.5,
    0.1, 0.1,
    true,
    E'héllo "wörld" \\\\ back\\\\slash ''single''', 'abc', 'ab', 'a name', 'x',
    '\\xdeadbeef00',
    '2024-02-29', '2024-01-02 03:04:05.123456', '2024-07-01 12:00:00.5+00', '13:14:15.5', '13:14:15+05:30', '1 year 2 mons 3 days 04:05:06.789',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"b": 1,   "a": [1, 2.50, "x", {"deep": null}], "b": 2, "big": 123456789012345678901234567890}',
    '{"z": 1.10, "a": {"n": null, "e": 1e2, "s": "é\\u00e9"}, "arr": [true, false]}',
    '{1,2,NULL,3}',
    ARRAY['a', NULL, 'NULL', 'null', 'with "quote"', 'com,ma', '{brace}', 'back\\slash', '', ' spaced ', 'ünï😀', 'semi;colon', E'new\\nline'],
    '{{1,2,3},{4,5,6}}',
    '{1.10,NaN,Infinity,-Infinity,12345678901234567890.5,-0.000000000000000000001}',
    '{t,f,NULL}',
    ARRAY['{"a": 1}'::jsonb, '[1, "x", 2.0]', 'null', '"s"', '12345678901234567890', NULL],
    ARRAY['{"a":1, "a":2}'::json, '  [1,  2]  ', NULL],
    ARRAY['2024-01-01 00:00:00+00'::timestamptz, 'infinity', '-infinity', NULL, '1999-12-31 23:59:59.999999+00'],
    ARRAY['2024-01-01 10:11:12.5'::timestamp, 'infinity', NULL],
    ARRAY['2024-01-01'::date, 'infinity', '0044-03-15 BC', NULL],
    ARRAY[0.1, 'NaN', 'Infinity', '-Infinity', 1e-300, -0.0]::float8[],
    ARRAY[9223372036854775807, -9223372036854775808, 9007199254740993, NULL]::bigint[],
    'happy 😀', '{sad,"with \\"quote\\", comma",NULL}',
    ROW('Main St, "1" (rear)', 12345, ARRAY['x', 'y z', NULL], '2024-01-01 10:00+00', '2020-02-02', '{"k": [1, 2.50]}', 3.140)::address,
    ARRAY[ROW('a', 1, NULL, NULL, NULL, NULL, NULL)::address, NULL, ROW('', 2, '{}', 'infinity', 'infinity', '"str"', 'NaN')::address],
    ROW(ROW('in "ner"', 7, ARRAY['p,q', 'r\\s'], '2001-02-03 04:05:06+00', '2001-02-03', '[1, {"x": "y"}]', 1e20)::address, 'label (x)', '{ok,sad}')::wrapper,
    ROW()::nothing_inside,
    7, '2024-05-05 05:05:05', '{1,2,3}', '{4,5}',
    '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
    '(1.5,-2)', '{(1,1),(0,0);(2,2),(1,1)}',
    'a fat:1 cat''s',
    '[1,10)', '[2024-01-01 00:00+00,2024-02-01 00:00+00)', '{[1,2), [3.5,4]}',
    B'1010', B'101',
    12.34, '<a b="c">t &amp; u</a>', 12345)`,
  // 2: maxima, empties and infinities
  `INSERT INTO kitchen (id, c_int2, c_int4, c_int8, c_numeric, c_num_fixed, c_real, c_double, c_bool, c_text, c_varchar, c_char, c_bytea,
      c_date, c_ts, c_tstz, c_time, c_timetz, c_interval, c_json, c_jsonb, c_int_arr, c_text_arr, c_int_2d, c_numeric_arr, c_jsonb_arr,
      c_tstz_arr, c_composite, c_wrapper, c_domain_ts, c_int4range, c_varbit, c_money)
    VALUES (2, 32767, 2147483647, 9223372036854775807, 'NaN', 99999999999999999999.9999999999, 'Infinity', 1e-300, false,
      E'line1\\nline2\\ttab\\r\\x01\\x1f\\x7f \\u2028 \\u2029 end\\\\', '', '', '\\x',
      'infinity', 'infinity', '-infinity', '24:00:00', '00:00:00-12', '-1 days -00:00:01',
      '  "just a string"  ', '[]', '{}', '{}', '[0:1][5:6]={{1,2},{3,4}}', '{}', '{}',
      '{}', ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL)::address, ROW(NULL, NULL, NULL)::wrapper, 'infinity', 'empty', B'', -92233720368547758.08)`,
  // 3: minima, BC dates, negative zero, float extremes
  `INSERT INTO kitchen (id, c_int2, c_int4, c_int8, c_numeric, c_num_fixed, c_real, c_double, c_text, c_char, c_date, c_ts, c_tstz, c_time,
      c_timetz, c_interval, c_json, c_jsonb, c_numeric_arr, c_float_arr, c_composite, c_tstz_arr)
    VALUES (3, -32768, -2147483648, -9223372036854775808, 'Infinity', -0.0000000001, '-0', 1.7976931348623157e308,
      'emoji 👩‍👩‍👧‍👦 combining é RTL עברית zero-width​ bom ﻿', 'abcdefgh', '4713-01-01 BC', '0044-03-15 10:00:00.25 BC',
      '0044-03-15 10:00:00+00 BC', '00:00:00', '23:59:59.999999+14', '178000000 years',
      '{"e": "\\u00e9\\ud83d\\ude00", "n": -0.0, "big": 1e400}', '{"n": -0.0, "small": 1e-400, "unicode": "\\ud83d\\ude00"}',
      '{-0.0,0.000,1e-30}', ARRAY[-0.0, 3.4028235e38, 5e-324]::float8[],
      ROW('x', -1, ARRAY[]::text[], '0044-03-15 10:00:00+00 BC', '0044-03-15 BC', 'false', -0.0)::address,
      ARRAY['0044-03-15 10:00:00+00 BC'::timestamptz, '1900-06-01 00:00:00+00', '1937-06-01 00:00:00+00'])`,
  // 4: every column NULL but the key
  `INSERT INTO kitchen (id) VALUES (4)`,
  // 5: other extremes: -Infinity, maximum dates, historical time-zone offsets
  `INSERT INTO kitchen (id, c_int8, c_numeric, c_num_fixed, c_real, c_double, c_text, c_date, c_ts, c_tstz, c_timetz, c_jsonb, c_numeric_arr)
    VALUES (5, 0, '-Infinity', 0, '-Infinity', '-0', 'NULL', '5874897-12-31', '294276-12-31 23:59:59.999999', '1800-06-01 00:00:00+00',
      '00:00:00+00:19:32', '{"n": 1e100, "f": 0.00001000}', '{1e100,NULL,NULL}')`,
];

/** What the dispatcher must deliver for one row, in order, identified by the CloudEvents subject. */
interface ExpectedEvent {
  op: 'insert' | 'update' | 'delete';
  /** to_jsonb(row)::text of the row, or null for JSON null. */
  old: string | null;
  new: string | null;
  /** unchangedToastColumns, when the event must name some. */
  unchangedToast?: string[];
}

class Expectations {
  readonly bySubject = new Map<string, ExpectedEvent[]>();
  add(subject: string, event: ExpectedEvent): void {
    const list = this.bySubject.get(subject) ?? [];
    list.push(event);
    this.bySubject.set(subject, list);
  }
  get count(): number {
    return [...this.bySubject.values()].reduce((n, l) => n + l.length, 0);
  }
}

/** id → to_jsonb(row)::text for every row of the table. */
async function snapshot(sql: Sql, table: string): Promise<Map<number, string>> {
  const { rows } = await sql(`SELECT id, to_jsonb(t)::text AS j FROM ${table} t ORDER BY id`);
  return new Map((rows as { id: number; j: string }[]).map((r) => [r.id, r.j]));
}

/**
 * Compares `body -> field` with the expected jsonb text inside Postgres. Returns a list of
 * differences (empty when equal), each naming the column and both values as jsonb text.
 */
async function diffInPostgres(sql: Sql, body: string, field: 'old' | 'new', expected: string | null): Promise<string[]> {
  const want = expected ?? 'null';
  const { rows } = await sql(
    `SELECT ($1::jsonb -> $2::text) = $3::jsonb AS eq, ($1::jsonb -> $2::text)::text = $3::jsonb::text AS same_text,
            ($1::jsonb -> $2::text)::text AS got, jsonb_typeof($1::jsonb -> $2::text) = 'object' AND jsonb_typeof($3::jsonb) = 'object' AS objects`,
    [body, field, want],
  );
  const row = rows[0] as { eq: boolean | null; same_text: boolean | null; got: string | null; objects: boolean | null };
  if (row.eq && row.same_text) return [];
  if (!row.objects) return [`${field}: got ${row.got} want ${want}`];
  const diff = await sql(
    `SELECT coalesce(g.key, w.key) AS key, g.value::text AS got, w.value::text AS want
       FROM jsonb_each($1::jsonb -> $2::text) g FULL JOIN jsonb_each($3::jsonb) w ON g.key = w.key
      WHERE g.value IS DISTINCT FROM w.value OR g.value::text IS DISTINCT FROM w.value::text ORDER BY 1`,
    [body, field, want],
  );
  return (diff.rows as { key: string; got: string | null; want: string | null }[]).map((d) => `${field}.${d.key}: got ${d.got ?? '(absent)'} want ${d.want ?? '(absent)'}`);
}

/** A binary-mode event's subject: the header percent-encodes what is not printable ASCII (CloudEvents HTTP binding §3.1.3.2). */
function subjectOf(request: ReceivedRequest): string {
  return decodeURIComponent(String(request.headers['ce-subject']));
}

/** Checks every delivered event for the subjects against the expectations, with Postgres as the oracle. */
async function verify(sql: Sql, requests: ReceivedRequest[], expectations: Expectations): Promise<void> {
  const problems: string[] = [];
  for (const [subject, expected] of expectations.bySubject) {
    const received = requests.filter((r) => subjectOf(r) === subject);
    if (received.length !== expected.length) {
      problems.push(`${subject}: ${received.length} events, expected ${expected.length} (${received.map((r) => r.headers['ce-type']).join(', ')})`);
      continue;
    }
    for (const [i, want] of expected.entries()) {
      const request = received[i]!;
      const where = `${subject} event ${i + 1} (${want.op})`;
      if (request.headers['ce-type'] !== `dev.eventide.row.${want.op}`) problems.push(`${where}: ce-type ${String(request.headers['ce-type'])}`);
      // The body must be valid JSON for JavaScript too, not only for Postgres.
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(request.body) as Record<string, unknown>;
      } catch (error) {
        problems.push(`${where}: body is not JSON (${(error as Error).message}): ${request.body.slice(0, 300)}`);
        continue;
      }
      if (parsed.op !== want.op) problems.push(`${where}: op ${String(parsed.op)}`);
      const toast = parsed.unchangedToastColumns;
      if (want.unchangedToast ? JSON.stringify(toast) !== JSON.stringify(want.unchangedToast) : toast !== undefined) {
        problems.push(`${where}: unchangedToastColumns ${JSON.stringify(toast)}, expected ${JSON.stringify(want.unchangedToast)}`);
      }
      for (const field of ['old', 'new'] as const) {
        for (const d of await diffInPostgres(sql, request.body, field, want[field])) problems.push(`${where}: ${d}`);
      }
    }
  }
  expect(problems).toEqual([]);
}

/** Runs the kitchen-sink inserts, updates and deletes; returns what must be delivered. */
async function kitchenScenario(sql: Sql): Promise<Expectations> {
  const expectations = new Expectations();
  for (const insert of KITCHEN_ROWS) await sql(insert);
  const inserted = await snapshot(sql, 'kitchen');
  for (const [id, row] of inserted) expectations.add(`public.kitchen/${id}`, { op: 'insert', old: null, new: row });

  await sql(`UPDATE kitchen SET c_text = c_text || E' ✓ \\\\"', c_numeric = 0.1000, c_int_arr = '{9}', c_composite = NULL,
               c_jsonb = c_jsonb || '{"added": 1.50}', c_tstz = '2023-03-26 01:30:00+00' WHERE id IN (1, 3, 4)`);
  // A key change: the event's subject names the new key, old carries the row before.
  await sql('UPDATE kitchen SET id = 50, c_int4 = 1 WHERE id = 5');
  const updated = await snapshot(sql, 'kitchen');
  for (const id of [1, 3, 4]) expectations.add(`public.kitchen/${id}`, { op: 'update', old: inserted.get(id)!, new: updated.get(id)! });
  expectations.add('public.kitchen/50', { op: 'update', old: inserted.get(5)!, new: updated.get(50)! });

  await sql('DELETE FROM kitchen WHERE id IN (2, 4, 50)');
  for (const id of [2, 4]) expectations.add(`public.kitchen/${id}`, { op: 'delete', old: updated.get(id)!, new: null });
  expectations.add('public.kitchen/50', { op: 'delete', old: updated.get(50)!, new: null });
  return expectations;
}

const TOAST_SCHEMA = (name: string, full: boolean) => `
CREATE TABLE ${name} (id integer PRIMARY KEY, counter integer NOT NULL, big_text text, note text, big_jsonb jsonb);
ALTER TABLE ${name} ALTER big_text SET STORAGE EXTERNAL, ALTER big_jsonb SET STORAGE EXTERNAL${full ? ', REPLICA IDENTITY FULL' : ''};
`;

/** Values far over the 2 kB TOAST threshold, made of md5 hex so nothing compresses them inline. */
const BIG_TEXT = `(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i)`;
const BIG_JSONB = `(SELECT jsonb_build_object('items', jsonb_agg(md5(i::text)), 'n', 12345678901234567890.10) FROM generate_series(1, 400) i)`;

async function toastScenario(sql: Sql, table: string, full: boolean): Promise<Expectations> {
  const e = new Expectations();
  const subject = (id: number) => `public.${table}/${id}`;
  await sql(`INSERT INTO ${table} VALUES (1, 0, ${BIG_TEXT}, 'small', ${BIG_JSONB}), (2, 0, 'short', 'small', '{"short": true}')`);
  const s1 = await snapshot(sql, table);
  const size = await sql(`SELECT pg_column_size(big_text) AS t, pg_column_size(big_jsonb) AS j FROM ${table} WHERE id = 1`);
  const sizes = size.rows[0] as { t: number; j: number };
  expect(sizes.t).toBeGreaterThan(8192);
  expect(sizes.j).toBeGreaterThan(8192);
  for (const id of [1, 2]) e.add(subject(id), { op: 'insert', old: null, new: s1.get(id)! });

  // Only the counter changes: Postgres does not send row 1's TOASTed values.
  await sql(`UPDATE ${table} SET counter = counter + 1`);
  const s2 = await snapshot(sql, table);
  // The TOASTed text changes, the TOASTed jsonb does not.
  await sql(`UPDATE ${table} SET big_text = big_text || 'tail', note = NULL WHERE id = 1`);
  const s3 = await snapshot(sql, table);
  await sql(`DELETE FROM ${table} WHERE id = 1`);

  const minus = async (row: string, columns: string[]) => ((await sql('SELECT ($1::jsonb - $2::text[])::text AS j', [row, columns])).rows[0] as { j: string }).j;
  const keyOnly = async (id: number) => ((await sql("SELECT jsonb_build_object('id', $1::int)::text AS j", [id])).rows[0] as { j: string }).j;
  if (full) {
    e.add(subject(1), { op: 'update', old: s1.get(1)!, new: s2.get(1)! });
    e.add(subject(2), { op: 'update', old: s1.get(2)!, new: s2.get(2)! });
    e.add(subject(1), { op: 'update', old: s2.get(1)!, new: s3.get(1)! });
    e.add(subject(1), { op: 'delete', old: s3.get(1)!, new: null });
  } else {
    // Without REPLICA IDENTITY FULL nothing holds the unsent values: they are left out and named, never guessed.
    // old holds the key columns (README), also when Postgres sends no old key because the key did not change.
    e.add(subject(1), { op: 'update', old: await keyOnly(1), new: await minus(s2.get(1)!, ['big_text', 'big_jsonb']), unchangedToast: ['big_text', 'big_jsonb'] });
    e.add(subject(2), { op: 'update', old: await keyOnly(2), new: s2.get(2)! });
    e.add(subject(1), { op: 'update', old: await keyOnly(1), new: await minus(s3.get(1)!, ['big_jsonb']), unchangedToast: ['big_jsonb'] });
    e.add(subject(1), { op: 'delete', old: await keyOnly(1), new: null });
  }
  return e;
}

/** More types: arrays of most built-ins, geometry, more ranges, catalog types, extension types, domains over composites. */
const EXTRAS_SCHEMA = `
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE TYPE shade AS ENUM ('red', 'with space', 'a,b', 'q"uote', 'back\\slash');
CREATE TYPE inner_row AS (flag boolean, ratio double precision, raw bytea, attrs hstore, at timestamptz, big bigint, shades shade[]);
CREATE TYPE outer_row AS (rows inner_row[], names text[], note text);
CREATE DOMAIN inner_dom AS inner_row;
CREATE DOMAIN doc_dom AS jsonb CHECK (VALUE <> '"forbidden"');
CREATE DOMAIN tstz_dom AS timestamptz;
CREATE DOMAIN tstz_list AS timestamptz[];
CREATE DOMAIN attrs_dom AS hstore;
CREATE TABLE extras (
  id integer PRIMARY KEY,
  c_real real, c_double double precision,
  c_real_arr real[], c_int2_arr smallint[], c_uuid_arr uuid[], c_bytea_arr bytea[], c_interval_arr interval[],
  c_time_arr time[], c_timetz_arr timetz[], c_char_arr char(3)[], c_varchar_arr varchar(5)[], c_name_arr name[], c_qchar_arr "char"[],
  c_money_arr money[], c_inet_arr inet[], c_cidr_arr cidr[], c_macaddr8 macaddr8, c_xml_arr xml[], c_bit_arr bit(3)[], c_varbit_arr varbit[],
  c_tsvector_arr tsvector[], c_tsquery tsquery, c_point_arr point[],
  c_line line, c_lseg lseg, c_path path, c_polygon polygon, c_circle circle, c_box box,
  c_int4range_arr int4range[], c_daterange daterange, c_int8range int8range, c_numrange numrange, c_tsrange tsrange, c_tstzrange tstzrange,
  c_datemultirange datemultirange, c_tstzmultirange tstzmultirange,
  c_jsonpath jsonpath, c_pg_lsn pg_lsn, c_regclass regclass, c_regtype regtype, c_snapshot pg_snapshot, c_xid8 xid8, c_tid tid,
  c_hstore hstore, c_hstore_arr hstore[], c_citext citext, c_citext_arr citext[],
  c_inner inner_row, c_outer outer_row, c_inner_dom inner_dom, c_doc_dom doc_dom, c_tstz_dom tstz_dom, c_tstz_list tstz_list,
  c_tstz_dom_arr tstz_dom[], c_attrs_dom attrs_dom, c_shade_arr shade[], c_big_numeric numeric, c_long_arr integer[]
);
ALTER TABLE extras REPLICA IDENTITY FULL;
CREATE TABLE generated_cols (id integer PRIMARY KEY, a integer, doubled integer GENERATED ALWAYS AS (a * 2) STORED);
ALTER TABLE generated_cols REPLICA IDENTITY FULL;
CREATE TABLE keyed_default (name text, at timestamptz, amount numeric, note text, PRIMARY KEY (name, at, amount));
`;

const EXTRAS_ROWS = [
  `INSERT INTO extras VALUES (1,
    'NaN', 'NaN',
    ARRAY['NaN', 1.1, -0.0, 3.4028235e38, 1e-45, 'Infinity']::real[], '{-32768,0,32767}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}',
    ARRAY['\\x00'::bytea, '\\x', NULL, '\\x5c22'], ARRAY['1 day'::interval, '-1 mons +00:00:00.000001', '0'],
    '{00:00,23:59:59.999999,NULL}', '{00:00+01,12:00-05:30}', ARRAY['a', 'ab ', '']::char(3)[], '{"x y","",NULL}', '{"na me","NULL"}', ARRAY['a', ' ', '"']::"char"[],
    '{1.5,-2}', '{127.0.0.1,::1/128,10.0.0.0/8}', '{10.0.0.0/8,2001:db8::/32}', '08:00:2b:01:02:03:04:05', ARRAY['<a>x, y</a>'::xml, '<b q="1"/>'], ARRAY[B'101', B'000'], ARRAY[B'', B'1'],
    ARRAY['a:1 b'::tsvector, $$'x y':2A 'q"u'$$], 'fat & (rat | ! cat)', '{"(1,2)","(3.5,-4)"}',
    '{1,2,3}', '[(0,0),(1,1)]', '((0,0),(1,1),(2,0))', '((0,0),(1,1),(2,0))', '<(1,2),3>', '(1,1),(0,0)',
    '{"[1,3)",empty,"(,5)"}', '[2024-01-01,infinity)', '(,)', '[-1.5,)', '["2024-01-01 10:00","2024-01-02 11:00"]', '[2024-01-01 00:00+00,)',
    '{[2024-01-01,2024-01-05),[2024-02-01,2024-02-03)}', '{[2024-01-01 00:00+00,2024-01-02 00:00+00)}',
    '$.a[*] ? (@ > 1)', '16/B374D848', 'extras', 'timestamp with time zone', '10:20:10,14,15', '18446744073709551615', '(1,2)',
    '"a"=>"1", "b"=>NULL, "c d"=>"x\\"y\\\\z", "é"=>"😀", ""=>""', ARRAY['"k"=>"v"'::hstore, '', NULL], 'MiXeD Case', '{Ab,"c,d",NULL}',
    ROW(true, 'NaN', '\\x00ff', '"x"=>"1"', '2024-01-01 00:00+00', 9223372036854775807, '{red,"with space","a,b","q\\"uote","back\\\\slash",NULL}')::inner_row,
    ROW(ARRAY[ROW(false, 1e-300, '\\x', '', 'infinity', -9007199254740993, '{}')::inner_row, NULL, ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL)::inner_row],
        ARRAY['a"b', 'c\\d', '(p)', '{q}', ''], 'x,(y)"z"')::outer_row,
    ROW(NULL, -0.0, NULL, '"n"=>NULL', '0044-03-15 10:00+00 BC', 0, '{}')::inner_row,
    '{"doc": [1, 2.000, {"k": "v"}]}', '2024-07-01 12:00+00', '{2024-01-01 00:00+00,infinity,NULL}',
    ARRAY['2024-01-01 12:00+00'::tstz_dom, NULL], '"dom"=>"ain"', '{red,"with space","a,b","q\\"uote","back\\\\slash"}',
    (SELECT ('9' || repeat('0', 300) || '.' || repeat('1', 200))::numeric), (SELECT array_agg(i) FROM generate_series(1, 5000) i))`,
  `INSERT INTO extras (id, c_real, c_double, c_hstore, c_inner, c_outer, c_doc_dom, c_real_arr) VALUES (2, '-Infinity', -1e-300, '',
    ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL)::inner_row, ROW('{}', '{}', '')::outer_row, 'null', '{}')`,
  `INSERT INTO extras (id) VALUES (3)`,
];

/** Runs the extra types' inserts, an update and a delete; returns what must be delivered. */
async function extrasScenario(sql: Sql): Promise<Expectations> {
  const e = new Expectations();
  for (const insert of EXTRAS_ROWS) await sql(insert);
  const inserted = await snapshot(sql, 'extras');
  for (const [id, row] of inserted) e.add(`public.extras/${id}`, { op: 'insert', old: null, new: row });
  await sql(`UPDATE extras SET c_hstore = c_hstore || '"new"=>"v"', c_real = 0.5, c_outer = NULL, c_long_arr = '{}' WHERE id IN (1, 3)`);
  const updated = await snapshot(sql, 'extras');
  for (const id of [1, 3]) e.add(`public.extras/${id}`, { op: 'update', old: inserted.get(id)!, new: updated.get(id)! });
  await sql('DELETE FROM extras WHERE id = 2');
  e.add('public.extras/2', { op: 'delete', old: updated.get(2)!, new: null });
  return e;
}

const ALL_OPS = { operations: ['insert', 'update', 'delete'] };

describe('payload row values are exactly to_jsonb(row), with Postgres as the oracle', () => {
  let db: SourceDatabase;
  let sink: RecordingSink;
  let dispatcher: Dispatcher;
  // A second database on the same server whose time zone has fractional and historical offsets.
  let amsClient: pg.Client;
  let amsSink: RecordingSink;
  let amsDispatcher: Dispatcher;
  const amsSql: Sql = (text, params) => amsClient.query(text, params);

  beforeAll(async () => {
    db = await startSourceDatabase(`${KITCHEN_SCHEMA} ${TOAST_SCHEMA('toast_full', true)} ${TOAST_SCHEMA('toast_default', false)} ${EXTRAS_SCHEMA}`);
    await db.sql('CREATE DATABASE ams');
    await db.sql("ALTER DATABASE ams SET timezone TO 'Europe/Amsterdam'");
    amsClient = new pg.Client({ connectionString: db.server.urlFor('ams') });
    await amsClient.connect();
    await amsClient.query(KITCHEN_SCHEMA);
    [sink, amsSink] = await Promise.all([startRecordingSink(), startRecordingSink()]);
    const file = writeManifests([
      triggerManifest('kitchen', { table: { name: 'kitchen' }, sink: { url: sink.url }, ...ALL_OPS }),
      triggerManifest('toast-full', { table: { name: 'toast_full' }, sink: { url: sink.url }, ...ALL_OPS }),
      triggerManifest('toast-default', { table: { name: 'toast_default' }, sink: { url: sink.url }, ...ALL_OPS }),
      triggerManifest('extras', { table: { name: 'extras' }, sink: { url: sink.url }, ...ALL_OPS }),
      triggerManifest('generated-cols', { table: { name: 'generated_cols' }, sink: { url: sink.url }, ...ALL_OPS }),
      triggerManifest('keyed-default', { table: { name: 'keyed_default' }, sink: { url: sink.url }, ...ALL_OPS }),
    ]);
    const amsFile = writeManifests([triggerManifest('kitchen', { table: { name: 'kitchen' }, sink: { url: amsSink.url }, ...ALL_OPS })]);
    [dispatcher, amsDispatcher] = await Promise.all([startDispatcher(db.url, file), startDispatcher(db.server.urlFor('ams'), amsFile, ['--slot', 'eventide_ams'])]);
  });
  afterAll(async () => {
    await dispatcher?.stop();
    await amsDispatcher?.stop();
    await sink?.close();
    await amsSink?.close();
    await amsClient?.end().catch(() => undefined);
    await db?.close();
  });

  it('inserts, updates (old with REPLICA IDENTITY FULL) and deletes of every column type match to_jsonb (UTC)', async () => {
    const expectations = await kitchenScenario(db.sql);
    await eventually(() => sink.requests.filter((r) => String(r.headers['ce-subject']).startsWith('public.kitchen/')).length >= expectations.count, 30_000, 'kitchen events');
    await verify(db.sql, sink.requests, expectations);
  });

  it('timestamptz values match to_jsonb in a time zone with fractional and historical offsets (Europe/Amsterdam)', async () => {
    const zone = (await amsSql('SHOW TimeZone')).rows[0] as { TimeZone: string };
    expect(zone.TimeZone).toBe('Europe/Amsterdam');
    const expectations = await kitchenScenario(amsSql);
    await eventually(() => amsSink.requests.length >= expectations.count, 30_000, 'kitchen events in ams');
    await verify(amsSql, amsSink.requests, expectations);
  });

  it('keeps matching to_jsonb when the table and its types change while the dispatcher streams', async () => {
    const subject = (id: number) => `public.kitchen/${id}`;
    const kitchenEvents = () => sink.requests.filter((r) => /^public\.kitchen\/1\d\d$/.test(String(r.headers['ce-subject'])));
    const all = new Expectations();
    /** Runs a step's statements, then waits for and checks everything expected so far. */
    const step = async (statements: string[], expect: (before: Map<number, string>, after: Map<number, string>) => void) => {
      const before = await snapshot(db.sql, 'kitchen');
      for (const statement of statements) await db.sql(statement);
      expect(before, await snapshot(db.sql, 'kitchen'));
      await eventually(() => kitchenEvents().length >= all.count, 30_000, `${all.count} events after: ${statements.join('; ')}`);
      await verify(db.sql, kitchenEvents(), all);
    };
    await step(["INSERT INTO kitchen (id, c_composite, c_enum, c_int4) VALUES (100, ROW('before', 1, '{a}', NULL, NULL, NULL, 1.0), 'ok', 5)"], (_, after) =>
      all.add(subject(100), { op: 'insert', old: null, new: after.get(100)! }),
    );
    // A composite type the dispatcher has already decoded gains an attribute (Postgres announces no relation for that).
    await db.sql('ALTER TYPE address ADD ATTRIBUTE added_later numeric');
    await step(["INSERT INTO kitchen (id, c_composite) VALUES (101, ROW('after add', 2, '{b}', NULL, NULL, NULL, 2.0, 1.50))"], (_, after) =>
      all.add(subject(101), { op: 'insert', old: null, new: after.get(101)! }),
    );
    // ... and loses one in the middle: the fields after it must not shift onto the wrong names.
    await db.sql('ALTER TYPE address DROP ATTRIBUTE zip');
    await step(
      ["INSERT INTO kitchen (id, c_composite) VALUES (102, ROW('after drop', '{c}', '2024-01-01 00:00+00', NULL, '{\"d\": 1}', 3.0, 4.25))", 'UPDATE kitchen SET c_int4 = 6 WHERE id = 100'],
      (before, after) => {
        all.add(subject(102), { op: 'insert', old: null, new: after.get(102)! });
        all.add(subject(100), { op: 'update', old: before.get(100)!, new: after.get(100)! });
      },
    );
    // The table itself: a new column of a type created after the dispatcher started, a dropped column, a changed column type.
    await db.sql("CREATE TYPE late_mood AS ENUM ('late', 'later')");
    await db.sql('ALTER TABLE kitchen ADD COLUMN "Late ""Quoted"" ñ" late_mood, DROP COLUMN c_money, ALTER COLUMN c_int4 TYPE bigint');
    await step(
      [
        `INSERT INTO kitchen (id, c_enum, c_int4, "Late ""Quoted"" ñ") VALUES (103, 'happy 😀', 9007199254740993, 'later')`,
        `UPDATE kitchen SET "Late ""Quoted"" ñ" = 'late', c_int4 = -9007199254740993 WHERE id = 101`,
      ],
      (before, after) => {
        all.add(subject(103), { op: 'insert', old: null, new: after.get(103)! });
        all.add(subject(101), { op: 'update', old: before.get(101)!, new: after.get(101)! });
      },
    );
  });

  it('more types match to_jsonb: arrays of most built-ins, geometry, ranges, catalog types, hstore, citext, domains over composites', async () => {
    const expectations = await extrasScenario(db.sql);
    await eventually(() => sink.requests.filter((r) => String(r.headers['ce-subject']).startsWith('public.extras/')).length >= expectations.count, 30_000, 'extras events');
    await verify(db.sql, sink.requests, expectations);
  });

  it('leaves out stored generated columns, as documented (PostgreSQL 15 does not send them); the rest matches to_jsonb', async () => {
    const e = new Expectations();
    const withoutGenerated = async () => {
      const { rows } = await db.sql("SELECT id, (to_jsonb(t) - 'doubled')::text AS j FROM generated_cols t ORDER BY id");
      return new Map((rows as { id: number; j: string }[]).map((r) => [r.id, r.j]));
    };
    await db.sql('INSERT INTO generated_cols (id, a) VALUES (1, 21)');
    const s1 = await withoutGenerated();
    await db.sql('UPDATE generated_cols SET a = 22');
    const s2 = await withoutGenerated();
    await db.sql('DELETE FROM generated_cols');
    e.add('public.generated_cols/1', { op: 'insert', old: null, new: s1.get(1)! });
    e.add('public.generated_cols/1', { op: 'update', old: s1.get(1)!, new: s2.get(1)! });
    e.add('public.generated_cols/1', { op: 'delete', old: s2.get(1)!, new: null });
    await eventually(() => sink.requests.filter((r) => String(r.headers['ce-subject']).startsWith('public.generated_cols/')).length >= e.count, 30_000, 'generated_cols events');
    await verify(db.sql, sink.requests, e);
  });

  it('without REPLICA IDENTITY FULL, old holds exactly the primary-key columns (text, timestamptz, numeric), also across a key change', async () => {
    const e = new Expectations();
    const rowJson = async () => ((await db.sql('SELECT to_jsonb(t)::text AS j FROM keyed_default t')).rows[0] as { j: string }).j;
    const keyJson = async () =>
      ((await db.sql("SELECT (SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(t)) WHERE key IN ('name', 'at', 'amount'))::text AS j FROM keyed_default t")).rows[0] as { j: string }).j;
    await db.sql(`INSERT INTO keyed_default VALUES ('a "b", c', '2024-01-01 00:00:00.5+00', 1.50, 'first')`);
    const [r1, k1] = [await rowJson(), await keyJson()];
    await db.sql("UPDATE keyed_default SET note = 'second'");
    const r2 = await rowJson();
    await db.sql("UPDATE keyed_default SET name = 'z', amount = 2.500, note = 'third'");
    const [r3, k3] = [await rowJson(), await keyJson()];
    await db.sql('DELETE FROM keyed_default');
    // A key of any text: the subject header percent-encodes it, and the event is delivered like any other.
    const oddKey = 'naïve 😀 100% \\ \n';
    await db.sql("INSERT INTO keyed_default VALUES ($1, '2024-01-01 00:00+00', 1, 'x')", [oddKey]);
    const r4 = await rowJson();
    // Subjects carry the key columns' values as text (strings without quotes or JSON escapes), joined by commas.
    const before = 'public.keyed_default/a "b", c,2024-01-01T00:00:00.5+00:00,1.50';
    const after = 'public.keyed_default/z,2024-01-01T00:00:00.5+00:00,2.500';
    const unicode = `public.keyed_default/${oddKey},2024-01-01T00:00:00+00:00,1`;
    e.add(before, { op: 'insert', old: null, new: r1 });
    e.add(before, { op: 'update', old: k1, new: r2 });
    e.add(after, { op: 'update', old: k1, new: r3 });
    e.add(after, { op: 'delete', old: k3, new: null });
    e.add(unicode, { op: 'insert', old: null, new: r4 });
    const keyed = () => sink.requests.filter((r) => String(r.headers['ce-subject']).startsWith('public.keyed_default/'));
    await eventually(() => keyed().length >= e.count, 30_000, 'keyed_default events');
    await verify(db.sql, sink.requests, e);
    expect(
      keyed()
        .map((r) => String(r.headers['ce-subject']))
        .sort(),
    ).toEqual([
      'public.keyed_default/a%20%22b%22,%20c,2024-01-01T00:00:00.5+00:00,1.50',
      'public.keyed_default/a%20%22b%22,%20c,2024-01-01T00:00:00.5+00:00,1.50',
      'public.keyed_default/na%C3%AFve%20%F0%9F%98%80%20100%25%20\\%20%0A,2024-01-01T00:00:00+00:00,1',
      'public.keyed_default/z,2024-01-01T00:00:00.5+00:00,2.500',
      'public.keyed_default/z,2024-01-01T00:00:00.5+00:00,2.500',
    ]);
    expect((await db.sql('SELECT count(*)::int AS n FROM eventide.dead_letters')).rows[0]).toEqual({ n: 0 });
  });

  it('fills unchanged TOASTed values from old with REPLICA IDENTITY FULL', async () => {
    const expectations = await toastScenario(db.sql, 'toast_full', true);
    await eventually(() => sink.requests.filter((r) => String(r.headers['ce-subject']).startsWith('public.toast_full/')).length >= expectations.count, 30_000, 'toast_full events');
    await verify(db.sql, sink.requests, expectations);
  });

  it('leaves unchanged TOASTed values out of new and names them without REPLICA IDENTITY FULL', async () => {
    const expectations = await toastScenario(db.sql, 'toast_default', false);
    await eventually(() => sink.requests.filter((r) => String(r.headers['ce-subject']).startsWith('public.toast_default/')).length >= expectations.count, 30_000, 'toast_default events');
    await verify(db.sql, sink.requests, expectations);
  });
});
