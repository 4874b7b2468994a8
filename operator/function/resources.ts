import type { V1Container, V1Deployment, V1EnvVar, V1Service } from '@kubernetes/client-node';
import type { FunctionResource } from '../../api/v1alpha1/index.js';
import { COMPONENT_FUNCTION, LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, MANAGED_BY, PART_OF } from '../labels.js';
import { ownerReference } from '../ownerRefs.js';
import { restrictedContainerSecurityContext, restrictedPodSecurityContext } from '../podSecurity.js';

/** The named container port the Service targets and the probes use. */
export const FUNCTION_PORT_NAME = 'http';
/** The port the Service exposes: callers use the plain URL without a port. */
export const SERVICE_PORT = 80;
export const FUNCTION_CONTAINER = 'function';

/** What a Function becomes. */
export interface FunctionObjects {
  deployment: V1Deployment;
  service: V1Service;
}

/** Labels that select a Function's pods; part of the Deployment's immutable selector, so never change them. */
export function functionSelector(fn: FunctionResource): Record<string, string> {
  return { [LABEL_NAME]: fn.metadata.name, [LABEL_COMPONENT]: COMPONENT_FUNCTION };
}

/** Labels on every object of a Function. */
export function functionLabels(fn: FunctionResource): Record<string, string> {
  return { ...functionSelector(fn), [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_PART_OF]: PART_OF };
}

/** The desired children of a Function: pure, from the Function alone. */
/** What the Function's pods must allow for: the longest delivery timeout of the triggers that target it. */
export interface FunctionServing {
  longestDeliveryTimeoutMs: number;
  /** The replicas to write (spec.replicas, or the autoscaler's count); none leaves the count to whoever scales the Deployment. */
  replicas?: number;
}

const DEFAULT_SERVING: FunctionServing = { longestDeliveryTimeoutMs: 30_000 };
/** How long a terminating pod keeps serving before SIGTERM: until the Service's endpoints no longer list it everywhere. */
export const PRE_STOP_SECONDS = 5;

export function desiredFunctionObjects(fn: FunctionResource, serving: FunctionServing = DEFAULT_SERVING): FunctionObjects {
  return { deployment: makeDeployment(fn, serving), service: makeService(fn) };
}

/**
 * Seconds a pod may take to stop: the preStop wait, then a request that arrived just before it was
 * taken out of the endpoints may run for the longest delivery timeout while the runtime drains.
 */
export function terminationGraceSeconds(serving: FunctionServing): number {
  return Math.max(30, PRE_STOP_SECONDS + Math.ceil(serving.longestDeliveryTimeoutMs / 1000) + 5);
}

/**
 * The Function's environment: PORT (the port the runtime should listen on, as Knative and Cloud Run
 * set it) then the user's variables; a user variable of the same name wins.
 */
function functionEnv(fn: FunctionResource): V1EnvVar[] {
  const user = fn.spec.env ?? [];
  const defaults: V1EnvVar[] = [{ name: 'PORT', value: String(fn.spec.port) }];
  return [...defaults.filter((d) => !user.some((u) => u.name === d.name)), ...user];
}

function functionContainer(fn: FunctionResource): V1Container {
  const { spec } = fn;
  return {
    name: FUNCTION_CONTAINER,
    image: spec.image,
    ports: [{ name: FUNCTION_PORT_NAME, containerPort: spec.port, protocol: 'TCP' }],
    env: functionEnv(fn),
    // Kept serving while the endpoint removal reaches every dispatcher; kubelet's own sleep, so the image needs no shell.
    lifecycle: { preStop: { sleep: { seconds: PRE_STOP_SECONDS } } },
    ...(spec.envFrom ? { envFrom: spec.envFrom } : {}),
    ...(spec.resources ? { resources: spec.resources } : {}),
    readinessProbe: {
      httpGet: { path: spec.readinessPath, port: FUNCTION_PORT_NAME },
      periodSeconds: 5,
      failureThreshold: 3,
    },
    livenessProbe: {
      httpGet: { path: spec.healthPath, port: FUNCTION_PORT_NAME },
      periodSeconds: 10,
      failureThreshold: 3,
    },
    securityContext: restrictedContainerSecurityContext(),
    // The root filesystem is read-only; most runtimes still want a scratch directory.
    volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
  };
}

/** The Function's Deployment, controlled by the Function. */
export function makeDeployment(fn: FunctionResource, serving: FunctionServing = DEFAULT_SERVING): V1Deployment {
  const { metadata, spec } = fn;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: metadata.name,
      namespace: metadata.namespace,
      labels: functionLabels(fn),
      ownerReferences: [ownerReference(fn, { controller: true })],
    },
    spec: {
      // Only when asked (or autoscaled): otherwise whoever scales (kubectl scale, an HPA, KEDA) owns the count.
      ...(serving.replicas !== undefined ? { replicas: serving.replicas } : spec.replicas !== undefined ? { replicas: spec.replicas } : {}),
      selector: { matchLabels: functionSelector(fn) },
      template: {
        metadata: { labels: functionLabels(fn) },
        spec: {
          ...(spec.serviceAccountName ? { serviceAccountName: spec.serviceAccountName } : {}),
          ...(spec.imagePullSecrets ? { imagePullSecrets: spec.imagePullSecrets } : {}),
          // Service links put every Service of the namespace into the environment: noise, and slow starts.
          enableServiceLinks: false,
          securityContext: restrictedPodSecurityContext(),
          // Scaling down loses no work: see terminationGraceSeconds and the container's preStop.
          terminationGracePeriodSeconds: terminationGraceSeconds(serving),
          containers: [functionContainer(fn)],
          volumes: [{ name: 'tmp', emptyDir: {} }],
        },
      },
    },
  };
}

/** The Function's Service: port 80 to the container's `http` port, controlled by the Function. */
export function makeService(fn: FunctionResource): V1Service {
  const { metadata } = fn;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: metadata.name,
      namespace: metadata.namespace,
      labels: functionLabels(fn),
      ownerReferences: [ownerReference(fn, { controller: true })],
    },
    spec: {
      type: 'ClusterIP',
      selector: functionSelector(fn),
      ports: [{ name: FUNCTION_PORT_NAME, port: SERVICE_PORT, targetPort: FUNCTION_PORT_NAME, protocol: 'TCP' }],
    },
  };
}
