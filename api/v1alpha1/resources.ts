import type { V1ObjectMeta } from '@kubernetes/client-node';
import type { BackfillSpecT, BackfillStatusT, EventTriggerSpecT, EventTriggerStatusT, FunctionSpecT, FunctionStatusT } from './schema.js';

/** Metadata fields eventide reads; the API server fills the rest. */
export type ObjectMeta = V1ObjectMeta & { name: string; namespace?: string };

/** A `Function` resource with defaults applied. */
export interface FunctionResource {
  apiVersion: 'eventide.dev/v1alpha1';
  kind: 'Function';
  metadata: ObjectMeta;
  spec: FunctionSpecT;
  status?: FunctionStatusT;
}

/** An `EventTrigger` resource with defaults applied. */
export interface EventTriggerResource {
  apiVersion: 'eventide.dev/v1alpha1';
  kind: 'EventTrigger';
  metadata: ObjectMeta;
  spec: EventTriggerSpecT;
  status?: EventTriggerStatusT;
}

/** A `Backfill` resource with defaults applied. */
export interface BackfillResource {
  apiVersion: 'eventide.dev/v1alpha1';
  kind: 'Backfill';
  metadata: ObjectMeta;
  spec: BackfillSpecT;
  status?: BackfillStatusT;
}

export type EventideResource = FunctionResource | EventTriggerResource | BackfillResource;

/** `namespace/name`, the key everything about a resource is filed under. */
export function resourceKey(meta: { namespace?: string; name: string }): string {
  return `${meta.namespace ?? 'default'}/${meta.name}`;
}
