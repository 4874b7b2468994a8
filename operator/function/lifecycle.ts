import type { V1Deployment, V1Service } from '@kubernetes/client-node';
import type { FunctionResource, FunctionStatusT } from '../../api/v1alpha1/index.js';
import { type ConditionManager, ConditionSet, REASON_APPLY_FAILED, REASON_INVALID_SPEC } from '../conditions.js';
import { deploymentReadiness } from '../deploymentReadiness.js';
import { functionUrl } from '../labels.js';

export const FunctionConditionDeploymentReady = 'DeploymentReady';
export const FunctionConditionServiceReady = 'ServiceReady';
export type FunctionConditionType = typeof FunctionConditionDeploymentReady | typeof FunctionConditionServiceReady;

/** A Function is Ready when its Deployment is available and its Service exists. */
export const functionConditionSet = new ConditionSet<FunctionConditionType>('Ready', [FunctionConditionDeploymentReady, FunctionConditionServiceReady]);

/**
 * The next status of a Function. Reconcilers call the `markX` / `propagateX` helpers and read `status()`;
 * they never edit `conditions[]` themselves.
 */
export class FunctionLifecycle {
  private readonly conditions: ConditionManager<FunctionConditionType>;
  private readonly next: FunctionStatusT;

  constructor(
    private readonly fn: Pick<FunctionResource, 'metadata' | 'status'>,
    now: string,
  ) {
    const generation = fn.metadata.generation;
    this.conditions = functionConditionSet.manage(fn.status?.conditions, { now, ...(generation !== undefined ? { generation } : {}) });
    const previous = fn.status ?? {};
    this.next = {
      ...(previous.url !== undefined ? { url: previous.url } : {}),
      ...(previous.readyReplicas !== undefined ? { readyReplicas: previous.readyReplicas } : {}),
      ...(previous.replicas !== undefined ? { replicas: previous.replicas } : {}),
      ...(previous.selector !== undefined ? { selector: previous.selector } : {}),
    };
  }

  /** Carries the Deployment's availability and ready replica count into the Function's status. */
  propagateDeployment(deployment: V1Deployment | undefined): void {
    this.conditions.mark(FunctionConditionDeploymentReady, deploymentReadiness(deployment));
    this.next.readyReplicas = deployment?.status?.readyReplicas ?? 0;
    this.next.replicas = deployment?.status?.replicas ?? 0;
  }

  /** The autoscaler's last decision (spec.scale), or none without spec.scale. */
  markAutoscaling(autoscaling: FunctionStatusT['autoscaling']): void {
    if (autoscaling) this.next.autoscaling = autoscaling;
    else delete this.next.autoscaling;
  }

  /** The pods' label selector, for the /scale subresource (HPA and KEDA read it). */
  markSelector(selector: Record<string, string>): void {
    this.next.selector = Object.entries(selector)
      .map(([key, value]) => `${key}=${value}`)
      .join(',');
  }

  /** Marks the Service as serving once it has a cluster IP, and publishes the Function's URL. */
  propagateService(service: V1Service | undefined): void {
    if (!service) {
      this.conditions.markUnknown(FunctionConditionServiceReady, 'ServiceMissing', 'the Service does not exist yet');
      return;
    }
    if (!service.spec?.clusterIP) {
      this.conditions.markUnknown(FunctionConditionServiceReady, 'ServicePending', 'the Service has no cluster IP yet');
      return;
    }
    this.conditions.markTrue(FunctionConditionServiceReady, 'ServiceReady', `serving at ${this.url()}`);
    this.next.url = this.url();
  }

  /** DeploymentReady=False: the API server refused the Deployment (quota, admission, a bad field). */
  markDeploymentApplyFailed(message: string): void {
    this.conditions.markFalse(FunctionConditionDeploymentReady, REASON_APPLY_FAILED, message);
  }

  /** ServiceReady=False: the API server refused the Service. */
  markServiceApplyFailed(message: string): void {
    this.conditions.markFalse(FunctionConditionServiceReady, REASON_APPLY_FAILED, message);
  }

  /** Ready=False, InvalidSpec: the spec passed the CRD schema but cannot be run as it is. */
  markInvalidSpec(message: string): void {
    this.conditions.markHappyFalse(REASON_INVALID_SPEC, message);
  }

  /** The complete status to write, with observedGeneration set. */
  status(): FunctionStatusT {
    const generation = this.fn.metadata.generation;
    return {
      ...this.next,
      conditions: this.conditions.conditions(),
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
    };
  }

  private url(): string {
    return functionUrl(this.fn.metadata.name, this.fn.metadata.namespace ?? 'default');
  }
}
