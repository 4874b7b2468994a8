import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import type { ObjectMeta } from '../api/v1alpha1/index.js';

/** The fields of a resource an owner reference is built from. */
export interface Owner {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
}

/** An owner reference to `owner`; `controller` marks the one owner that manages the object. */
export function ownerReference(owner: Owner, options: { controller: boolean }): V1OwnerReference {
  const uid = owner.metadata.uid;
  if (!uid) throw new Error(`${owner.kind} ${owner.metadata.namespace}/${owner.metadata.name} has no uid: it was not read from the API server`);
  return {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.metadata.name,
    uid,
    ...(options.controller ? { controller: true, blockOwnerDeletion: true } : {}),
  };
}

/** The owner reference of kind `kind` marked as controller, if any. */
export function controllerOf(meta: V1ObjectMeta | undefined, kind: string): V1OwnerReference | undefined {
  return meta?.ownerReferences?.find((ref) => ref.controller === true && ref.kind === kind);
}

/** Every owner reference of kind `kind`. */
export function ownersOfKind(meta: V1ObjectMeta | undefined, kind: string): V1OwnerReference[] {
  return meta?.ownerReferences?.filter((ref) => ref.kind === kind) ?? [];
}
