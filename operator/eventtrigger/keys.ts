import type { StoredEventTrigger } from '../cache.js';
import { COMPONENT_DISPATCHER, LABEL_COMPONENT } from '../labels.js';
import { ownersOfKind } from '../ownerRefs.js';
import { type SourceRef, sameSource } from './source.js';

/**
 * Which EventTriggers a change elsewhere concerns: the informer handlers map each event to the keys
 * it touches with these, and only enqueue. They sit beside the reconciler, which reads the same fields.
 */

/** The trigger reads this Secret: its connection, signing, or TLS (CA, client certificate) Secret. */
export function usesSecret(trigger: StoredEventTrigger, secretName: string): boolean {
  const spec = trigger.spec as { delivery?: { signingSecretRef?: { name?: string } }; source?: { tls?: { caSecretRef?: { name?: string }; clientCertSecretRef?: { name?: string } } } } | undefined;
  const tls = spec?.source?.tls;
  return (
    storedSourceOf(trigger)?.secretName === secretName ||
    spec?.delivery?.signingSecretRef?.name === secretName ||
    tls?.caSecretRef?.name === secretName ||
    tls?.clientCertSecretRef?.name === secretName
  );
}

/** The trigger delivers to this Function. */
export function targetsFunction(trigger: StoredEventTrigger, functionName: string | undefined): boolean {
  return (trigger.spec as { function?: { name?: string } } | undefined)?.function?.name === functionName;
}

/** A trigger shares its source (hence its dispatcher) with `other`. */
export function sharesSource(trigger: StoredEventTrigger, other: StoredEventTrigger): boolean {
  const a = storedSourceOf(trigger);
  const b = storedSourceOf(other);
  return a !== undefined && b !== undefined && sameSource(a, b);
}

/** The `namespace/name` keys of the triggers that own a dispatcher object (Deployment, Service, ConfigMap). */
export function ownerKeysOfDispatcherObject(obj: { metadata?: { namespace?: string; labels?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] } }): string[] {
  if (obj.metadata?.labels?.[LABEL_COMPONENT] !== COMPONENT_DISPATCHER) return [];
  const namespace = obj.metadata.namespace ?? '';
  return ownersOfKind(obj.metadata as Parameters<typeof ownersOfKind>[0], 'EventTrigger').map((owner) => `${namespace}/${owner.name}`);
}

/** The source a stored trigger names, read leniently (the spec may be invalid). */
export function storedSourceOf(stored: StoredEventTrigger): SourceRef | undefined {
  const spec = stored.spec as { source?: { connectionSecretRef?: { name?: unknown; key?: unknown } } } | undefined;
  const ref = spec?.source?.connectionSecretRef;
  if (typeof ref?.name !== 'string' || !stored.metadata?.namespace) return undefined;
  return { namespace: stored.metadata.namespace, secretName: ref.name, key: typeof ref.key === 'string' ? ref.key : 'url' };
}
