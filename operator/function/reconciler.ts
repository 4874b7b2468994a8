import type { V1Deployment, V1Service } from '@kubernetes/client-node';
import { InvalidResourceError, parseFunction, type FunctionResource, type FunctionStatusT } from '../../api/v1alpha1/index.js';
import type { Logger } from '../../common/logger.js';
import { splitKey, type Cache, type StoredFunction } from '../cache.js';
import { REASON_INVALID_SPEC, conditionTime } from '../conditions.js';
import type { ReconcileOutcome, Reconciler } from '../controller.js';
import { TerminalError, apiErrorMessage } from '../errors.js';
import type { EventRecorder } from '../events.js';
import { applyIfChanged, applyStatus, type KubeClients } from '../kube.js';
import { controllerOf } from '../ownerRefs.js';
import { semanticEqual } from '../semantic.js';
import { FunctionLifecycle } from './lifecycle.js';
import { desiredFunctionObjects } from './resources.js';

export interface FunctionReconcilerDeps {
  clients: KubeClients;
  functions: Cache<StoredFunction>;
  deployments: Cache<V1Deployment>;
  services: Cache<V1Service>;
  events: EventRecorder;
  now?: () => Date;
}

/** What one Function reconcile reads. */
interface FunctionInput {
  stored: StoredFunction & { metadata: { name: string; namespace: string } };
  liveDeployment: V1Deployment | undefined;
  liveService: V1Service | undefined;
}

/**
 * Function → Deployment + Service. gather (from the informer caches) → decide (pure builders) → apply
 * (server-side apply, skipped when the cache shows nothing to change) → status (from what the API
 * server returned, written only when it changed). Deletion needs nothing: the children carry controller
 * owner references and the garbage collector removes them.
 */
export class FunctionReconciler implements Reconciler {
  readonly kind = 'Function';

  constructor(private readonly deps: FunctionReconcilerDeps) {}

  async reconcile(key: string, log: Logger): Promise<ReconcileOutcome> {
    const input = this.gather(key);
    if (!input) return {};
    const { stored } = input;
    const lifecycle = new FunctionLifecycle(
      { metadata: stored.metadata, ...(stored.status ? { status: stored.status } : {}) },
      conditionTime(this.deps.now?.() ?? new Date()),
    );

    let fn: FunctionResource;
    try {
      fn = parseFunction(stored as unknown as Record<string, unknown>);
    } catch (error) {
      if (!(error instanceof InvalidResourceError)) throw error;
      const message = error.problems.join('; ');
      lifecycle.markInvalidSpec(message);
      await this.writeStatus(stored, lifecycle.status());
      this.deps.events.warning(this.subject(stored), REASON_INVALID_SPEC, message);
      throw new TerminalError(REASON_INVALID_SPEC, message, { cause: error });
    }

    const desired = desiredFunctionObjects(fn);
    // Deployment and Service are independent: apply both, report each, then fail if either failed.
    const [deployment, service] = await Promise.allSettled([
      applyIfChanged(this.deps.clients, desired.deployment, input.liveDeployment),
      applyIfChanged(this.deps.clients, desired.service, input.liveService),
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
    if (failure) {
      await this.writeStatus(stored, lifecycle.status());
      throw failure.reason;
    }

    const written = await this.writeStatus(stored, lifecycle.status());
    if (written) log.debug({ ready: lifecycle.status().conditions?.[0]?.status }, 'status updated');
    return {};
  }

  private gather(key: string): FunctionInput | undefined {
    const { namespace, name } = splitKey(key);
    const stored = this.deps.functions.get(name, namespace);
    if (!stored?.metadata?.uid || stored.metadata.deletionTimestamp) return undefined;
    const uid = stored.metadata.uid;
    // A cached child counts as ours only if this incarnation of the Function controls it.
    const ours = <T extends V1Deployment | V1Service>(obj: T | undefined) => (controllerOf(obj?.metadata, 'Function')?.uid === uid ? obj : undefined);
    return {
      stored: stored as FunctionInput['stored'],
      liveDeployment: ours(this.deps.deployments.get(name, namespace)),
      liveService: ours(this.deps.services.get(name, namespace)),
    };
  }

  /** Writes the status if it differs from the stored one; true when it wrote. */
  private async writeStatus(stored: FunctionInput['stored'], next: FunctionStatusT): Promise<boolean> {
    if (semanticEqual(stored.status ?? {}, next)) return false;
    const { name, namespace, resourceVersion } = stored.metadata;
    await applyStatus(this.deps.clients, 'Function', { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) }, next);
    return true;
  }

  private subject(stored: FunctionInput['stored']) {
    return { apiVersion: stored.apiVersion ?? 'eventide.dev/v1alpha1', kind: 'Function', metadata: stored.metadata };
  }
}
