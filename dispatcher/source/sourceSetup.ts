import type pg from 'pg';
import { EventideError } from '../../common/errors.js';
import { combineProblems, type TriggerProblem } from '../admission/triggerProblem.js';
import type { Route } from '../routing/triggerMatcher.js';

/** What the dispatcher needs to know about a routed table. */
export interface TableFacts {
  schema: string;
  name: string;
  exists: boolean;
  columns: string[];
  /** d = default (primary key), n = nothing, f = full, i = index. */
  replicaIdentity?: 'd' | 'n' | 'f' | 'i';
  /**
   * The table, or partitions of it, with no usable replica identity (no primary key under DEFAULT,
   * no index under USING INDEX, or NOTHING): once published, Postgres refuses their updates and deletes.
   */
  withoutIdentity?: { schema: string; name: string }[];
  /**
   * Whether the role may have the table published: it owns the table (or is a superuser), or the
   * publication already holds it. Postgres lets only the owner add a table to a publication.
   */
  publishable?: boolean;
}

/** A source that cannot serve its triggers: the message names the trigger, the table or column, and the fix. */
export class SourceProblemError extends EventideError {
  override readonly code = 'EVENTIDE_SOURCE_PROBLEM';
  override readonly name = 'SourceProblemError';
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

/**
 * Runs a setup step as `client`'s role; a refusal for lack of privilege (SQLSTATE 42501) becomes a
 * SourceProblemError saying what the role may not do and how to grant it, instead of Postgres's bare
 * "permission denied". The role is the one the client logged in as: no query is spent on it.
 */
export async function withPrivilegeAdvice<T>(client: pg.ClientBase, step: () => Promise<T>, refusal: (role: string, reason: string) => string): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if ((error as { code?: unknown }).code === '42501') {
      throw new SourceProblemError([refusal((client as pg.Client).user ?? '(unknown)', (error as Error).message)]);
    }
    throw error;
  }
}

/** What a role needs for each setup step, for the messages of withPrivilegeAdvice. */
export const privilegeAdvice = {
  publication: (publication: string, tables: readonly { schema: string; name: string }[]) => (role: string, reason: string) =>
    `the database role "${role}" may not create or change publication "${publication}" (${reason}): grant it CREATE on the database ` +
    'and make it the owner of the published tables, or have their owner create the publication: ' +
    `CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${tables.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`).join(', ')} ` +
    'WITH (publish_via_partition_root = true)',
  slot: (slot: string) => (role: string, reason: string) =>
    `the database role "${role}" may not create replication slot "${slot}" (${reason}): give it the REPLICATION attribute (ALTER ROLE ${quoteIdent(role)} REPLICATION)`,
  deadLetters: (role: string, reason: string) =>
    `the database role "${role}" may not create the dead-letter table eventide.dead_letters (${reason}): grant it CREATE on the database, ` +
    `or create the schema for it (CREATE SCHEMA eventide AUTHORIZATION ${quoteIdent(role)}), or keep dead letters elsewhere with --dead-letter-database-url`,
  backlog: (role: string, reason: string) =>
    `the database role "${role}" may not use the backlog table eventide.backlog (${reason}): grant it CREATE on the database, ` +
    `or create the schema for it (CREATE SCHEMA eventide AUTHORIZATION ${quoteIdent(role)}), or, where the table exists, ` +
    `GRANT SELECT, INSERT, UPDATE, DELETE ON eventide.backlog TO ${quoteIdent(role)}; GRANT USAGE ON SEQUENCE eventide.backlog_id_seq TO ${quoteIdent(role)}`,
  backfills: (role: string, reason: string) =>
    `the database role "${role}" may not use the backfill table eventide.backfills (${reason}): grant it CREATE on the database, ` +
    `or create the schema for it (CREATE SCHEMA eventide AUTHORIZATION ${quoteIdent(role)}), or, where the table exists, ` +
    `GRANT SELECT, INSERT, UPDATE, DELETE ON eventide.backfills TO ${quoteIdent(role)}`,
};

/** Quotes an identifier for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Reads existence, columns, replica identity and publishability of the given tables. */
export async function inspectTables(client: pg.ClientBase, tables: { schema: string; name: string }[], publication?: string): Promise<TableFacts[]> {
  const facts: TableFacts[] = [];
  for (const table of tables) {
    const { rows } = await client.query<{
      relreplident: 'd' | 'n' | 'f' | 'i';
      columns: string[];
      without_identity: { schema: string; name: string }[];
      publishable: boolean;
    }>(
      `SELECT c.relreplident,
              array(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum) AS columns,
              coalesce((SELECT json_agg(json_build_object('schema', ln.nspname, 'name', l.relname) ORDER BY ln.nspname, l.relname)
                      FROM (SELECT c.oid AS relid WHERE c.relkind = 'r' UNION SELECT relid FROM pg_partition_tree(c.oid) WHERE isleaf) t
                      JOIN pg_class l ON l.oid = t.relid JOIN pg_namespace ln ON ln.oid = l.relnamespace
                     WHERE NOT (l.relreplident = 'f'
                        OR EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = l.oid
                                      AND ((l.relreplident = 'd' AND i.indisprimary) OR (l.relreplident = 'i' AND i.indisreplident))))), '[]') AS without_identity,
              pg_has_role(c.relowner, 'USAGE')
                OR EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = $3 AND p.schemaname = n.nspname AND p.tablename = c.relname)
                -- No publication yet: creating it is refused as a whole, with the statement its owner can run instead.
                OR NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $3) AS publishable
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [table.schema, table.name, publication ?? null],
    );
    const row = rows[0];
    facts.push(
      row
        ? { ...table, exists: true, columns: row.columns, replicaIdentity: row.relreplident, withoutIdentity: row.without_identity, publishable: row.publishable }
        : { ...table, exists: false, columns: [] },
    );
  }
  return facts;
}

/**
 * Checks the routes against the tables. Pure. A problem sets its trigger aside (the others are
 * served); warnings are logged (the trigger works, with less information).
 */
export function checkRoutesAgainstTables(routes: readonly Route[], facts: readonly TableFacts[]): { problems: Map<string, TriggerProblem>; warnings: string[] } {
  const problems = new Map<string, TriggerProblem>();
  const warnings: string[] = [];
  for (const route of routes) {
    const found: TriggerProblem[] = [];
    const { table, columns, operations } = route.trigger.spec;
    const fact = facts.find((f) => f.schema === table.schema && f.name === table.name);
    const label = `EventTrigger ${route.key}`;
    if (!fact?.exists) {
      problems.set(route.key, { reason: 'TableNotFound', message: `${label}: table ${table.schema}.${table.name} does not exist` });
      continue;
    }
    const wanted = [...(columns ?? []).map((c) => ['spec.columns', c] as const), ...[...(route.filter?.columns ?? [])].map((c) => ['spec.filter', c] as const)];
    for (const [field, column] of wanted) {
      if (!fact.columns.includes(column)) {
        found.push({ reason: 'ColumnNotFound', message: `${label}: ${field} names column "${column}", which ${table.schema}.${table.name} does not have` });
      }
    }
    const needsOld = (columns !== undefined || route.filter?.readsOld === true) && operations.some((o) => o === 'update' || o === 'delete');
    if (needsOld && fact.replicaIdentity !== 'f') {
      warnings.push(
        `${label}: ${table.schema}.${table.name} lacks REPLICA IDENTITY FULL, so old rows carry only key columns and every update counts as changing spec.columns; run ALTER TABLE ${quoteIdent(table.schema)}.${quoteIdent(table.name)} REPLICA IDENTITY FULL`,
      );
    }
    // The publication publishes every operation of its tables, whatever the trigger's operations, so
    // a table without a replica identity would have the application's updates and deletes refused.
    if (fact.replicaIdentity === 'n') {
      found.push({ reason: 'NoReplicaIdentity', message: `${label}: ${table.schema}.${table.name} has REPLICA IDENTITY NOTHING; Postgres then refuses its updates and deletes under a publication` });
    } else {
      for (const t of fact.withoutIdentity ?? []) {
        found.push({
          reason: 'NoReplicaIdentity',
          message: `${label}: ${t.schema}.${t.name} has no primary key (nor replica identity index); Postgres then refuses its updates and deletes under a publication; add a primary key or run ALTER TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.name)} REPLICA IDENTITY FULL`,
        });
      }
    }
    if (fact.publishable === false) {
      found.push({
        reason: 'TableForbidden',
        message: `${label}: the dispatcher's role does not own ${table.schema}.${table.name}, so it may not add it to the publication; have the table's owner run ALTER PUBLICATION … ADD TABLE ${quoteIdent(table.schema)}.${quoteIdent(table.name)}, or make the role its owner`,
      });
    }
    const problem = combineProblems(found);
    if (problem) problems.set(route.key, problem);
  }
  return { problems, warnings };
}

/**
 * Creates the publication if absent and makes its table list exactly `tables`. It publishes changes
 * of a partitioned table's partitions as the partitioned table's (publish_via_partition_root), the
 * table a trigger names; otherwise they would carry the partitions' names and match no trigger.
 */
export async function ensurePublication(client: pg.ClientBase, name: string, tables: { schema: string; name: string }[]): Promise<void> {
  return withPrivilegeAdvice(client, () => syncPublication(client, name, tables), privilegeAdvice.publication(name, tables));
}

async function syncPublication(client: pg.ClientBase, name: string, tables: { schema: string; name: string }[]): Promise<void> {
  const list = tables.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`).join(', ');
  const { rows } = await client.query<{ pubviaroot: boolean }>('SELECT pubviaroot FROM pg_publication WHERE pubname = $1', [name]);
  if (!rows[0]) {
    const options = 'WITH (publish_via_partition_root = true)';
    await client.query(tables.length ? `CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${list} ${options}` : `CREATE PUBLICATION ${quoteIdent(name)} ${options}`);
    return;
  }
  if (!rows[0].pubviaroot) await client.query(`ALTER PUBLICATION ${quoteIdent(name)} SET (publish_via_partition_root = true)`);
  const current = await client.query<{ schemaname: string; tablename: string }>('SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1', [name]);
  const have = new Set(current.rows.map((r) => `${r.schemaname}.${r.tablename}`));
  const want = new Set(tables.map((t) => `${t.schema}.${t.name}`));
  if (have.size === want.size && [...want].every((t) => have.has(t))) return;
  if (tables.length) await client.query(`ALTER PUBLICATION ${quoteIdent(name)} SET TABLE ${list}`);
  else for (const t of current.rows) await client.query(`ALTER PUBLICATION ${quoteIdent(name)} DROP TABLE ${quoteIdent(t.schemaname)}.${quoteIdent(t.tablename)}`);
}

/** Creates the logical slot if absent; returns its confirmed LSN text (null when just created and unconfirmed). */
export async function ensureSlot(client: pg.ClientBase, slotName: string): Promise<string | null> {
  return withPrivilegeAdvice(client, () => findOrCreateSlot(client, slotName), privilegeAdvice.slot(slotName));
}

async function findOrCreateSlot(client: pg.ClientBase, slotName: string): Promise<string | null> {
  const existing = await client.query<{ plugin: string; confirmed: string | null; database: string; current: string }>(
    'SELECT plugin, confirmed_flush_lsn::text AS confirmed, database, current_database() AS current FROM pg_replication_slots WHERE slot_name = $1',
    [slotName],
  );
  const slot = existing.rows[0];
  if (slot) {
    if (slot.plugin !== 'pgoutput') throw new SourceProblemError([`replication slot ${slotName} uses plugin ${slot.plugin}; eventide needs pgoutput (pick another --slot)`]);
    if (slot.database !== slot.current) throw new SourceProblemError([`replication slot ${slotName} belongs to database ${slot.database}, not ${slot.current}`]);
    return slot.confirmed;
  }
  try {
    const created = await client.query<{ lsn: string }>("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", [slotName]);
    return created.rows[0]?.lsn ?? null;
  } catch (error) {
    // Two dispatchers starting at once: the other one created it.
    if ((error as { code?: string }).code === '42710') return findOrCreateSlot(client, slotName);
    throw error;
  }
}
