import type { V1ConfigMap, V1Deployment } from '@kubernetes/client-node';
import {
  InvalidResourceError,
  parseEventTrigger,
  type EventTriggerResource,
  type EventTriggerStatusT,
} from '../../api/v1alpha1/index.js';
import type { Logger } from '../../common/logger.js';
import { splitKey, type Cache, type StoredEventTrigger, type StoredFunction } from '../cache.js';
import { REASON_INVALID_SPEC, conditionTime } from '../conditions.js';
import type { ReconcileOutcome, Reconciler } from '../controller.js';
import { TerminalError, apiErrorMessage, isNotFound } from '../errors.js';
import type { EventRecorder } from '../events.js';
import { applyIfChanged, applyStatus, deleteObject, patchFinalizers, type KubeClients } from '../kube.js';
import { KeyedMutex } from '../keyedMutex.js';
import { LABEL_COMPONENT, COMPONENT_DISPATCHER } from '../labels.js';
import type { SecretWatcher } from '../secretWatcher.js';
import { semanticEqual } from '../semantic.js';
import { decideTrigger, markDecision } from './decide.js';
import { SECRETS_HASH_ANNOTATION, desiredDispatcherObjects, secretsHash, sourceOfDispatcher, type DispatcherSettings } from './dispatcher.js';
import { EventTriggerLifecycle } from './lifecycle.js';
import { dropSlotAndPublication } from './slotDrop.js';
import { chooseSlot, dispatcherName, sameSource, sourceId, sourceOf, type SourceRef } from './source.js';

/** Held by every EventTrigger so its deletion can release the dispatcher and, if asked, the slot. */
export const DISPATCHER_FINALIZER = 'eventide.dev/dispatcher';

export interface EventTriggerReconcilerDeps {
  clients: KubeClients;
  triggers: Cache<StoredEventTrigger>;
  functions: Cache<StoredFunction>;
  deployments: Cache<V1Deployment>;
  configMaps: Cache<V1ConfigMap>;
  secrets: SecretWatcher;
  events: EventRecorder;
  settings: DispatcherSettings;
  now?: () => Date;
  /** Drops a source's slot and publication (replaceable to point at another database in tests). */
  dropSlot?: typeof dropSlotAndPublication;
}

type Stored = StoredEventTrigger & { metadata: { name: string; namespace: string; uid: string } };

/** The source a stored trigger names, read leniently (the spec may be invalid). */
export function storedSourceOf(stored: StoredEventTrigger): SourceRef | undefined {
  const spec = stored.spec as { source?: { connectionSecretRef?: { name?: unknown; key?: unknown } } } | undefined;
  const ref = spec?.source?.connectionSecretRef;
  if (typeof ref?.name !== 'string' || !stored.metadata?.namespace) return undefined;
  return { namespace: stored.metadata.namespace, secretName: ref.name, key: typeof ref.key === 'string' ? ref.key : 'url' };
}

/**
 * EventTrigger → its source's dispatcher (one Deployment + ConfigMap per Secret key, shared by every
 * trigger of that source) and the trigger's status. Every trigger reconcile re-derives the whole
 * source's dispatcher from the cache, so whichever trigger changed, the dispatcher converges.
 */
export class EventTriggerReconciler implements Reconciler {
  readonly kind = 'EventTrigger';
  private readonly sourceLock = new KeyedMutex();
  private readonly parsed = new Map<string, { resourceVersion: string | undefined; value: EventTriggerResource | InvalidResourceError }>();

  constructor(private readonly deps: EventTriggerReconcilerDeps) {}

  async reconcile(key: string, log: Logger): Promise<ReconcileOutcome> {
    const { namespace, name } = splitKey(key);
    const stored = this.deps.triggers.get(name, namespace);
    if (!stored?.metadata?.uid) return {};
    const trigger = stored as Stored;
    if (trigger.metadata.deletionTimestamp) return this.finalize(trigger, log);
    const finalizers = trigger.metadata.finalizers ?? [];
    if (!finalizers.includes(DISPATCHER_FINALIZER)) {
      await patchFinalizers(this.deps.clients, 'EventTrigger', this.metaOf(trigger), [...finalizers, DISPATCHER_FINALIZER]);
      // The update this causes brings the trigger back with a fresh resourceVersion.
      return {};
    }
    const lifecycle = new EventTriggerLifecycle(
      { metadata: trigger.metadata, ...(trigger.status ? { status: trigger.status } : {}) },
      conditionTime(this.deps.now?.() ?? new Date()),
    );

    const parsed = this.parse(trigger);
    if (parsed instanceof InvalidResourceError) {
      // A spec the dispatcher could not load must not sit in its config and break its siblings.
      const source = storedSourceOf(trigger);
      if (source) await this.syncSource(source);
      const message = parsed.problems.join('; ');
      lifecycle.markInvalidSpec(message);
      await this.writeStatus(trigger, lifecycle.status());
      this.deps.events.warning(this.subject(trigger), REASON_INVALID_SPEC, message);
      throw new TerminalError(REASON_INVALID_SPEC, message, { cause: parsed });
    }

    // Secrets are checked against a cache of this namespace's Secrets; its first sync requeues us, and
    // so does a failure to list them, which the status then explains.
    if (!this.deps.secrets.ensure(namespace)) {
      const problem = this.deps.secrets.problem(namespace);
      if (problem) {
        lifecycle.markSourceNotReady(problem);
        await this.writeStatus(trigger, lifecycle.status());
      }
      return {};
    }

    const decision = decideTrigger({
      trigger: parsed,
      members: this.membersOf(sourceOf(parsed)),
      functionExists: (fn) => this.deps.functions.get(fn, namespace) !== undefined,
      secret: (secret) => this.deps.secrets.get(namespace, secret),
      settings: this.deps.settings,
    });

    let dispatcher: V1Deployment | undefined;
    try {
      dispatcher = await this.syncSource(decision.source);
      await this.releaseOtherSources(trigger, decision.source);
    } catch (error) {
      lifecycle.markDispatcherApplyFailed(apiErrorMessage(error));
      await this.writeStatus(trigger, lifecycle.status());
      throw error;
    }
    markDecision(lifecycle, decision, dispatcher);
    if (await this.writeStatus(trigger, lifecycle.status())) log.debug({ dispatcher: decision.dispatcherName }, 'status updated');
    return {};
  }

  /**
   * Deletion: the dispatcher stops serving this trigger (its config is re-derived without it). When it
   * was the source's last trigger the dispatcher is deleted and, with `dropSlotOnDelete`, the slot and
   * publication are dropped; a failure there keeps the finalizer, reports SlotDropFailed and retries.
   */
  private async finalize(trigger: Stored, log: Logger): Promise<ReconcileOutcome> {
    const finalizers = trigger.metadata.finalizers ?? [];
    if (!finalizers.includes(DISPATCHER_FINALIZER)) return {};
    const source = storedSourceOf(trigger);
    if (source) {
      const remaining = this.membersOf(source);
      await this.syncSource(source);
      const dropSlot = (trigger.spec as { source?: { dropSlotOnDelete?: unknown } } | undefined)?.source?.dropSlotOnDelete === true;
      if (remaining.length === 0 && dropSlot) await this.dropSlot(trigger, source, log);
    }
    await patchFinalizers(
      this.deps.clients,
      'EventTrigger',
      this.metaOf(trigger),
      finalizers.filter((f) => f !== DISPATCHER_FINALIZER),
    );
    log.info('finalized');
    return {};
  }

  private async dropSlot(trigger: Stored, source: SourceRef, log: Logger): Promise<void> {
    const spec = (trigger.spec ?? {}) as { source?: { slotName?: string; publicationName?: string } };
    const slot = chooseSlot(source, [{ metadata: trigger.metadata, spec: { source: spec.source ?? {} } }]);
    try {
      const url = await this.readSecretValue(source);
      const result = await (this.deps.dropSlot ?? dropSlotAndPublication)(url, slot.slotName, slot.publicationName);
      log.info({ slot: slot.slotName, publication: slot.publicationName, ...result }, 'dropped replication slot and publication');
      this.deps.events.normal(this.subject(trigger), 'SlotDropped', `dropped replication slot "${slot.slotName}" and publication "${slot.publicationName}"`);
    } catch (error) {
      const message =
        `${(error as Error).message} (set spec.source.dropSlotOnDelete to false to delete the EventTrigger ` +
        'without dropping the slot)';
      const lifecycle = new EventTriggerLifecycle(
        { metadata: trigger.metadata, ...(trigger.status ? { status: trigger.status } : {}) },
        conditionTime(this.deps.now?.() ?? new Date()),
      );
      lifecycle.markSlotDropFailed(message);
      await this.writeStatus(trigger, lifecycle.status());
      this.deps.events.warning(this.subject(trigger), 'SlotDropFailed', message);
      throw error;
    }
  }

  private async readSecretValue(source: SourceRef): Promise<string> {
    try {
      const secret = await this.deps.clients.core.readNamespacedSecret({ name: source.secretName, namespace: source.namespace });
      const value = secret.data?.[source.key];
      if (value === undefined) throw new Error(`connection Secret "${source.secretName}" has no key "${source.key}"`);
      return Buffer.from(value, 'base64').toString('utf8');
    } catch (error) {
      if (isNotFound(error)) throw new Error(`connection Secret "${source.secretName}" not found in namespace "${source.namespace}"`, { cause: error });
      throw error;
    }
  }

  /**
   * Makes a source's dispatcher match its current triggers: applies its ConfigMap then its Deployment,
   * or deletes both when no trigger is left. Returns the Deployment as stored.
   */
  private syncSource(source: SourceRef): Promise<V1Deployment | undefined> {
    return this.sourceLock.run(sourceId(source), async () => {
      const name = dispatcherName(source);
      const { namespace } = source;
      const members = this.membersOf(source);
      if (members.length === 0) {
        await deleteObject(this.deps.clients, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace } });
        await deleteObject(this.deps.clients, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace } });
        return undefined;
      }
      // Derived under the lock from the freshest cache, so a slower reconcile cannot apply older members.
      const live = this.deps.deployments.get(name, namespace);
      // The Secrets' digest from the cache once it has them; until then the running pod's stays (no restart).
      const digest = this.deps.secrets.ensure(namespace)
        ? secretsHash(source, members, (secret) => this.deps.secrets.get(namespace, secret))
        : live?.spec?.template.metadata?.annotations?.[SECRETS_HASH_ANNOTATION];
      const objects = desiredDispatcherObjects(source, members, this.deps.settings, digest);
      await applyIfChanged(this.deps.clients, objects.configMap, this.deps.configMaps.get(name, namespace));
      return (await applyIfChanged(this.deps.clients, objects.deployment, live)).object;
    });
  }

  /** A trigger that moved to another source leaves its old dispatcher: re-derive (or delete) that one. */
  private async releaseOtherSources(trigger: Stored, current: SourceRef): Promise<void> {
    const uid = trigger.metadata.uid;
    const others = new Map<string, SourceRef>();
    for (const obj of [...this.deps.deployments.list(trigger.metadata.namespace), ...this.deps.configMaps.list(trigger.metadata.namespace)]) {
      if (obj.metadata?.labels?.[LABEL_COMPONENT] !== COMPONENT_DISPATCHER) continue;
      if (!obj.metadata.ownerReferences?.some((ref) => ref.uid === uid)) continue;
      const source = sourceOfDispatcher(obj);
      if (source && !sameSource(source, current)) others.set(sourceId(source), source);
    }
    for (const source of others.values()) await this.syncSource(source);
  }

  /** Valid, not-deleting triggers of a source, from the cache. */
  private membersOf(source: SourceRef): EventTriggerResource[] {
    const members: EventTriggerResource[] = [];
    for (const stored of this.deps.triggers.list(source.namespace)) {
      if (stored.metadata?.deletionTimestamp || !stored.metadata?.uid) continue;
      const storedSource = storedSourceOf(stored);
      if (!storedSource || !sameSource(storedSource, source)) continue;
      const parsed = this.parse(stored as Stored);
      if (!(parsed instanceof InvalidResourceError)) members.push(parsed);
    }
    return members;
  }

  /** Parses (validates, defaults) a stored trigger, remembering the result per resourceVersion. */
  private parse(stored: Stored): EventTriggerResource | InvalidResourceError {
    const uid = stored.metadata.uid;
    const cached = this.parsed.get(uid);
    if (cached && cached.resourceVersion === stored.metadata.resourceVersion) return cached.value;
    let value: EventTriggerResource | InvalidResourceError;
    try {
      value = parseEventTrigger(stored as unknown as Record<string, unknown>);
    } catch (error) {
      if (!(error instanceof InvalidResourceError)) throw error;
      value = error;
    }
    this.parsed.set(uid, { resourceVersion: stored.metadata.resourceVersion, value });
    return value;
  }

  /** Forgets what was parsed for a trigger that is gone. */
  forget(uid: string): void {
    this.parsed.delete(uid);
  }

  private async writeStatus(trigger: Stored, next: EventTriggerStatusT): Promise<boolean> {
    if (semanticEqual(trigger.status ?? {}, next)) return false;
    await applyStatus(this.deps.clients, 'EventTrigger', this.metaOf(trigger), next);
    return true;
  }

  private metaOf(trigger: Stored): { name: string; namespace: string; resourceVersion?: string } {
    const { name, namespace, resourceVersion } = trigger.metadata;
    return { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) };
  }

  private subject(trigger: Stored) {
    return { apiVersion: trigger.apiVersion ?? 'eventide.dev/v1alpha1', kind: 'EventTrigger', metadata: trigger.metadata };
  }
}
