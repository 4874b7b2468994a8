/**
 * Why a dispatcher does not serve a trigger. The reasons are stable CamelCase words: the dispatcher
 * reports them on /state, the operator copies them into the EventTrigger's Ready condition, and
 * `kubectl get et` shows them, so tools and people can rely on them.
 */
export const SET_ASIDE_REASONS = [
  /** The manifest fails validation (a field the schema refuses). */
  'InvalidSpec',
  /** spec.filter does not compile. */
  'InvalidFilter',
  /** The trigger's function has no URL (locally: no --function-url). */
  'UnresolvedTarget',
  /** The signing secret's environment variable is not set. */
  'SigningSecretMissing',
  /** The trigger names a replication slot other than the one its source's dispatcher reads. */
  'SlotConflict',
  'TableNotFound',
  /** spec.columns or spec.filter names a column the table does not have (dropped or renamed). */
  'ColumnNotFound',
  /** The table (or a partition) has no primary key nor replica identity: Postgres would refuse its updates and deletes once published. */
  'NoReplicaIdentity',
  /** The dispatcher's role may not add the table to the publication. */
  'TableForbidden',
] as const;

export type SetAsideReason = (typeof SET_ASIDE_REASONS)[number];

/** A trigger the dispatcher cannot serve now, with what to do about it. */
export interface TriggerProblem {
  reason: SetAsideReason;
  message: string;
}

/** Joins several problems of one trigger: the first one's reason, every message. */
export function combineProblems(problems: readonly TriggerProblem[]): TriggerProblem | undefined {
  const [first] = problems;
  if (!first) return undefined;
  return { reason: first.reason, message: problems.map((p) => p.message).join('; ') };
}
