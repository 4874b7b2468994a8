import type { V1Deployment, V1Secret } from '@kubernetes/client-node';
import type { EventTriggerResource } from '../../api/v1alpha1/index.js';
import type { Problem } from '../conditions.js';
import { functionUrl } from '../labels.js';
import { checkFunction, checkSecrets, checkSlot } from './checks.js';
import { type DispatcherObjects, type DispatcherSettings, desiredDispatcherObjects } from './dispatcher.js';
import type { EventTriggerLifecycle } from './lifecycle.js';
import { chooseSlot, dispatcherName, type SourceRef, sourceOf } from './source.js';

/** What deciding an EventTrigger looks at (all read from caches beforehand). */
export interface TriggerInput {
  trigger: EventTriggerResource;
  /** Every valid, not-deleting trigger of the same source, this one included. */
  members: readonly EventTriggerResource[];
  functionExists(name: string): boolean;
  secret(name: string): V1Secret | undefined;
  settings: DispatcherSettings;
}

/** What the trigger should lead to. */
export interface TriggerDecision {
  source: SourceRef;
  dispatcherName: string;
  dispatcher: DispatcherObjects;
  /** Where events go. */
  target: { url: string; viaFunction: boolean };
  functionProblem?: Problem;
  sourceProblem?: Problem;
}

/**
 * Pure: the trigger's dispatcher objects and the results of its checks. Missing Functions or Secrets
 * do not stop the dispatcher from being applied: its pod starts once the Secret exists, and deliveries to
 * a missing Function are retried and dead-lettered, never dropped.
 */
export function decideTrigger(input: TriggerInput): TriggerDecision {
  const { trigger, members } = input;
  const source = sourceOf(trigger);
  const namespace = trigger.metadata.namespace ?? 'default';
  const fnRef = trigger.spec.function;
  const functionProblem = checkFunction(trigger, input.functionExists);
  const sourceProblem = checkSecrets(trigger, input.secret) ?? checkSlot(trigger, chooseSlot(source, members));
  return {
    source,
    dispatcherName: dispatcherName(source),
    dispatcher: desiredDispatcherObjects(source, members, input.settings),
    target: fnRef ? { url: functionUrl(fnRef.name, namespace), viaFunction: true } : { url: trigger.spec.sink?.url ?? '', viaFunction: false },
    ...(functionProblem ? { functionProblem } : {}),
    ...(sourceProblem ? { sourceProblem } : {}),
  };
}

/** Records a decision and the dispatcher's live state in the trigger's lifecycle. */
export function markDecision(lifecycle: EventTriggerLifecycle, decision: TriggerDecision, dispatcher: V1Deployment | undefined): void {
  if (decision.functionProblem) lifecycle.markFunctionNotResolved(decision.functionProblem);
  else lifecycle.markTargetResolved(decision.target.url, decision.target.viaFunction);
  if (decision.sourceProblem) lifecycle.markSourceNotReady(decision.sourceProblem);
  else lifecycle.markSourceReady(`connection Secret "${decision.source.secretName}" has key "${decision.source.key}"`);
  lifecycle.propagateDispatcher(decision.dispatcherName, dispatcher);
}
