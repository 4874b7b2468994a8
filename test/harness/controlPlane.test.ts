import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlane, startControlPlane } from './controlPlane.js';

const TIMEOUT = 120_000;

/** Polls `fn` until it returns a truthy value. */
async function eventually<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('control plane harness', () => {
  let cp: ControlPlane;

  beforeAll(async () => {
    // Binaries come from globalSetup (or an earlier build.sh); build:false keeps a cold build from
    // silently eating the hook timeout.
    cp = await startControlPlane({ controllerManager: true, build: false });
  }, TIMEOUT);

  afterAll(async () => {
    await cp?.stop();
  }, TIMEOUT);

  it(
    'serves the pinned version and basic reads as admin',
    async () => {
      const version = await cp.kubectl(['version', '-o', 'json']);
      expect(version.code, version.stderr).toBe(0);
      const parsed = JSON.parse(version.stdout) as { serverVersion: { gitVersion: string; major: string; minor: string } };
      expect(parsed.serverVersion.gitVersion).toMatch(/^v1\.\d+\.\d+$/);
      expect(Number(parsed.serverVersion.minor)).toBeGreaterThanOrEqual(34);

      const ns = await cp.kubectl(['get', 'ns', '-o', 'name']);
      expect(ns.code, ns.stderr).toBe(0);
      expect(ns.stdout).toContain('namespace/kube-system');
    },
    TIMEOUT,
  );

  it(
    'creates a namespace and a ConfigMap',
    async () => {
      expect((await cp.kubectl(['create', 'namespace', 'harness'])).code).toBe(0);
      const created = await cp.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm1', namespace: 'harness' }, data: { k: 'v' } }));
      expect(created.code, created.stderr).toBe(0);
      const read = await cp.kubectl(['get', 'configmap', 'cm1', '-n', 'harness', '-o', 'jsonpath={.data.k}']);
      expect(read.stdout).toBe('v');
    },
    TIMEOUT,
  );

  it(
    'enforces RBAC for a ServiceAccount identity',
    async () => {
      await cp.kubectl(['create', 'namespace', 'rbac']);
      const saKubeconfig = await cp.makeServiceAccountKubeconfig('rbac', 'nobody');
      const whoami = await cp.kubectl(['--kubeconfig', saKubeconfig, 'auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
      expect(whoami.stdout).toBe('system:serviceaccount:rbac:nobody');

      const denied = await cp.kubectl(['--kubeconfig', saKubeconfig, 'get', 'secrets', '-n', 'rbac']);
      expect(denied.code).not.toBe(0);
      expect(denied.stderr).toMatch(/Forbidden/);

      // Granting a Role makes the same call succeed.
      expect((await cp.kubectl(['create', 'role', 'read-secrets', '-n', 'rbac', '--verb=get,list', '--resource=secrets'])).code).toBe(0);
      expect((await cp.kubectl(['create', 'rolebinding', 'read-secrets', '-n', 'rbac', '--role=read-secrets', '--serviceaccount=rbac:nobody'])).code).toBe(0);
      const allowed = await eventually(
        async () => {
          const r = await cp.kubectl(['--kubeconfig', saKubeconfig, 'get', 'secrets', '-n', 'rbac']);
          return r.code === 0 && r;
        },
        10_000,
        'RBAC grant',
      );
      expect(allowed.code).toBe(0);
    },
    TIMEOUT,
  );

  it(
    'runs controllers: Deployment -> ReplicaSet -> Pods, and garbage-collects owned objects',
    async () => {
      await cp.kubectl(['create', 'namespace', 'apps']);
      const dep = await cp.kubectl(['create', 'deployment', 'web', '-n', 'apps', '--image=registry.invalid/web:1', '--replicas=2']);
      expect(dep.code, dep.stderr).toBe(0);

      const rsName = await eventually(
        async () => {
          const r = await cp.kubectl(['get', 'rs', '-n', 'apps', '-l', 'app=web', '-o', 'jsonpath={.items[*].metadata.name}']);
          return r.stdout.trim() || undefined;
        },
        60_000,
        'ReplicaSet',
      );
      expect(rsName).toMatch(/^web-/);
      await eventually(
        async () => {
          const r = await cp.kubectl(['get', 'pods', '-n', 'apps', '-l', 'app=web', '-o', 'name']);
          return r.stdout.trim().split('\n').filter(Boolean).length === 2;
        },
        60_000,
        'two Pods',
      );

      // A ConfigMap owned by the Deployment goes away with it (background cascade by the GC).
      const uid = (await cp.kubectl(['get', 'deployment', 'web', '-n', 'apps', '-o', 'jsonpath={.metadata.uid}'])).stdout;
      const owned = await cp.kubectl(
        ['apply', '-f', '-'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name: 'owned-by-web',
            namespace: 'apps',
            ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid }],
          },
        }),
      );
      expect(owned.code, owned.stderr).toBe(0);

      const del = await cp.kubectl(['delete', 'deployment', 'web', '-n', 'apps', '--cascade=background', '--wait=false']);
      expect(del.code, del.stderr).toBe(0);
      await eventually(
        async () => {
          const [cm, rs, pods] = await Promise.all([
            cp.kubectl(['get', 'configmap', 'owned-by-web', '-n', 'apps', '--ignore-not-found', '-o', 'name']),
            cp.kubectl(['get', 'rs', '-n', 'apps', '-o', 'name']),
            cp.kubectl(['get', 'pods', '-n', 'apps', '-o', 'name']),
          ]);
          return cm.stdout.trim() === '' && rs.stdout.trim() === '' && pods.stdout.trim() === '';
        },
        90_000,
        'garbage collection of the ReplicaSet, Pods and owned ConfigMap',
      );
    },
    TIMEOUT,
  );
});

describe('control plane harness with kwok and a pod-ready delay', () => {
  const READY_DELAY_MS = 3_000;
  let cp: ControlPlane;

  beforeAll(async () => {
    cp = await startControlPlane({ controllerManager: true, kwok: true, podReadyDelayMs: READY_DELAY_MS, build: false });
    await cp.addFakeNodes(1);
  }, TIMEOUT);

  afterAll(async () => {
    await cp?.stop();
  }, TIMEOUT);

  interface PodState {
    phase: string;
    ready: boolean;
    podIP: string | undefined;
  }

  /** The single pod of `app=<app>` in `namespace`, or undefined while there is none. */
  async function podOf(namespace: string, app: string): Promise<PodState | undefined> {
    const r = await cp.kubectl(['get', 'pods', '-n', namespace, '-l', `app=${app}`, '-o', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as {
      items: { status?: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[] } }[];
    };
    const pod = list.items[0];
    if (!pod) return undefined;
    const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    return { phase: pod.status?.phase ?? 'Pending', ready, podIP: pod.status?.podIP };
  }

  it(
    'runs a pod at once but makes it Ready only after the delay; scaling to 0 deletes it',
    async () => {
      expect((await cp.kubectl(['create', 'namespace', 'slow'])).code).toBe(0);
      const createdAt = Date.now();
      const dep = await cp.kubectl(['create', 'deployment', 'slow', '-n', 'slow', '--image=registry.invalid/slow:1', '--replicas=1']);
      expect(dep.code, dep.stderr).toBe(0);

      // Running with an IP, not Ready: the state the delay adds.
      const running = await eventually(
        async () => {
          const pod = await podOf('slow', 'slow');
          return pod?.phase === 'Running' && pod;
        },
        30_000,
        'a Running pod',
      );
      const runningAt = Date.now();
      expect(running.ready).toBe(false);
      expect(running.podIP).toMatch(/^10\.244\./);

      await new Promise((r) => setTimeout(r, 1_000));
      expect((await podOf('slow', 'slow'))?.ready, 'Ready ~1 s after Running').toBe(false);

      await eventually(async () => (await podOf('slow', 'slow'))?.ready, READY_DELAY_MS + 10_000, 'the pod to be Ready');
      const readyAt = Date.now();
      expect(readyAt - runningAt).toBeGreaterThanOrEqual(0.8 * READY_DELAY_MS);
      expect(readyAt - createdAt).toBeLessThanOrEqual(READY_DELAY_MS + 10_000);

      const scaled = await cp.kubectl(['scale', 'deployment', 'slow', '-n', 'slow', '--replicas=0']);
      expect(scaled.code, scaled.stderr).toBe(0);
      await eventually(async () => (await podOf('slow', 'slow')) === undefined, 30_000, 'the pod to be deleted');
    },
    TIMEOUT,
  );
});
