import type { EventTriggerResource } from '../../api/v1alpha1/index.js';
import { shortHash } from '../semantic.js';

/**
 * A database source as the cluster knows it: a key of a Secret in a namespace. Triggers with the same
 * source share one dispatcher, hence one replication slot.
 */
export interface SourceRef {
  namespace: string;
  secretName: string;
  key: string;
}

const DISPATCHER_PREFIX = 'eventide-dispatcher-';
/** Names of Deployments' pods must stay DNS labels; keep the whole name within 63 characters. */
const MAX_NAME = 63;
const HASH_LENGTH = 8;

/** The source of a trigger. */
export function sourceOf(trigger: Pick<EventTriggerResource, 'metadata' | 'spec'>): SourceRef {
  const ref = trigger.spec.source.connectionSecretRef;
  return { namespace: trigger.metadata.namespace ?? 'default', secretName: ref.name, key: ref.key };
}

/** The source's identity, for maps and logs: `namespace/secret/key`. */
export function sourceId(source: SourceRef): string {
  return `${source.namespace}/${source.secretName}/${source.key}`;
}

export function sameSource(a: SourceRef, b: SourceRef): boolean {
  return a.namespace === b.namespace && a.secretName === b.secretName && a.key === b.key;
}

/**
 * The dispatcher's Deployment and ConfigMap name: `eventide-dispatcher-<secret>-<hash>`. The readable
 * part is the Secret's name made DNS-safe and cut to fit; the hash of secret name and key keeps names
 * distinct when the cut or the key would make two sources collide.
 */
export function dispatcherName(source: SourceRef): string {
  const hash = shortHash(`${source.secretName}\u0000${source.key}`, HASH_LENGTH);
  const room = MAX_NAME - DISPATCHER_PREFIX.length - 1 - HASH_LENGTH;
  const readable = source.secretName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, room)
    .replace(/^-+|-+$/g, '');
  return `${DISPATCHER_PREFIX}${readable ? `${readable}-` : ''}${hash}`;
}

/**
 * The replication slot a source uses when none of its triggers names one: `eventide_<hash>` of the
 * source's identity, so each namespace's use of a database gets its own slot.
 */
export function defaultSlotName(source: SourceRef): string {
  return `eventide_${shortHash(sourceId(source), 16)}`;
}

/** The part of a trigger that names a slot. */
export interface SlotCandidate {
  metadata: { name: string };
  spec: { source: { slotName?: string; publicationName?: string } };
}

/** The slot and publication a source's dispatcher uses, and which trigger chose them. */
export interface SlotChoice {
  slotName: string;
  publicationName: string;
  /** Trigger whose spec named the slot; absent when the default is used. */
  slotSetBy?: string;
}

/**
 * Picks the slot and publication for a source: the first trigger (by name) that names one decides, else
 * the defaults (publication defaults to the slot name). One dispatcher reads exactly one slot.
 */
export function chooseSlot(source: SourceRef, members: readonly SlotCandidate[]): SlotChoice {
  const sorted = [...members].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const withSlot = sorted.find((t) => t.spec.source.slotName);
  const slotName = withSlot?.spec.source.slotName ?? defaultSlotName(source);
  const publicationName = sorted.find((t) => t.spec.source.publicationName)?.spec.source.publicationName ?? slotName;
  return { slotName, publicationName, ...(withSlot ? { slotSetBy: withSlot.metadata.name } : {}) };
}
