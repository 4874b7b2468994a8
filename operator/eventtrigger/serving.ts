import type { DispatcherStateReport } from '../../common/dispatcherState.js';
import type { ConditionState } from '../conditions.js';

/** What the operator last read from a dispatcher's /state, or why it could not. */
export type DispatcherReading = { report: DispatcherStateReport; at: number } | { error: string; at: number };

export const REASON_SERVING = 'Serving';
export const REASON_SUSPENDED = 'Suspended';
export const REASON_NOT_REPORTING = 'DispatcherNotReporting';
export const REASON_NOT_LOADED = 'NotYetLoaded';
export const REASON_GENERATION_PENDING = 'GenerationPending';
export const REASON_FUNCTION_UNAVAILABLE = 'FunctionUnavailable';

/**
 * The Serving condition of a trigger from its dispatcher's own account. Pure. True only when the
 * dispatcher serves (or holds, suspended) this trigger at its current generation; a set-aside trigger
 * is False with the dispatcher's reason and message; anything not yet known is Unknown.
 */
export function servingCondition(reading: DispatcherReading | undefined, triggerKey: string, generation: number | undefined, functionKey?: string): ConditionState {
  if (!reading) return { status: 'Unknown', reason: REASON_NOT_REPORTING, message: 'the dispatcher has not reported its state yet' };
  if ('error' in reading) return { status: 'Unknown', reason: REASON_NOT_REPORTING, message: `cannot read the dispatcher's state: ${reading.error}` };
  const trigger = reading.report.triggers[triggerKey];
  if (!trigger) return { status: 'Unknown', reason: REASON_NOT_LOADED, message: 'the dispatcher has not loaded this trigger yet (its configuration reaches the pod within a minute)' };
  if (generation !== undefined && trigger.generation !== undefined && trigger.generation < generation) {
    return { status: 'Unknown', reason: REASON_GENERATION_PENDING, message: `the dispatcher still serves generation ${trigger.generation}, not ${generation}` };
  }
  switch (trigger.state) {
    case 'serving': {
      const fn = functionKey === undefined ? undefined : reading.report.functions[functionKey];
      if (fn?.activationTimedOut) {
        return {
          status: 'False',
          reason: REASON_FUNCTION_UNAVAILABLE,
          message: `function ${functionKey} has had no ready pod since ${fn.unavailableSince ?? 'its activation timeout'} (longer than its spec.scale.activationTimeout): events are retried and dead-lettered as usual`,
        };
      }
      return { status: 'True', reason: REASON_SERVING, message: "the dispatcher delivers this trigger's events" };
    }
    case 'suspended':
      return { status: 'True', reason: REASON_SUSPENDED, message: 'suspended: matching changes wait in the backlog (eventide.backlog) until spec.suspend is false' };
    case 'waiting':
    case 'set-aside':
      return { status: 'False', reason: trigger.reason ?? 'SetAside', message: trigger.message ?? 'the dispatcher does not serve this trigger' };
  }
}

/** Lagging: whether the slot holds back more WAL than `thresholdBytes`. Pure; undefined when not known. */
export function laggingCondition(reading: DispatcherReading | undefined, thresholdBytes: number): ConditionState | undefined {
  if (!reading || 'error' in reading) return undefined;
  const { slot, lagBytes } = reading.report.source;
  const limit = formatBytes(thresholdBytes);
  // The message names the threshold, not the live figure: a status that changed every poll would be rewritten every poll.
  return lagBytes > thresholdBytes
    ? { status: 'True', reason: 'SlotLagging', message: `replication slot "${slot}" holds back more than ${limit} of WAL: the dispatcher is behind; see eventide_dispatcher_replication_lag_bytes` }
    : { status: 'False', reason: 'WithinThreshold', message: `replication slot "${slot}" holds back less than ${limit} of WAL` };
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}
