import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from './controlPlane.js';

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

  it('serves the pinned version and basic reads as admin', async () => {
    const version = await cp.kubectl(['version', '-o', 'json']);
    expect(version.code, version.stderr).toBe(0);
    const parsed = JSON.parse(version.stdout) as { serverVersion: { gitVersion: string; major: string; minor: string } };
    expect(parsed.serverVersion.gitVersion).toMatch(/^v1\.\d+\.\d+$/);
    expect(Number(parsed.serverVersion.minor)).toBeGreaterThanOrEqual(34);

    const ns = await cp.kubectl(['get', 'ns', '-o', 'name']);
    expect(ns.code, ns.stderr).toBe(0);
    expect(ns.stdout).toContain('namespace/kube-system');
  }, TIMEOUT);

  it('creates a namespace and a ConfigMap', async () => {
    expect((await cp.kubectl(['create', 'namespace', 'harness'])).code).toBe(0);
    const created = await cp.kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm1', namespace: 'harness' }, data: { k: 'v' } }),
    );
    expect(created.code, created.stderr).toBe(0);
    const read = await cp.kubectl(['get', 'configmap', 'cm1', '-n', 'harness', '-o', 'jsonpath={.data.k}']);
    expect(read.stdout).toBe('v');
  }, TIMEOUT);

  it('enforces RBAC for a ServiceAccount identity', async () => {
    await cp.kubectl(['create', 'namespace', 'rbac']);
    const saKubeconfig = await cp.makeServiceAccountKubeconfig('rbac', 'nobody');
    const whoami = await cp.kubectl(['--kubeconfig', saKubeconfig, 'auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
    expect(whoami.stdout).toBe('system:serviceaccount:rbac:nobody');

    const denied = await cp.kubectl(['--kubeconfig', saKubeconfig, 'get', 'secrets', '-n', 'rbac']);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/Forbidden/);

    // Granting a Role makes the same call succeed.
    expect((await cp.kubectl(['create', 'role', 'read-secrets', '-n', 'rbac', '--verb=get,list', '--resource=secrets'])).code).toBe(0);
    expect(
      (await cp.kubectl(['create', 'rolebinding', 'read-secrets', '-n', 'rbac', '--role=read-secrets', '--serviceaccount=rbac:nobody'])).code,
    ).toBe(0);
    const allowed = await eventually(async () => {
      const r = await cp.kubectl(['--kubeconfig', saKubeconfig, 'get', 'secrets', '-n', 'rbac']);
      return r.code === 0 && r;
    }, 10_000, 'RBAC grant');
    expect(allowed.code).toBe(0);
  }, TIMEOUT);

  it('runs controllers: Deployment -> ReplicaSet -> Pods, and garbage-collects owned objects', async () => {
    await cp.kubectl(['create', 'namespace', 'apps']);
    const dep = await cp.kubectl(['create', 'deployment', 'web', '-n', 'apps', '--image=registry.invalid/web:1', '--replicas=2']);
    expect(dep.code, dep.stderr).toBe(0);

    const rsName = await eventually(async () => {
      const r = await cp.kubectl(['get', 'rs', '-n', 'apps', '-l', 'app=web', '-o', 'jsonpath={.items[*].metadata.name}']);
      return r.stdout.trim() || undefined;
    }, 60_000, 'ReplicaSet');
    expect(rsName).toMatch(/^web-/);
    await eventually(async () => {
      const r = await cp.kubectl(['get', 'pods', '-n', 'apps', '-l', 'app=web', '-o', 'name']);
      return r.stdout.trim().split('\n').filter(Boolean).length === 2;
    }, 60_000, 'two Pods');

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
    await eventually(async () => {
      const [cm, rs, pods] = await Promise.all([
        cp.kubectl(['get', 'configmap', 'owned-by-web', '-n', 'apps', '--ignore-not-found', '-o', 'name']),
        cp.kubectl(['get', 'rs', '-n', 'apps', '-o', 'name']),
        cp.kubectl(['get', 'pods', '-n', 'apps', '-o', 'name']),
      ]);
      return cm.stdout.trim() === '' && rs.stdout.trim() === '' && pods.stdout.trim() === '';
    }, 90_000, 'garbage collection of the ReplicaSet, Pods and owned ConfigMap');
  }, TIMEOUT);
});
