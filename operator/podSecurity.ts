import type { V1PodSecurityContext, V1SecurityContext } from '@kubernetes/client-node';

/** Pod-level settings of the Pod Security "restricted" profile. */
export function restrictedPodSecurityContext(): V1PodSecurityContext {
  return { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } };
}

/** Container-level settings of the Pod Security "restricted" profile, plus a read-only root filesystem. */
export function restrictedContainerSecurityContext(): V1SecurityContext {
  return {
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}
