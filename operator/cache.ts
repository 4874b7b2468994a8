import type { KubernetesObject, V1ObjectMeta } from '@kubernetes/client-node';
import type { BackfillStatusT, EventTriggerStatusT, FunctionStatusT } from '../api/v1alpha1/index.js';

/** An eventide resource as the API server returns it: defaults applied by the CRD, not yet parsed. */
export interface StoredResource<Status> extends KubernetesObject {
  metadata?: V1ObjectMeta;
  spec?: unknown;
  status?: Status;
}

export type StoredFunction = StoredResource<FunctionStatusT>;
export type StoredEventTrigger = StoredResource<EventTriggerStatusT>;
export type StoredBackfill = StoredResource<BackfillStatusT>;

/** Read access to an informer's cache. */
export interface Cache<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): readonly T[];
}

/** Splits a `namespace/name` queue key. */
export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  if (slash < 0) throw new Error(`queue key "${key}" is not namespace/name`);
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** The queue key of a stored object. */
export function keyOf(obj: KubernetesObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}
