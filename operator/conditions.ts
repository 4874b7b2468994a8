import type { ConditionT } from '../api/v1alpha1/index.js';

export type ConditionStatus = ConditionT['status'];

/** What a named check reports: why something is not (yet) as it should be. */
export interface Problem {
  reason: string;
  message: string;
}

/** A condition's state as a check computes it, before timestamps are attached. */
export interface ConditionState extends Problem {
  status: ConditionStatus;
}

/** Reason of the happy condition when every dependent is True. */
export const READY_REASON = 'Ready';
/** Ready=False reason for a spec that passed the CRD schema but cannot be acted on; not retried. */
export const REASON_INVALID_SPEC = 'InvalidSpec';
/** Reason of a dependent condition when the API server refused to store a child object. */
export const REASON_APPLY_FAILED = 'ApplyFailed';

/** Kubernetes condition timestamps are RFC 3339 with second precision. */
export function conditionTime(date: Date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A kind's set of conditions, as Knative's `apis.ConditionSet`: `dependents` each report one aspect and
 * are rolled up into the `happy` condition (Ready): True when all are True, False when any is False,
 * Unknown otherwise, carrying the reason and message of the first dependent that is not True.
 */
export class ConditionSet<T extends string> {
  constructor(
    readonly happy: string,
    readonly dependents: readonly T[],
    /** Conditions reported beside the others that do not decide the happy one (Knative's severity Info), e.g. Lagging. */
    readonly informational: readonly T[] = [],
  ) {}

  /** Starts a round of marking from the conditions the resource carries now. */
  manage(previous: readonly ConditionT[] | undefined, context: { generation?: number; now: string }): ConditionManager<T> {
    return new ConditionManager(this, previous ?? [], context);
  }
}

/**
 * Computes the next `conditions[]` from the previous ones. `lastTransitionTime` is kept unless the
 * condition's status flips (the `meta.SetStatusCondition` rule), so rewriting the same state is a no-op.
 * Dependents never marked in this round start as Unknown.
 */
export class ConditionManager<T extends string> {
  private readonly states = new Map<string, ConditionState>();
  private happyOverride: ConditionState | undefined;

  constructor(
    private readonly set: ConditionSet<T>,
    private readonly previous: readonly ConditionT[],
    private readonly context: { generation?: number; now: string },
  ) {}

  markTrue(type: T, reason: string, message = ''): void {
    this.states.set(type, { status: 'True', reason, message });
  }

  markFalse(type: T, reason: string, message: string): void {
    this.states.set(type, { status: 'False', reason, message });
  }

  markUnknown(type: T, reason: string, message: string): void {
    this.states.set(type, { status: 'Unknown', reason, message });
  }

  /** Sets a dependent from a check's result. */
  mark(type: T, state: ConditionState): void {
    this.states.set(type, { ...state });
  }

  /** Sets the happy condition False regardless of the dependents (a spec that cannot be acted on). */
  markHappyFalse(reason: string, message: string): void {
    this.happyOverride = { status: 'False', reason, message };
  }

  /** The state a dependent was given in this round, or carried from before. */
  get(type: T): ConditionState | undefined {
    return this.states.get(type) ?? this.previousState(type);
  }

  /** The happy condition's state after the roll-up. */
  happyState(): ConditionState {
    if (this.happyOverride) return this.happyOverride;
    const states = this.set.dependents.map((type) => this.get(type) ?? initializing(type));
    const notTrue = states.find((s) => s.status === 'False') ?? states.find((s) => s.status !== 'True');
    if (!notTrue) return { status: 'True', reason: READY_REASON, message: '' };
    return { status: notTrue.status, reason: notTrue.reason, message: notTrue.message };
  }

  /** The full, ordered condition list: the happy condition first, then the dependents in set order. */
  conditions(): ConditionT[] {
    const out: ConditionT[] = [this.stamp(this.set.happy, this.happyState())];
    for (const type of this.set.dependents) out.push(this.stamp(type, this.get(type) ?? initializing(type)));
    for (const type of this.set.informational) {
      const state = this.get(type);
      if (state) out.push(this.stamp(type, state));
    }
    return out;
  }

  private previousState(type: string): ConditionState | undefined {
    const found = this.previous.find((c) => c.type === type);
    return found && { status: found.status, reason: found.reason, message: found.message };
  }

  private stamp(type: string, state: ConditionState): ConditionT {
    return stampCondition(this.previous, type, state, this.context);
  }
}

/**
 * A condition with its timestamps: `lastTransitionTime` carried from `previous` unless the status
 * flips, so rewriting the same state is a no-op. For kinds whose conditions are not a roll-up.
 */
export function stampCondition(previous: readonly ConditionT[], type: string, state: ConditionState, context: { generation?: number; now: string }): ConditionT {
  const before = previous.find((c) => c.type === type);
  const lastTransitionTime = before && before.status === state.status ? before.lastTransitionTime : context.now;
  return {
    type,
    status: state.status,
    reason: state.reason,
    message: state.message,
    lastTransitionTime,
    ...(context.generation !== undefined ? { observedGeneration: context.generation } : {}),
  };
}

function initializing(type: string): ConditionState {
  return { status: 'Unknown', reason: 'Initializing', message: `${type} has not been checked yet` };
}
