import type { V1Secret } from '@kubernetes/client-node';
import type { EventTriggerResource } from '../../api/v1alpha1/index.js';
import type { Problem } from '../conditions.js';
import type { SlotChoice } from './source.js';

/**
 * Named checks of an EventTrigger against the world. Each returns `undefined` when all is well, or the
 * reason and message a condition reports.
 */

export const REASON_FUNCTION_NOT_FOUND = 'FunctionNotFound';
export const REASON_SECRET_NOT_FOUND = 'SecretNotFound';
export const REASON_SECRET_KEY_MISSING = 'SecretKeyMissing';
export const REASON_SLOT_CONFLICT = 'SlotNameConflict';

/** The Function the trigger names exists in its namespace (sinks need no check). */
export function checkFunction(trigger: EventTriggerResource, functionExists: (name: string) => boolean): Problem | undefined {
  const ref = trigger.spec.function;
  if (!ref || functionExists(ref.name)) return undefined;
  return {
    reason: REASON_FUNCTION_NOT_FOUND,
    message: `Function "${ref.name}" not found in namespace "${trigger.metadata.namespace ?? 'default'}"`,
  };
}

/** A Secret the dispatcher reads exists and holds the key. */
export function checkSecretKey(role: string, namespace: string, ref: { name: string; key: string }, secret: V1Secret | undefined): Problem | undefined {
  if (!secret) return { reason: REASON_SECRET_NOT_FOUND, message: `${role} Secret "${ref.name}" not found in namespace "${namespace}"` };
  const present = secret.data?.[ref.key] !== undefined || secret.stringData?.[ref.key] !== undefined;
  if (!present) return { reason: REASON_SECRET_KEY_MISSING, message: `${role} Secret "${ref.name}" has no key "${ref.key}"` };
  return undefined;
}

/** The connection Secret and, when payloads are signed, the signing Secret. */
export function checkSecrets(trigger: EventTriggerResource, getSecret: (name: string) => V1Secret | undefined): Problem | undefined {
  const namespace = trigger.metadata.namespace ?? 'default';
  const connection = trigger.spec.source.connectionSecretRef;
  const problem = checkSecretKey('connection', namespace, connection, getSecret(connection.name));
  if (problem) return problem;
  const signing = trigger.spec.delivery.signingSecretRef;
  return signing ? checkSecretKey('signing', namespace, signing, getSecret(signing.name)) : undefined;
}

/** The slot the trigger names (if any) is the one its source's dispatcher reads. */
export function checkSlot(trigger: EventTriggerResource, choice: SlotChoice): Problem | undefined {
  const wanted = trigger.spec.source.slotName;
  if (!wanted || wanted === choice.slotName) return undefined;
  return {
    reason: REASON_SLOT_CONFLICT,
    message:
      `spec.source.slotName "${wanted}" differs from "${choice.slotName}" (set by EventTrigger "${choice.slotSetBy ?? ''}"), ` +
      'and triggers of one source share one dispatcher and one slot: give them the same slotName, or none',
  };
}
