import { type BackfillPhaseT, type BackfillResource, type BackfillStatusT, InvalidResourceError, parseEventTrigger } from '../../api/v1alpha1/index.js';
import type { Cache, StoredBackfill, StoredEventTrigger } from '../cache.js';
import type { ReconcileOutcome } from '../controller.js';
import type { EventRecorder } from '../events.js';
import { storedSourceOf } from '../eventtrigger/keys.js';
import type { DispatcherReading } from '../eventtrigger/serving.js';
import { dispatcherName } from '../eventtrigger/source.js';
import type { KindReconciler, ReconcileContext } from '../resourceReconciler.js';
import { BackfillLifecycle } from './lifecycle.js';
import type { KnownBackfill, ParsedBackfills } from './parsed.js';
import { backfillEvent, REASON_TRIGGER_INVALID, REASON_TRIGGER_NOT_FOUND, type TriggerResolution } from './status.js';

export interface BackfillReconcilerDeps {
  backfills: Cache<StoredBackfill>;
  triggers: Cache<StoredEventTrigger>;
  parsed: ParsedBackfills;
  /** The dispatchers' last /state readings; without them (some tests) a Backfill stays DispatcherPending. */
  states?: { get(namespace: string, name: string): DispatcherReading | undefined };
  events: EventRecorder;
}

/**
 * Backfill → its status. The Backfill itself is run by the dispatcher of its trigger's source, which
 * finds it in its ConfigMap (the EventTrigger reconciler writes it there) and reports it on /state;
 * this reconciler only mirrors that report into status, and records an Event when it completes or
 * fails. Deletion needs nothing here: the trigger's reconcile drops it from the ConfigMap and the
 * dispatcher cancels it. Reading, parsing and writing status (only when it changed) are ResourceReconciler's.
 */
export class BackfillReconciler implements KindReconciler<BackfillResource, BackfillStatusT, KnownBackfill> {
  readonly kind = 'Backfill';
  /**
   * The phase each Backfill's Event was last recorded for: until this replica's status write comes
   * back through the cache, a reconcile still reads the old phase and would record the Event again.
   */
  private readonly announced = new Map<string, BackfillPhaseT>();

  constructor(private readonly deps: BackfillReconcilerDeps) {}

  lookup(namespace: string, name: string): KnownBackfill | undefined {
    return this.deps.backfills.get(name, namespace) as KnownBackfill | undefined;
  }

  parse(stored: KnownBackfill): BackfillResource {
    const parsed = this.deps.parsed.parse(stored);
    if (parsed instanceof InvalidResourceError) throw parsed;
    return parsed;
  }

  lifecycle(stored: KnownBackfill, now: string): BackfillLifecycle {
    return new BackfillLifecycle({ metadata: stored.metadata, ...(stored.status ? { status: stored.status } : {}) }, now);
  }

  async reconcileKind(backfill: BackfillResource, stored: KnownBackfill, lifecycle: BackfillLifecycle, { log }: ReconcileContext): Promise<ReconcileOutcome> {
    const { namespace } = stored.metadata;
    const trigger = this.resolveTrigger(namespace, backfill.spec.trigger.name);
    const reading = 'dispatcher' in trigger ? this.deps.states?.get(namespace, trigger.dispatcher) : undefined;
    lifecycle.markObserved(trigger, reading);
    const next = lifecycle.status();
    const event = backfillEvent(stored.status?.phase, next);
    if (event && next.phase && this.announced.get(stored.metadata.uid) !== next.phase) {
      this.announced.set(stored.metadata.uid, next.phase);
      const subject = { apiVersion: stored.apiVersion ?? 'eventide.dev/v1alpha1', kind: this.kind, metadata: stored.metadata };
      if (event.type === 'Warning') this.deps.events.warning(subject, event.reason, event.message);
      else this.deps.events.normal(subject, event.reason, event.message);
      log.info({ phase: next.phase, rowsRead: next.rowsRead, rowsSent: next.rowsSent }, `backfill ${next.phase.toLowerCase()}`);
    }
    return {};
  }

  /** Forgets a Backfill that is gone. */
  forget(uid: string): void {
    this.announced.delete(uid);
    this.deps.parsed.forget(uid);
  }

  /**
   * The trigger's dispatcher, when the trigger is one its dispatcher serves (it exists, is valid and is
   * not being deleted: exactly when the Backfill is in that dispatcher's config), else why not.
   */
  private resolveTrigger(namespace: string, name: string): TriggerResolution {
    const stored = this.deps.triggers.get(name, namespace);
    if (!stored || stored.metadata?.deletionTimestamp) {
      const message = stored ? `EventTrigger "${name}" in namespace "${namespace}" is being deleted` : `EventTrigger "${name}" not found in namespace "${namespace}"`;
      return { problem: { reason: REASON_TRIGGER_NOT_FOUND, message } };
    }
    try {
      parseEventTrigger(stored as unknown as Record<string, unknown>);
    } catch (error) {
      if (!(error instanceof InvalidResourceError)) throw error;
      return { problem: { reason: REASON_TRIGGER_INVALID, message: `EventTrigger "${name}" has an invalid spec, so no dispatcher serves it (see its Ready condition)` } };
    }
    const source = storedSourceOf(stored);
    if (!source) return { problem: { reason: REASON_TRIGGER_INVALID, message: `EventTrigger "${name}" names no connection Secret` } };
    return { dispatcher: dispatcherName(source) };
  }
}
