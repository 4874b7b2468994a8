import type { BackfillPhaseT, BackfillStatusT, ConditionT } from '../../api/v1alpha1/index.js';
import type { BackfillStateReport } from '../../common/dispatcherState.js';
import { type ConditionState, type Problem, REASON_INVALID_SPEC, stampCondition } from '../conditions.js';
import type { DispatcherReading } from '../eventtrigger/serving.js';

/** The trigger and its dispatcher have the Backfill: the dispatcher reports it. */
export const BackfillConditionAccepted = 'Accepted';
/** Every row was read and settled (phase Complete). Like a Job's, so `kubectl wait --for=condition=Complete` works. */
export const BackfillConditionComplete = 'Complete';

export const REASON_ACCEPTED = 'Accepted';
export const REASON_TRIGGER_NOT_FOUND = 'TriggerNotFound';
export const REASON_TRIGGER_INVALID = 'TriggerInvalid';
export const REASON_DISPATCHER_PENDING = 'DispatcherPending';

/** Where the Backfill's rows would go: its trigger's dispatcher, or why there is none. */
export type TriggerResolution = { dispatcher: string } | { problem: Problem };

/** What a Backfill's status is decided from, all read beforehand. */
export interface BackfillStatusInput {
  /** `namespace/name`: the key of its entry in the dispatcher's /state. */
  key: string;
  uid: string;
  generation?: number;
  previous?: BackfillStatusT;
  /** RFC 3339, second precision. */
  now: string;
  /** Why the spec cannot be run (it passed the CRD schema, not local validation: a filter that is not CEL). */
  invalidSpec?: string;
  /** The trigger, unless the spec is invalid. */
  trigger?: TriggerResolution;
  /** The last reading of the trigger's dispatcher, if there is one. */
  reading?: DispatcherReading;
}

/** The phases that end a backfill: a dispatcher that stops reporting one does not make it pending again. */
const TERMINAL: ReadonlySet<BackfillPhaseT> = new Set(['Complete', 'Failed', 'Cancelled']);

/** The dispatcher's entry for this Backfill, only if it is about this very object (same uid). */
export function trustedReport(reading: DispatcherReading | undefined, key: string, uid: string): BackfillStateReport | undefined {
  if (!reading || 'error' in reading) return undefined;
  const entry = reading.report.backfills?.[key];
  return entry?.uid === uid ? entry : undefined;
}

/** rowsRead of rowsEstimate as a whole percentage, rounded down and capped at 100%; 100% once Complete. */
export function progressOf(phase: BackfillPhaseT | undefined, rowsRead: number | undefined, rowsEstimate: number | undefined): string | undefined {
  if (phase === 'Complete') return '100%';
  if (rowsRead === undefined || rowsEstimate === undefined || rowsEstimate <= 0) return undefined;
  return `${Math.min(100, Math.floor((rowsRead * 100) / rowsEstimate))}%`;
}

/** Why the dispatcher has no (trustworthy) entry for the Backfill yet. */
function dispatcherPending(dispatcher: string, reading: DispatcherReading | undefined, key: string): ConditionState {
  const pending = (message: string): ConditionState => ({ status: 'Unknown', reason: REASON_DISPATCHER_PENDING, message });
  if (!reading) return pending(`waiting for dispatcher ${dispatcher} to report this backfill`);
  if ('error' in reading) return pending(`cannot read the state of dispatcher ${dispatcher}: ${reading.error}`);
  const entry = reading.report.backfills?.[key];
  if (entry) return pending(`dispatcher ${dispatcher} reports an older Backfill of this name; waiting for it to load this one`);
  return pending(`dispatcher ${dispatcher} has not loaded this backfill yet (its configuration reaches the pod within a minute)`);
}

/** The fields the dispatcher reports, as status fields. */
type Reported = Pick<BackfillStatusT, 'phase' | 'rowsRead' | 'rowsSent' | 'rowsEstimate' | 'cursor' | 'startTime' | 'completionTime' | 'message'>;

function fromReport(report: BackfillStateReport): Reported {
  return {
    phase: report.phase,
    rowsRead: report.rowsRead,
    rowsSent: report.rowsSent,
    ...(report.rowsEstimate !== undefined ? { rowsEstimate: report.rowsEstimate } : {}),
    ...(report.cursor !== undefined ? { cursor: report.cursor } : {}),
    ...(report.startTime !== undefined ? { startTime: report.startTime } : {}),
    ...(report.completionTime !== undefined ? { completionTime: report.completionTime } : {}),
    ...(report.message !== undefined ? { message: report.message } : {}),
  };
}

/** What an earlier report left in status (nothing of the operator's own). Unset fields stay unset: status is compared and written as JSON. */
function carried({ phase, rowsRead, rowsSent, rowsEstimate, cursor, startTime, completionTime, message }: BackfillStatusT): Reported {
  return { phase, rowsRead, rowsSent, rowsEstimate, cursor, startTime, completionTime, message };
}

/** Complete from the phase: True once Complete, otherwise False with the phase as the reason. */
function completeCondition(fields: Reported): ConditionState {
  const phase = fields.phase ?? 'Pending';
  if (phase === 'Complete') {
    return { status: 'True', reason: 'Complete', message: fields.message ?? `every row was read and settled (${fields.rowsRead ?? 0} read, ${fields.rowsSent ?? 0} sent)` };
  }
  const fallback: Record<Exclude<BackfillPhaseT, 'Complete'>, string> = {
    Pending: 'not started yet',
    Running: 'reading the table',
    Failed: 'the backfill failed',
    Cancelled: 'the backfill was cancelled',
  };
  return { status: 'False', reason: phase, message: fields.message ?? fallback[phase] };
}

/**
 * A Backfill's status, pure. The dispatcher runs it and reports it on /state; a report counts only
 * when its uid is this Backfill's (an older object of the same name is not this one). With such a
 * report the status mirrors it. Without one the status keeps what the last report said (a dispatcher
 * restarting or unreachable for a moment does not erase the progress), except that a backfill that had
 * not ended is Pending again when its trigger is gone or its spec is invalid (the dispatcher cancels a
 * Backfill that leaves its configuration). Never reported: Pending, and the message says what it waits for.
 */
export function decideBackfillStatus(input: BackfillStatusInput): BackfillStatusT {
  const previous = input.previous ?? {};
  const dispatcher = input.invalidSpec === undefined && input.trigger && 'dispatcher' in input.trigger ? input.trigger.dispatcher : undefined;
  const report = dispatcher !== undefined ? trustedReport(input.reading, input.key, input.uid) : undefined;

  let accepted: ConditionState;
  let fields: Reported;
  if (report && dispatcher !== undefined) {
    accepted = { status: 'True', reason: REASON_ACCEPTED, message: `dispatcher ${dispatcher} runs this backfill` };
    fields = fromReport(report);
  } else {
    if (input.invalidSpec !== undefined) accepted = { status: 'False', reason: REASON_INVALID_SPEC, message: input.invalidSpec };
    else if (dispatcher === undefined) accepted = { status: 'False', ...problemOf(input.trigger) };
    else accepted = dispatcherPending(dispatcher, input.reading, input.key);
    fields = carried(previous);
    // A phase reported before stands while the trigger's dispatcher may still run it; without one, only an ended run does.
    const keep = fields.phase !== undefined && fields.phase !== 'Pending' && (dispatcher !== undefined || TERMINAL.has(fields.phase));
    if (!keep) fields = { ...fields, phase: 'Pending', message: accepted.message };
  }

  const context = { now: input.now, ...(input.generation !== undefined ? { generation: input.generation } : {}) };
  const before = previous.conditions ?? [];
  const conditions: ConditionT[] = [stampCondition(before, BackfillConditionAccepted, accepted, context), stampCondition(before, BackfillConditionComplete, completeCondition(fields), context)];
  const progress = progressOf(fields.phase, fields.rowsRead, fields.rowsEstimate);
  return {
    ...fields,
    ...(progress !== undefined ? { progress } : {}),
    ...(dispatcher !== undefined ? { dispatcher } : {}),
    conditions,
    ...(input.generation !== undefined ? { observedGeneration: input.generation } : {}),
  };
}

function problemOf(trigger: TriggerResolution | undefined): Problem {
  return trigger && 'problem' in trigger ? trigger.problem : { reason: REASON_TRIGGER_NOT_FOUND, message: 'the trigger is not known' };
}

/** An Event worth recording for a status change: the backfill completed, or failed. */
export interface BackfillEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** The Event a move from `previous` to `next` deserves, if any; pure. Only the move into the phase counts. */
export function backfillEvent(previous: BackfillPhaseT | undefined, next: BackfillStatusT): BackfillEvent | undefined {
  if (next.phase === previous) return undefined;
  if (next.phase === 'Complete') {
    return { type: 'Normal', reason: 'Completed', message: `read ${next.rowsRead ?? 0} rows, sent ${next.rowsSent ?? 0} as events` };
  }
  if (next.phase === 'Failed') {
    return { type: 'Warning', reason: 'Failed', message: next.message ?? `failed after reading ${next.rowsRead ?? 0} rows` };
  }
  return undefined;
}
