import type { SetAsideReason } from './triggerProblem.js';

/** Problems the database can fix without new manifests: a table created, a column added, a key or a grant given. */
const HEALED_BY_THE_DATABASE: ReadonlySet<SetAsideReason> = new Set(['TableNotFound', 'ColumnNotFound', 'NoReplicaIdentity', 'TableForbidden']);

/** Whether a set-aside trigger is worth looking at again without a change of its manifest. */
export function problemsHealByThemselves(reason: SetAsideReason): boolean {
  return HEALED_BY_THE_DATABASE.has(reason);
}

const FIRST_RECHECK_MS = 1_000;
const MAX_RECHECK_MS = 30_000;
/** With nothing set aside, tables are still looked at this often: a table dropped or renamed sends nothing down the stream. */
export const DRIFT_CHECK_MS = 10_000;

/**
 * When to look again, level-based: while the same triggers stay set aside, 1 s, 2 s, 4 s ... up to
 * 30 s, so creating a missing table starts its trigger soon without querying a broken source hard.
 * Pure.
 */
export function recheckDelayMs(attempt: number, anySetAside = true): number {
  if (!anySetAside) return DRIFT_CHECK_MS;
  return Math.min(MAX_RECHECK_MS, FIRST_RECHECK_MS * 2 ** Math.min(attempt, 16));
}
