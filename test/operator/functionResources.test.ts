import type { V1Container, V1Deployment, V1Service } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { type FunctionResource, parseFunction } from '../../api/v1alpha1/index.js';
import { desiredFunctionObjects, makeDeployment, makeService } from '../../operator/function/resources.js';

function fn(spec: Record<string, unknown>, name = 'validate-order'): FunctionResource {
  const parsed = parseFunction({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name, namespace: 'food' }, spec });
  parsed.metadata.uid = 'uid-1';
  parsed.metadata.generation = 1;
  return parsed;
}

const container = (d: V1Deployment): V1Container => d.spec!.template.spec!.containers[0]!;

interface Case<T> {
  name: string;
  given: FunctionResource;
  expect: (obj: T) => void;
}

const deploymentCases: Case<V1Deployment>[] = [
  {
    name: 'is named after the Function, in its namespace',
    given: fn({ image: 'img:1' }),
    expect: (d) => expect(d.metadata).toMatchObject({ name: 'validate-order', namespace: 'food' }),
  },
  {
    name: 'carries the recommended labels with managed-by=eventide',
    given: fn({ image: 'img:1' }),
    expect: (d) =>
      expect(d.metadata?.labels).toEqual({
        'app.kubernetes.io/name': 'validate-order',
        'app.kubernetes.io/component': 'function',
        'app.kubernetes.io/managed-by': 'eventide',
        'app.kubernetes.io/part-of': 'eventide',
      }),
  },
  {
    name: 'is controlled by the Function, blocking its deletion until the Deployment is gone',
    given: fn({ image: 'img:1' }),
    expect: (d) =>
      expect(d.metadata?.ownerReferences).toEqual([{ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', name: 'validate-order', uid: 'uid-1', controller: true, blockOwnerDeletion: true }]),
  },
  {
    name: 'selects pods by name and component only, so the selector never has to change',
    given: fn({ image: 'img:1' }),
    expect: (d) => expect(d.spec?.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'validate-order', 'app.kubernetes.io/component': 'function' }),
  },
  {
    name: 'runs the image with the port named http',
    given: fn({ image: 'registry.example.com/food/validate-order:1.4.2', port: 9000 }),
    expect: (d) => {
      expect(container(d).image).toBe('registry.example.com/food/validate-order:1.4.2');
      expect(container(d).ports).toEqual([{ name: 'http', containerPort: 9000, protocol: 'TCP' }]);
    },
  },
  {
    name: 'takes spec.replicas',
    given: fn({ image: 'img:1', replicas: 3 }),
    expect: (d) => expect(d.spec?.replicas).toBe(3),
  },
  {
    name: 'sets no replica count unless asked, so kubectl scale, an HPA or KEDA can own it',
    given: fn({ image: 'img:1' }),
    expect: (d) => expect(d.spec && 'replicas' in d.spec).toBe(false),
  },
  {
    name: 'scales down without losing work: a preStop wait, and a grace period past the longest delivery timeout',
    given: fn({ image: 'img:1' }),
    expect: (d) => {
      expect(container(d).lifecycle).toEqual({ preStop: { sleep: { seconds: 5 } } });
      expect(d.spec?.template.spec?.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30 + 5);
    },
  },
  {
    name: 'probes readiness and liveness over HTTP on the named port at the spec paths',
    given: fn({ image: 'img:1', readinessPath: '/ready', healthPath: '/live' }),
    expect: (d) => {
      expect(container(d).readinessProbe?.httpGet).toEqual({ path: '/ready', port: 'http' });
      expect(container(d).livenessProbe?.httpGet).toEqual({ path: '/live', port: 'http' });
    },
  },
  {
    name: 'sets PORT and then the user environment, the user winning on a clash',
    given: fn({ image: 'img:1', port: 8081, env: [{ name: 'A', value: '1' }] }),
    expect: (d) =>
      expect(container(d).env).toEqual([
        { name: 'PORT', value: '8081' },
        { name: 'A', value: '1' },
      ]),
  },
  {
    name: 'lets the user override PORT',
    given: fn({ image: 'img:1', env: [{ name: 'PORT', value: '1234' }] }),
    expect: (d) => expect(container(d).env).toEqual([{ name: 'PORT', value: '1234' }]),
  },
  {
    name: 'passes envFrom, resources, serviceAccountName and imagePullSecrets through',
    given: fn({
      image: 'img:1',
      envFrom: [{ secretRef: { name: 'creds' } }],
      resources: { requests: { cpu: '100m' }, limits: { memory: '128Mi' } },
      serviceAccountName: 'payments',
      imagePullSecrets: [{ name: 'regcred' }],
    }),
    expect: (d) => {
      expect(container(d).envFrom).toEqual([{ secretRef: { name: 'creds' } }]);
      expect(container(d).resources).toEqual({ requests: { cpu: '100m' }, limits: { memory: '128Mi' } });
      expect(d.spec?.template.spec?.serviceAccountName).toBe('payments');
      expect(d.spec?.template.spec?.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    },
  },
  {
    name: 'leaves optional pod fields unset when the spec has none',
    given: fn({ image: 'img:1' }),
    expect: (d) => {
      expect(d.spec?.template.spec).not.toHaveProperty('serviceAccountName');
      expect(d.spec?.template.spec).not.toHaveProperty('imagePullSecrets');
      expect(container(d)).not.toHaveProperty('resources');
      expect(container(d)).not.toHaveProperty('envFrom');
    },
  },
  {
    name: 'meets the restricted Pod Security profile with a read-only root filesystem and a writable /tmp',
    given: fn({ image: 'img:1' }),
    expect: (d) => {
      expect(d.spec?.template.spec?.securityContext).toEqual({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(container(d).securityContext).toEqual({
        runAsNonRoot: true,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(container(d).volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
      expect(d.spec?.template.spec?.volumes).toEqual([{ name: 'tmp', emptyDir: {} }]);
    },
  },
];

const serviceCases: Case<V1Service>[] = [
  {
    name: 'exposes port 80 to the container port named http',
    given: fn({ image: 'img:1', port: 9000 }),
    expect: (s) => expect(s.spec?.ports).toEqual([{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]),
  },
  {
    name: "selects the Deployment's pods",
    given: fn({ image: 'img:1' }),
    expect: (s) => expect(s.spec?.selector).toEqual(makeDeployment(fn({ image: 'img:1' })).spec?.selector.matchLabels),
  },
  {
    name: 'is controlled by the Function',
    given: fn({ image: 'img:1' }),
    expect: (s) => expect(s.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'Function', uid: 'uid-1', controller: true }),
  },
];

describe('makeDeployment', () => {
  it.each(deploymentCases)('$name', ({ given, expect: check }) => check(makeDeployment(given)));
});

describe('makeService', () => {
  it.each(serviceCases)('$name', ({ given, expect: check }) => check(makeService(given)));
});

describe('desiredFunctionObjects', () => {
  it('is a pure function of the Function: same input, same objects', () => {
    expect(desiredFunctionObjects(fn({ image: 'img:1' }))).toEqual(desiredFunctionObjects(fn({ image: 'img:1' })));
  });
  it('refuses a Function that was not read from the API server (no uid to own children by)', () => {
    const unsaved = fn({ image: 'img:1' });
    delete unsaved.metadata.uid;
    expect(() => desiredFunctionObjects(unsaved)).toThrow(/no uid/);
  });
});

describe('termination grace', () => {
  it('covers the preStop wait plus the longest delivery timeout of the triggers that target the function', async () => {
    const { terminationGraceSeconds } = await import('../../operator/function/resources.js');
    expect(terminationGraceSeconds({ longestDeliveryTimeoutMs: 30_000 })).toBe(40);
    expect(terminationGraceSeconds({ longestDeliveryTimeoutMs: 120_500 })).toBe(131);
    expect(terminationGraceSeconds({ longestDeliveryTimeoutMs: 1_000 })).toBe(30);
  });
});
