import type { V1ConfigMap, V1Deployment, V1Service } from '@kubernetes/client-node';
import { DURATION_PATTERN } from '../../api/v1alpha1/duration.js';
import { type BackfillResource, type EventTriggerResource, type EventTriggerStatusT, InvalidResourceError, type ObjectMeta, parseEventTrigger } from '../../api/v1alpha1/index.js';
import type { Logger } from '../../common/logger.js';
import type { Cache, StoredEventTrigger, StoredFunction } from '../cache.js';
import type { ReconcileOutcome } from '../controller.js';
import { apiErrorMessage, isNotFound } from '../errors.js';
import type { EventRecorder } from '../events.js';
import { KeyedMutex } from '../keyedMutex.js';
import { applyIfChanged, deleteObject, type KubeClients } from '../kube.js';
import { COMPONENT_DISPATCHER, LABEL_COMPONENT } from '../labels.js';
import type { KindReconciler, ReconcileContext } from '../resourceReconciler.js';
import type { SecretWatcher } from '../secretWatcher.js';
import { decideTrigger, markDecision } from './decide.js';
import { type DispatcherSettings, desiredDispatcherObjects, type FunctionLimit, SECRETS_HASH_ANNOTATION, secretsHash, sourceOfDispatcher } from './dispatcher.js';
import type { DispatcherStates } from './dispatcherStates.js';
import { storedSourceOf } from './keys.js';
import { EventTriggerLifecycle } from './lifecycle.js';
import { laggingCondition, servingCondition } from './serving.js';
import { dropSlotAndPublication, SlotDropError } from './slotDrop.js';
import { planSlots, type RecordedSlot, readSlotRecord, SLOTS_ANNOTATION, type SlotToDrop } from './slotRecord.js';
import { chooseSlot, dispatcherName, type SourceRef, sameSource, sourceId, sourceOf } from './source.js';

/** WAL a slot may hold back before its triggers report Lagging, unless the operator is told otherwise. */
export const DEFAULT_LAG_THRESHOLD_BYTES = 1024 ** 3;

/** How soon a slot that could not be dropped yet (its dispatcher still reads it) is tried again. */
const SLOT_DROP_RETRY_MS = 5_000;

/** What making a source's dispatcher match its triggers did. */
interface SourceSync {
  deployment: V1Deployment | undefined;
  /** A slot the source no longer reads is still to be dropped (its dispatcher has not let go of it yet). */
  dropsPending: boolean;
}

/** Held by every EventTrigger so its deletion can release the dispatcher and, if asked, the slot. */
export const DISPATCHER_FINALIZER = 'eventide.dev/dispatcher';

export interface EventTriggerReconcilerDeps {
  clients: KubeClients;
  triggers: Cache<StoredEventTrigger>;
  functions: Cache<StoredFunction>;
  deployments: Cache<V1Deployment>;
  configMaps: Cache<V1ConfigMap>;
  services: Cache<V1Service>;
  secrets: SecretWatcher;
  /**
   * The valid, not-deleting Backfills of a namespace (from the cache): a source's dispatcher config
   * carries those that name one of its triggers. Without it (some tests) the config has none.
   */
  backfills?: { valid(namespace: string): readonly BackfillResource[] };
  /** What the dispatchers report on /state; without it (a standby, some tests) Serving stays Unknown. */
  states?: DispatcherStates;
  /** WAL a slot may hold back before its triggers say Lagging. */
  lagThresholdBytes?: number;
  events: EventRecorder;
  settings: DispatcherSettings;
  now?: () => Date;
  /** Drops a source's slot and publication (replaceable to point at another database in tests). */
  dropSlot?: typeof dropSlotAndPublication;
  log?: Logger;
}

type Stored = StoredEventTrigger & { metadata: { name: string; namespace: string; uid: string } };

const DURATION = new RegExp(DURATION_PATTERN);

/**
 * EventTrigger → its source's dispatcher (one Deployment + ConfigMap per Secret key, shared by every
 * trigger of that source) and the trigger's status. Every trigger reconcile re-derives the whole
 * source's dispatcher from the cache, so whichever trigger changed, the dispatcher converges.
 */
export class EventTriggerReconciler implements KindReconciler<EventTriggerResource, EventTriggerStatusT, Stored> {
  readonly kind = 'EventTrigger';
  readonly finalizer = DISPATCHER_FINALIZER;
  private readonly sourceLock = new KeyedMutex();
  private readonly parsed = new Map<string, { resourceVersion: string | undefined; value: EventTriggerResource | InvalidResourceError }>();

  constructor(private readonly deps: EventTriggerReconcilerDeps) {}

  lookup(namespace: string, name: string): Stored | undefined {
    return this.deps.triggers.get(name, namespace) as Stored | undefined;
  }

  parse(stored: Stored): EventTriggerResource {
    const parsed = this.parseCached(stored);
    if (parsed instanceof InvalidResourceError) throw parsed;
    return parsed;
  }

  lifecycle(stored: Stored, now: string): EventTriggerLifecycle {
    return new EventTriggerLifecycle({ metadata: stored.metadata, ...(stored.status ? { status: stored.status } : {}) }, now);
  }

  /** A spec the dispatcher could not load must not sit in its config and break its siblings. */
  async invalidSpec(stored: Stored, { clients }: ReconcileContext): Promise<void> {
    const source = storedSourceOf(stored);
    if (source) await this.syncSource(source, clients);
  }

  async reconcileKind(parsed: EventTriggerResource, trigger: Stored, lifecycle: EventTriggerLifecycle, ctx: ReconcileContext): Promise<ReconcileOutcome> {
    const { namespace, name } = trigger.metadata;
    const key = `${namespace}/${name}`;
    const { clients, log } = ctx;
    // Secrets are checked against a cache of this namespace's Secrets; its first sync requeues us, and
    // so does a failure to list them, which the status then explains.
    if (!this.deps.secrets.ensure(namespace)) {
      const problem = this.deps.secrets.problem(namespace);
      if (problem) lifecycle.markSourceNotReady(problem);
      return {};
    }

    const decision = decideTrigger({
      trigger: parsed,
      members: this.membersOf(sourceOf(parsed)),
      functionExists: (fn) => this.deps.functions.get(fn, namespace) !== undefined,
      secret: (secret) => this.deps.secrets.get(namespace, secret),
      settings: this.deps.settings,
    });

    let synced: SourceSync;
    try {
      synced = await this.syncSource(decision.source, clients);
    } catch (error) {
      lifecycle.markDispatcherApplyFailed(apiErrorMessage(error));
      throw error;
    }
    // A source this trigger left: its dispatcher goes, and its slots once that dispatcher has stopped.
    const released = await this.releaseOtherSources(trigger, decision.source, ctx);
    const dispatcher = synced.deployment;
    markDecision(lifecycle, decision, dispatcher);
    const reading = this.deps.states?.get(namespace, decision.dispatcherName);
    const functionKey = parsed.spec.function ? `${namespace}/${parsed.spec.function.name}` : undefined;
    lifecycle.markServing(servingCondition(reading, key, trigger.metadata.generation, functionKey));
    lifecycle.markLagging(laggingCondition(reading, this.deps.lagThresholdBytes ?? DEFAULT_LAG_THRESHOLD_BYTES));
    log.debug({ dispatcher: decision.dispatcherName }, 'reconciled');
    return synced.dropsPending || !released ? { requeueAfterMs: SLOT_DROP_RETRY_MS } : {};
  }

  /**
   * Deletion: the dispatcher stops serving this trigger (its config is re-derived without it). When it
   * was the source's last trigger the dispatcher is deleted and the recorded slots its triggers asked to
   * drop are dropped; a failure there keeps the finalizer, reports SlotDropFailed and retries.
   */
  async finalizeKind(trigger: Stored, lifecycle: EventTriggerLifecycle, { clients }: ReconcileContext): Promise<void> {
    const source = storedSourceOf(trigger);
    if (!source) return;
    const spec = (trigger.spec ?? {}) as { source?: { slotName?: string; publicationName?: string; dropSlotOnDelete?: unknown } };
    // For a ConfigMap made before slots were recorded: the slot this trigger's spec leads to.
    const chosen = chooseSlot(source, [{ metadata: trigger.metadata, spec: { source: spec.source ?? {} } }]);
    const legacy: RecordedSlot = { slot: chosen.slotName, publication: chosen.publicationName, drop: spec.source?.dropSlotOnDelete === true };
    try {
      await this.syncSource(source, clients, legacy);
    } catch (error) {
      if (!(error instanceof SlotDropError)) throw error;
      const message = `${error.message} (set spec.source.dropSlotOnDelete to false to delete the EventTrigger without dropping the slot)`;
      lifecycle.markSlotDropFailed(message);
      this.deps.events.warning(this.subject(trigger), 'SlotDropFailed', message);
      throw error;
    }
  }

  /** Drops slots the source no longer reads; throws SlotDropError on the first that cannot be dropped yet. */
  private async dropSlots(source: SourceRef, slots: readonly SlotToDrop[], subject: { apiVersion?: string; metadata: ObjectMeta } | undefined): Promise<void> {
    if (slots.length === 0) return;
    const url = await this.readSecretValue(source).catch((error: Error) => {
      throw new SlotDropError(error.message, { cause: error });
    });
    for (const { slot, publication } of slots) {
      const result = await (this.deps.dropSlot ?? dropSlotAndPublication)(url, slot, publication);
      this.deps.log?.info({ slot, publication, ...result }, 'dropped replication slot');
      if (subject) {
        const what = publication ? `replication slot "${slot}" and publication "${publication}"` : `replication slot "${slot}"`;
        this.deps.events.normal(this.subject(subject), 'SlotDropped', `dropped ${what}`);
      }
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
   * Makes a source's dispatcher match its current triggers: applies its ConfigMap (with the record of
   * the slots it was told to read), Service and Deployment, and drops recorded slots it no longer reads
   * whose triggers asked for that. With no trigger left: deletes the Deployment and Service, drops the
   * recorded slots (a SlotDropError while the old pod still reads one; the ConfigMap and its record stay
   * for the retry), then deletes the ConfigMap. `legacy` is the slot to assume when nothing is recorded.
   */
  private syncSource(source: SourceRef, clients: KubeClients, legacy?: RecordedSlot): Promise<SourceSync> {
    return this.sourceLock.run(sourceId(source), async () => {
      const name = dispatcherName(source);
      const { namespace } = source;
      const members = this.membersOf(source);
      const liveConfigMap = this.deps.configMaps.get(name, namespace);
      const recorded = readSlotRecord(liveConfigMap);
      const subject = members[0] ?? this.ownerOf(liveConfigMap);
      if (members.length === 0) {
        await deleteObject(clients, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace } });
        await deleteObject(clients, { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace } });
        const plan = planSlots(recorded.length > 0 || !legacy ? recorded : [legacy], undefined);
        await this.dropSlots(source, plan.toDrop, subject);
        await deleteObject(clients, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace } });
        return { deployment: undefined, dropsPending: false };
      }
      // Derived under the lock from the freshest cache, so a slower reconcile cannot apply older members.
      const live = this.deps.deployments.get(name, namespace);
      // The Secrets' digest from the cache once it has them; until then the running pod's stays (no restart).
      const digest = this.deps.secrets.ensure(namespace)
        ? secretsHash(source, members, (secret) => this.deps.secrets.get(namespace, secret))
        : live?.spec?.template.metadata?.annotations?.[SECRETS_HASH_ANNOTATION];
      const backfills = this.deps.backfills?.valid(namespace) ?? [];
      const objects = desiredDispatcherObjects(source, members, this.deps.settings, digest, this.functionLimits(namespace, members), backfills);
      const choice = chooseSlot(source, members);
      const current: RecordedSlot = { slot: choice.slotName, publication: choice.publicationName, drop: members.some((m) => m.spec.source.dropSlotOnDelete) };
      const plan = planSlots(recorded, current);
      for (const kept of plan.kept) {
        // Forgotten, not dropped (no trigger asked for that): say once that it still holds WAL.
        if (subject)
          this.deps.events.normal(
            this.subject(subject),
            'SlotKept',
            `replication slot "${kept.slot}" is no longer read and holds WAL until it is dropped: SELECT pg_drop_replication_slot('${kept.slot}')`,
          );
      }
      const withRecord = (record: RecordedSlot[]) => ({
        ...objects.configMap,
        metadata: { ...objects.configMap.metadata, annotations: { ...objects.configMap.metadata!.annotations, [SLOTS_ANNOTATION]: JSON.stringify(record) } },
      });
      const appliedConfigMap = (await applyIfChanged(clients, withRecord(plan.record), liveConfigMap)).object;
      await applyIfChanged(clients, objects.service, this.deps.services.get(name, namespace));
      const deployment = (await applyIfChanged(clients, objects.deployment, live)).object;
      if (plan.toDrop.length === 0) return { deployment, dropsPending: false };
      try {
        await this.dropSlots(source, plan.toDrop, subject);
        await applyIfChanged(clients, withRecord([current]), appliedConfigMap);
        return { deployment, dropsPending: false };
      } catch (error) {
        // Typically the dispatcher still reads the old slot until it has restarted on the new one.
        this.deps.log?.info({ source: sourceId(source), err: (error as Error).message }, 'a slot the source no longer reads cannot be dropped yet; retrying');
        return { deployment, dropsPending: true };
      }
    });
  }

  /** A trigger that owned a dispatcher object (for events about a source whose triggers are gone). */
  private ownerOf(obj: V1ConfigMap | undefined): { metadata: ObjectMeta } | undefined {
    const owner = obj?.metadata?.ownerReferences?.find((ref) => ref.kind === 'EventTrigger');
    const namespace = obj?.metadata?.namespace;
    if (!owner || !namespace) return undefined;
    return { metadata: { name: owner.name, namespace, uid: owner.uid } };
  }

  /**
   * A trigger that moved to another source leaves its old dispatcher: re-derive (or delete) that one,
   * and drop its recorded slots once its pod has stopped. False while a drop has to wait (requeue).
   */
  private async releaseOtherSources(trigger: Stored, current: SourceRef, { clients, log }: ReconcileContext): Promise<boolean> {
    const uid = trigger.metadata.uid;
    const others = new Map<string, SourceRef>();
    for (const obj of [...this.deps.deployments.list(trigger.metadata.namespace), ...this.deps.configMaps.list(trigger.metadata.namespace)]) {
      if (obj.metadata?.labels?.[LABEL_COMPONENT] !== COMPONENT_DISPATCHER) continue;
      if (!obj.metadata.ownerReferences?.some((ref) => ref.uid === uid)) continue;
      const source = sourceOfDispatcher(obj);
      if (source && !sameSource(source, current)) others.set(sourceId(source), source);
    }
    let done = true;
    for (const source of others.values()) {
      try {
        if ((await this.syncSource(source, clients)).dropsPending) done = false;
      } catch (error) {
        if (!(error instanceof SlotDropError)) throw error;
        log.info({ source: sourceId(source), err: error.message }, 'the source this trigger left still has a slot to drop; retrying');
        done = false;
      }
    }
    return done;
  }

  /** What the dispatcher needs of the Functions the triggers target (only those that set a concurrency or a scale), from the cache. */
  private functionLimits(namespace: string, members: readonly EventTriggerResource[]): FunctionLimit[] {
    const limits = new Map<string, FunctionLimit>();
    for (const t of members) {
      const name = t.spec.function?.name;
      if (!name || limits.has(name)) continue;
      const spec = this.deps.functions.get(name, namespace)?.spec as { concurrency?: unknown; scale?: { activationTimeout?: unknown } } | undefined;
      const limit: FunctionLimit = { name };
      if (typeof spec?.concurrency === 'number' && Number.isInteger(spec.concurrency) && spec.concurrency > 0) limit.concurrency = spec.concurrency;
      const activationTimeout = spec?.scale?.activationTimeout;
      if (typeof activationTimeout === 'string' && DURATION.test(activationTimeout)) limit.activationTimeout = activationTimeout;
      if (limit.concurrency !== undefined || limit.activationTimeout !== undefined) limits.set(name, limit);
    }
    return [...limits.values()];
  }

  /** Valid, not-deleting triggers of a source, from the cache. */
  private membersOf(source: SourceRef): EventTriggerResource[] {
    const members: EventTriggerResource[] = [];
    for (const stored of this.deps.triggers.list(source.namespace)) {
      if (stored.metadata?.deletionTimestamp || !stored.metadata?.uid) continue;
      const storedSource = storedSourceOf(stored);
      if (!storedSource || !sameSource(storedSource, source)) continue;
      const parsed = this.parseCached(stored as Stored);
      if (!(parsed instanceof InvalidResourceError)) members.push(parsed);
    }
    return members;
  }

  /** Parses (validates, defaults) a stored trigger, remembering the result per resourceVersion. */
  private parseCached(stored: Stored): EventTriggerResource | InvalidResourceError {
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

  private subject(trigger: { apiVersion?: string; metadata: ObjectMeta }) {
    return { apiVersion: trigger.apiVersion ?? 'eventide.dev/v1alpha1', kind: 'EventTrigger', metadata: trigger.metadata };
  }
}
