import { AppsV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type KubernetesObject, KubernetesObjectApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/v1alpha1/index.js';
import { apiStatusCode, KubeApiError } from './errors.js';
import { FIELD_MANAGER } from './labels.js';
import { firstDifference, shortHash } from './semantic.js';

/** The API clients the operator uses, made once from one KubeConfig. */
export interface KubeClients {
  /**
   * Aborted when this replica must stop writing (it lost the Lease): every write below checks it
   * first, so a reconcile that outlives its leadership cannot write over the new leader's work.
   */
  signal?: AbortSignal;
  config: KubeConfig;
  objects: KubernetesObjectApi;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  coordination: CoordinationV1Api;
}

export function makeClients(config: KubeConfig): KubeClients {
  return {
    config,
    objects: KubernetesObjectApi.makeApiClient(config),
    core: config.makeApiClient(CoreV1Api),
    apps: config.makeApiClient(AppsV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    coordination: config.makeApiClient(CoordinationV1Api),
  };
}

/** Plural resource names of eventide's kinds, for the custom objects API. */
/** The clients for one reconcile: the same connections, with its signal guarding every write. */
export function withSignal(clients: KubeClients, signal: AbortSignal): KubeClients {
  return { ...clients, signal };
}

export const PLURALS = { Function: 'functions', EventTrigger: 'eventtriggers', Backfill: 'backfills' } as const;
export type EventideKind = keyof typeof PLURALS;

function describe(obj: KubernetesObject): string {
  return `${obj.kind} ${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

/**
 * Server-side applies `desired` as the operator's field manager, forcing ownership of conflicting
 * fields: whatever the operator applies wins, fields others own and it does not apply are left alone,
 * and fields it applied before but no longer applies are removed. Returns the object as stored.
 */
export async function applyObject<T extends KubernetesObject>(clients: KubeClients, desired: T): Promise<T> {
  clients.signal?.throwIfAborted();
  try {
    return await clients.objects.patch(desired, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
  } catch (error) {
    throw new KubeApiError(`apply ${describe(desired)}`, apiStatusCode(error), { cause: error });
  }
}

/**
 * Applies the status subresource of an eventide resource. `resourceVersion` makes the write
 * conditional: a status computed from a stale read fails with 409 instead of overwriting a newer one.
 */
export async function applyStatus(clients: KubeClients, kind: EventideKind, meta: { name: string; namespace: string; resourceVersion?: string }, status: object): Promise<void> {
  clients.signal?.throwIfAborted();
  const body = {
    apiVersion: `${GROUP}/${VERSION}`,
    kind,
    metadata: { name: meta.name, namespace: meta.namespace, ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}) },
    status,
  };
  try {
    await clients.custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: meta.namespace, plural: PLURALS[kind], name: meta.name, body, fieldManager: FIELD_MANAGER, force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  } catch (error) {
    throw new KubeApiError(`apply status of ${kind} ${meta.namespace}/${meta.name}`, apiStatusCode(error), { cause: error });
  }
}

/**
 * Sets `metadata.finalizers` with a JSON merge patch conditional on `resourceVersion`, as
 * controller-runtime's finalizer helpers do: finalizers belong to several controllers, so a stale
 * list must fail (409) rather than drop someone else's entry.
 */
export async function patchFinalizers(clients: KubeClients, kind: EventideKind, meta: { name: string; namespace: string; resourceVersion?: string }, finalizers: string[]): Promise<void> {
  clients.signal?.throwIfAborted();
  try {
    await clients.custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace: meta.namespace,
        plural: PLURALS[kind],
        name: meta.name,
        body: { metadata: { finalizers, ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}) } },
        fieldManager: FIELD_MANAGER,
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  } catch (error) {
    throw new KubeApiError(`set finalizers of ${kind} ${meta.namespace}/${meta.name}`, apiStatusCode(error), { cause: error });
  }
}

/** Deletes an object if it still is the one with `uid` (a precondition); absent counts as deleted. */
export async function deleteObject(clients: KubeClients, obj: KubernetesObject & { metadata: { name: string; namespace: string } }, uid?: string): Promise<void> {
  clients.signal?.throwIfAborted();
  try {
    await clients.objects.delete(obj, undefined, undefined, undefined, undefined, 'Background', uid ? { preconditions: { uid } } : undefined);
  } catch (error) {
    if (apiStatusCode(error) === 404) return;
    throw new KubeApiError(`delete ${describe(obj)}`, apiStatusCode(error), { cause: error });
  }
}

/** Annotation carrying a hash of what the operator last applied; a changed desired state changes it. */
export const APPLIED_HASH_ANNOTATION = 'eventide.dev/applied-hash';

/** `desired` with the applied-hash annotation set over its own content. */
export function withAppliedHash<T extends KubernetesObject>(desired: T): T {
  const hash = shortHash(desired, 16);
  return { ...desired, metadata: { ...desired.metadata, annotations: { ...desired.metadata?.annotations, [APPLIED_HASH_ANNOTATION]: hash } } };
}

/** What `applyIfChanged` did. */
export interface ApplyResult<T> {
  object: T;
  /** Why it applied: `created`, or the first field the live object differed in. Absent when skipped. */
  applied?: string;
}

/**
 * Applies `desired` unless the cached `live` object already holds every field of it (including the
 * applied-hash, so a field dropped from the desired state still triggers an apply that removes it).
 * Skipping no-op applies halves the API traffic of steady-state reconciles; drift always re-applies.
 */
export async function applyIfChanged<T extends KubernetesObject>(clients: KubeClients, desired: T, live: T | undefined): Promise<ApplyResult<T>> {
  const stamped = withAppliedHash(desired);
  // Items of a list carry no apiVersion/kind; the cache holds both listed and watched objects.
  const difference = live ? firstDifference({ ...stamped, apiVersion: undefined, kind: undefined }, live) : 'created';
  if (live && difference === undefined) return { object: live };
  return { object: await applyObject(clients, stamped), applied: difference ?? 'created' };
}
