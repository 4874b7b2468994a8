import type { V1Deployment } from '@kubernetes/client-node';
import type { EventTriggerResource, EventTriggerStatusT } from '../../api/v1alpha1/index.js';
import { type ConditionManager, ConditionSet, type ConditionState, type Problem, REASON_APPLY_FAILED, REASON_INVALID_SPEC } from '../conditions.js';
import { deploymentReadiness } from '../deploymentReadiness.js';

export const TriggerConditionFunctionResolved = 'FunctionResolved';
export const TriggerConditionSourceReady = 'SourceReady';
export const TriggerConditionDispatcherReady = 'DispatcherReady';
/** The dispatcher says it serves this trigger at its current generation (from its /state). */
export const TriggerConditionServing = 'Serving';
/** The source's slot holds back more WAL than the operator's threshold; informational, Ready does not depend on it. */
export const TriggerConditionLagging = 'Lagging';
export type TriggerConditionType =
  | typeof TriggerConditionFunctionResolved
  | typeof TriggerConditionSourceReady
  | typeof TriggerConditionDispatcherReady
  | typeof TriggerConditionServing
  | typeof TriggerConditionLagging;

/**
 * An EventTrigger is Ready when its target resolves, its source's Secrets exist, its dispatcher is
 * available, and that dispatcher reports serving this trigger's current generation.
 */
export const triggerConditionSet = new ConditionSet<TriggerConditionType>(
  'Ready',
  [TriggerConditionFunctionResolved, TriggerConditionSourceReady, TriggerConditionDispatcherReady, TriggerConditionServing],
  [TriggerConditionLagging],
);

/** SourceReady=False reason while dropping the slot on deletion fails (retried with backoff). */
export const REASON_SLOT_DROP_FAILED = 'SlotDropFailed';

/**
 * The next status of an EventTrigger. Reconcilers call the `markX` / `propagateX` helpers and read
 * `status()`; they never edit `conditions[]` themselves.
 */
export class EventTriggerLifecycle {
  private readonly conditions: ConditionManager<TriggerConditionType>;
  private readonly next: EventTriggerStatusT;

  constructor(
    private readonly trigger: Pick<EventTriggerResource, 'metadata' | 'status'>,
    now: string,
  ) {
    const generation = trigger.metadata.generation;
    this.conditions = triggerConditionSet.manage(trigger.status?.conditions, { now, ...(generation !== undefined ? { generation } : {}) });
    const previous = trigger.status ?? {};
    this.next = {
      ...(previous.sinkUrl !== undefined ? { sinkUrl: previous.sinkUrl } : {}),
      ...(previous.dispatcher !== undefined ? { dispatcher: previous.dispatcher } : {}),
    };
  }

  /** The events' destination is known: a Function's Service or a sink URL. */
  markTargetResolved(url: string, viaFunction: boolean): void {
    this.conditions.markTrue(TriggerConditionFunctionResolved, viaFunction ? 'FunctionFound' : 'SinkURL', `events are delivered to ${url}`);
    this.next.sinkUrl = url;
  }

  markFunctionNotResolved(problem: Problem): void {
    this.conditions.markFalse(TriggerConditionFunctionResolved, problem.reason, problem.message);
  }

  markSourceReady(message: string): void {
    this.conditions.markTrue(TriggerConditionSourceReady, 'SourceReady', message);
  }

  markSourceNotReady(problem: Problem): void {
    this.conditions.markFalse(TriggerConditionSourceReady, problem.reason, problem.message);
  }

  /** The slot could not be dropped on deletion; the finalizer stays until it can. */
  markSlotDropFailed(message: string): void {
    this.conditions.markFalse(TriggerConditionSourceReady, REASON_SLOT_DROP_FAILED, message);
  }

  /** Carries the availability of the source's dispatcher Deployment into DispatcherReady. */
  propagateDispatcher(name: string, deployment: V1Deployment | undefined): void {
    this.next.dispatcher = name;
    this.conditions.mark(TriggerConditionDispatcherReady, deploymentReadiness(deployment));
  }

  /** What the dispatcher reports of this trigger (see serving.ts). */
  markServing(state: ConditionState): void {
    this.conditions.mark(TriggerConditionServing, state);
  }

  markLagging(state: ConditionState | undefined): void {
    if (state) this.conditions.mark(TriggerConditionLagging, state);
  }

  markDispatcherApplyFailed(message: string): void {
    this.conditions.markFalse(TriggerConditionDispatcherReady, REASON_APPLY_FAILED, message);
  }

  /** Ready=False, InvalidSpec: the spec passed the CRD schema but cannot be served (a bad filter, say). */
  markInvalidSpec(message: string): void {
    this.conditions.markHappyFalse(REASON_INVALID_SPEC, message);
  }

  /** The complete status to write, with observedGeneration set. */
  status(): EventTriggerStatusT {
    const generation = this.trigger.metadata.generation;
    return {
      ...this.next,
      conditions: this.conditions.conditions(),
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
    };
  }
}
