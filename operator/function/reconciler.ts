import type { V1Deployment, V1Service } from '@kubernetes/client-node';
import { type FunctionResource, type FunctionStatusT, parseDuration, parseFunction } from '../../api/v1alpha1/index.js';
import type { Cache, StoredEventTrigger, StoredFunction } from '../cache.js';
import type { ReconcileOutcome } from '../controller.js';
import { apiErrorMessage } from '../errors.js';
import { targetsFunction } from '../eventtrigger/keys.js';
import { applyIfChanged } from '../kube.js';
import { controllerOf } from '../ownerRefs.js';
import type { KindReconciler, ReconcileContext } from '../resourceReconciler.js';
import type { AutoscaleStatus } from './autoscaler.js';
import { FunctionLifecycle } from './lifecycle.js';
import { desiredFunctionObjects } from './resources.js';

export interface FunctionReconcilerDeps {
  functions: Cache<StoredFunction>;
  /** The triggers that target a Function decide how long its pods may take to stop. */
  triggers: Cache<StoredEventTrigger>;
  deployments: Cache<V1Deployment>;
  services: Cache<V1Service>;
  /** The autoscaler's decisions, for Functions with spec.scale. */
  autoscaler?: { desired(functionKey: string): AutoscaleStatus | undefined };
}

type Stored = StoredFunction & { metadata: { name: string; namespace: string; uid: string } };

/**
 * Function → Deployment + Service. gather (from the informer caches) → decide (pure builders) → apply
 * (server-side apply, skipped when the cache shows nothing to change) → status (from what the API
 * server returned). Deletion needs nothing: the children carry controller owner references and the
 * garbage collector removes them. Reading, parsing and writing status are ResourceReconciler's.
 */
export class FunctionReconciler implements KindReconciler<FunctionResource, FunctionStatusT, Stored> {
  readonly kind = 'Function';

  constructor(private readonly deps: FunctionReconcilerDeps) {}

  lookup(namespace: string, name: string): Stored | undefined {
    return this.deps.functions.get(name, namespace) as Stored | undefined;
  }

  parse(stored: Stored): FunctionResource {
    return parseFunction(stored as unknown as Record<string, unknown>);
  }

  lifecycle(stored: Stored, now: string): FunctionLifecycle {
    return new FunctionLifecycle({ metadata: stored.metadata, ...(stored.status ? { status: stored.status } : {}) }, now);
  }

  async reconcileKind(fn: FunctionResource, stored: Stored, lifecycle: FunctionLifecycle, { clients, log }: ReconcileContext): Promise<ReconcileOutcome> {
    const { name, namespace, uid } = stored.metadata;
    // A cached child counts as ours only if this incarnation of the Function controls it.
    const ours = <T extends V1Deployment | V1Service>(obj: T | undefined) => (controllerOf(obj?.metadata, 'Function')?.uid === uid ? obj : undefined);
    const current = ours(this.deps.deployments.get(name, namespace));
    const autoscale = fn.spec.scale ? this.deps.autoscaler?.desired(`${namespace}/${name}`) : undefined;
    const replicas = this.replicasOf(fn, autoscale, current);
    const desired = desiredFunctionObjects(fn, { longestDeliveryTimeoutMs: this.longestDeliveryTimeoutMs(namespace, name), ...(replicas !== undefined ? { replicas } : {}) });
    lifecycle.markAutoscaling(fn.spec.scale ? (autoscale ?? fn.status?.autoscaling) : undefined);
    lifecycle.markSelector(desired.deployment.spec!.selector.matchLabels!);
    // Deployment and Service are independent: apply both, report each, then fail if either failed.
    const [deployment, service] = await Promise.allSettled([
      applyIfChanged(clients, desired.deployment, current),
      applyIfChanged(clients, desired.service, ours(this.deps.services.get(name, namespace))),
    ]);
    if (deployment.status === 'fulfilled') {
      if (deployment.value.applied) log.debug({ child: 'Deployment', because: deployment.value.applied }, 'applied');
      lifecycle.propagateDeployment(deployment.value.object);
    } else {
      lifecycle.markDeploymentApplyFailed(apiErrorMessage(deployment.reason));
    }
    if (service.status === 'fulfilled') {
      if (service.value.applied) log.debug({ child: 'Service', because: service.value.applied }, 'applied');
      lifecycle.propagateService(service.value.object);
    } else {
      lifecycle.markServiceApplyFailed(apiErrorMessage(service.reason));
    }
    const failure = [deployment, service].find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
    return {};
  }

  /**
   * The replicas to write: spec.replicas when set; with spec.scale the autoscaler's count, else (a new
   * leader that has not decided yet) the count the Deployment has, else spec.scale.min; otherwise none,
   * so whoever scales the Deployment owns its count.
   */
  private replicasOf(fn: FunctionResource, autoscale: AutoscaleStatus | undefined, current: V1Deployment | undefined): number | undefined {
    if (fn.spec.replicas !== undefined) return fn.spec.replicas;
    if (!fn.spec.scale) return undefined;
    return autoscale?.desiredReplicas ?? current?.spec?.replicas ?? fn.spec.scale.min;
  }

  /** The longest spec.delivery.timeout among the triggers that deliver to this Function (30 s, the default, when none). */
  private longestDeliveryTimeoutMs(namespace: string, name: string): number {
    let longest = 30_000;
    for (const t of this.deps.triggers.list(namespace)) {
      if (!targetsFunction(t, name)) continue;
      const timeout = (t.spec as { delivery?: { timeout?: unknown } } | undefined)?.delivery?.timeout;
      if (typeof timeout !== 'string') continue;
      try {
        longest = Math.max(longest, parseDuration(timeout));
      } catch {
        // An invalid trigger is reported on the trigger; it changes nothing here.
      }
    }
    return longest;
  }
}
