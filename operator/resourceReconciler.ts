import { InvalidResourceError } from '../api/v1alpha1/index.js';
import type { Logger } from '../common/logger.js';
import { splitKey } from './cache.js';
import { conditionTime, REASON_INVALID_SPEC } from './conditions.js';
import type { ReconcileOutcome, Reconciler } from './controller.js';
import { TerminalError } from './errors.js';
import type { EventRecorder } from './events.js';
import { applyStatus, type EventideKind, type KubeClients, patchFinalizers, withSignal } from './kube.js';
import { semanticEqual } from './semantic.js';

/** A stored eventide resource as the cache holds it (its spec not yet validated). */
export interface StoredResource<S> {
  apiVersion?: string;
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string; generation?: number; deletionTimestamp?: Date | string; finalizers?: string[] };
  spec?: unknown;
  status?: S;
}

/** The next status of a resource, built by `markX` calls during one reconcile. */
export interface KindLifecycle<S> {
  markInvalidSpec(message: string): void;
  status(): S;
}

/** What one reconcile may use: its log, its clients (writes refuse once `signal` aborts), the signal. */
export interface ReconcileContext {
  log: Logger;
  clients: KubeClients;
  signal: AbortSignal;
}

/**
 * The hand-written part of a kind's reconciler, as knative/pkg's generated reconciler asks for
 * `ReconcileKind` and `FinalizeKind`: everything common (reading, parsing, reporting an invalid spec,
 * the finalizer, writing status once and only if it changed) is done by ResourceReconciler.
 */
export interface KindReconciler<R, S, Stored extends StoredResource<S>> {
  readonly kind: EventideKind;
  /** Held while deletion has work to do (finalizeKind); absent when deletion needs nothing (the garbage collector). */
  readonly finalizer?: string;
  /** The resource from the cache, if it exists. */
  lookup(namespace: string, name: string): Stored | undefined;
  /** Validates and defaults the spec; throws InvalidResourceError naming each bad field. */
  parse(stored: Stored): R;
  lifecycle(stored: Stored, now: string): KindLifecycle<S>;
  /** Makes the world match the resource, marking what it found on the lifecycle; status is written after, even when it throws. */
  reconcileKind(resource: R, stored: Stored, lifecycle: KindLifecycle<S>, ctx: ReconcileContext): Promise<ReconcileOutcome>;
  /** Undoes what the resource caused, before its finalizer is removed; throws to keep it (retried with backoff). */
  finalizeKind?(stored: Stored, lifecycle: KindLifecycle<S>, ctx: ReconcileContext): Promise<void>;
  /** A spec that cannot be acted on: whatever must not go on using it (an EventTrigger leaves its dispatcher's config). */
  invalidSpec?(stored: Stored, ctx: ReconcileContext): Promise<void>;
}

/**
 * The shared skeleton of every reconciler: read from the cache, then on deletion run finalizeKind and
 * drop the finalizer; otherwise add the finalizer if missing, parse the spec (an invalid one is
 * reported in status and as an event, and not retried), run reconcileKind, and write the status once,
 * only when it changed. Every write goes through clients guarded by the reconcile's signal.
 */
export class ResourceReconciler<R, S extends object, Stored extends StoredResource<S>> implements Reconciler {
  constructor(
    private readonly kindReconciler: KindReconciler<R, S, Stored>,
    private readonly deps: { clients: KubeClients; events: EventRecorder; now?: () => Date },
  ) {}

  get kind(): string {
    return this.kindReconciler.kind;
  }

  async reconcile(key: string, log: Logger, signal: AbortSignal): Promise<ReconcileOutcome> {
    const kr = this.kindReconciler;
    const { namespace, name } = splitKey(key);
    const stored = kr.lookup(namespace, name);
    if (!stored?.metadata?.uid) return {};
    const ctx: ReconcileContext = { log, signal, clients: withSignal(this.deps.clients, signal) };
    const lifecycle = kr.lifecycle(stored, conditionTime(this.deps.now?.() ?? new Date()));
    const finalizers = stored.metadata.finalizers ?? [];
    const holdsFinalizer = kr.finalizer !== undefined && finalizers.includes(kr.finalizer);

    if (stored.metadata.deletionTimestamp) {
      if (!holdsFinalizer || !kr.finalizeKind) return {};
      try {
        await kr.finalizeKind(stored, lifecycle, ctx);
      } catch (error) {
        await this.writeStatus(stored, lifecycle.status(), ctx);
        throw error;
      }
      await patchFinalizers(
        ctx.clients,
        kr.kind,
        this.metaOf(stored),
        finalizers.filter((f) => f !== kr.finalizer),
      );
      log.info('finalized');
      return {};
    }
    if (kr.finalizer !== undefined && !holdsFinalizer) {
      await patchFinalizers(ctx.clients, kr.kind, this.metaOf(stored), [...finalizers, kr.finalizer]);
      // The update this causes brings the resource back with a fresh resourceVersion.
      return {};
    }

    let resource: R;
    try {
      resource = kr.parse(stored);
    } catch (error) {
      if (!(error instanceof InvalidResourceError)) throw error;
      await kr.invalidSpec?.(stored, ctx);
      const message = error.problems.join('; ');
      lifecycle.markInvalidSpec(message);
      await this.writeStatus(stored, lifecycle.status(), ctx);
      this.deps.events.warning(this.subject(stored), REASON_INVALID_SPEC, message);
      throw new TerminalError(REASON_INVALID_SPEC, message, { cause: error });
    }

    let outcome: ReconcileOutcome;
    try {
      outcome = await kr.reconcileKind(resource, stored, lifecycle, ctx);
    } catch (error) {
      // What was found before the failure is worth reporting; the write failing too must not hide the cause.
      await this.writeStatus(stored, lifecycle.status(), ctx).catch(() => undefined);
      throw error;
    }
    if (await this.writeStatus(stored, lifecycle.status(), ctx)) log.debug('status updated');
    return outcome;
  }

  /** Writes the status if it differs from the stored one; true when it wrote. */
  private async writeStatus(stored: Stored, next: S, ctx: ReconcileContext): Promise<boolean> {
    if (semanticEqual(stored.status ?? {}, next)) return false;
    await applyStatus(ctx.clients, this.kindReconciler.kind, this.metaOf(stored), next);
    return true;
  }

  private metaOf(stored: Stored): { name: string; namespace: string; resourceVersion?: string } {
    const { name, namespace, resourceVersion } = stored.metadata;
    return { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) };
  }

  private subject(stored: Stored) {
    return { apiVersion: stored.apiVersion ?? 'eventide.dev/v1alpha1', kind: this.kindReconciler.kind, metadata: stored.metadata };
  }
}
