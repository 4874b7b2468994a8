import type { V1Deployment } from '@kubernetes/client-node';
import type { ConditionState } from './conditions.js';

/**
 * Whether a Deployment serves: read from the Deployment controller's own report (observedGeneration and
 * the Available, Progressing and ReplicaFailure conditions), never from counting pods ourselves.
 */
export function deploymentReadiness(deployment: V1Deployment | undefined): ConditionState {
  if (!deployment) return { status: 'Unknown', reason: 'DeploymentMissing', message: 'the Deployment does not exist yet' };
  const name = deployment.metadata?.name ?? '';
  const generation = deployment.metadata?.generation ?? 0;
  const status = deployment.status ?? {};
  if ((status.observedGeneration ?? 0) < generation) {
    return {
      status: 'Unknown',
      reason: 'RolloutPending',
      message: `waiting for the Deployment controller to observe generation ${generation} of Deployment ${name}`,
    };
  }
  const conditions = status.conditions ?? [];
  const find = (type: string) => conditions.find((c) => c.type === type);
  const desired = deployment.spec?.replicas ?? 1;
  const ready = status.readyReplicas ?? 0;
  const counts = `${ready}/${desired} replicas ready`;

  const progressing = find('Progressing');
  if (progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded') {
    return { status: 'False', reason: 'ProgressDeadlineExceeded', message: `${counts}: ${progressing.message ?? ''}`.trim() };
  }
  const failure = find('ReplicaFailure');
  if (failure?.status === 'True') {
    return { status: 'False', reason: failure.reason ?? 'ReplicaFailure', message: `${counts}: ${failure.message ?? ''}`.trim() };
  }
  const available = find('Available');
  if (!available) return { status: 'Unknown', reason: 'RolloutPending', message: `${counts}: the Deployment has not reported availability yet` };
  if (available.status === 'True') return { status: 'True', reason: 'Available', message: counts };
  return {
    status: available.status === 'False' ? 'False' : 'Unknown',
    reason: available.reason ?? 'Unavailable',
    message: `${counts}: ${available.message ?? 'the Deployment is not available'}`,
  };
}
