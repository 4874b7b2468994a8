/**
 * Function reconciliation against a real kube-apiserver + etcd + kube-controller-manager (Deployment
 * controller and garbage collector; no kubelet, so pods never run), with the operator in-process.
 */

import type { V1Deployment, V1Service } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Operator, startOperator } from '../../operator/manager.js';
import { settingsWith } from '../../operator/settings.js';
import type { ControlPlane } from '../harness/controlPlane.js';
import { CRDS_DIR, conditionOf, createNamespace, eventually, getJson, kubeConfigFrom, kubectlOk, type StoredCondition, startClusterWithCrds, testLogger } from './support.js';

const NS = 'food';

interface FunctionJson {
  metadata: { uid: string; generation: number };
  status?: { conditions?: StoredCondition[]; observedGeneration?: number; readyReplicas?: number; url?: string };
}

let cp: ControlPlane;
let operator: Operator;

const fnYaml = (name: string, spec: string) => `apiVersion: eventide.dev/v1alpha1
kind: Function
metadata: { name: ${name}, namespace: ${NS} }
spec:
${spec}
`;

beforeAll(async () => {
  // kwok plays the kubelet once the tests add a fake node: until then no pod runs.
  cp = await startClusterWithCrds({ controllerManager: true, kwok: true });
  await createNamespace(cp, NS);
  operator = await startOperator({
    kubeConfig: kubeConfigFrom(cp.kubeconfigPath),
    settings: settingsWith({ metricsPort: 0, metricsHost: '127.0.0.1', workers: 2 }),
    logger: testLogger(),
  });
  await operator.synced;
}, 240_000);

afterAll(async () => {
  await operator?.stop();
  await cp?.stop();
});

describe('CRDs', () => {
  it('install with kubectl apply -f crds/ and are established', async () => {
    const again = await cp.kubectl(['apply', '-f', CRDS_DIR]);
    expect(again.code, again.stderr).toBe(0);
    const crds = await kubectlOk(cp, ['get', 'crd', '-o', 'name']);
    expect(crds).toContain('functions.eventide.dev');
    expect(crds).toContain('eventtriggers.eventide.dev');
    expect(crds).toContain('backfills.eventide.dev');
  });

  it('reject a Function whose port is out of range, naming the field', async () => {
    const result = await cp.kubectl(['apply', '-f', '-'], fnYaml('bad-port', '  image: img:1\n  port: 70000'));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/spec\.port/);
    expect(result.stderr).toMatch(/65535/);
  });

  it("reject an EventTrigger with both a function and a sink, with the rule's message", async () => {
    const result = await cp.kubectl(
      ['apply', '-f', '-'],
      `apiVersion: eventide.dev/v1alpha1
kind: EventTrigger
metadata: { name: both, namespace: ${NS} }
spec:
  source: { connectionSecretRef: { name: orders-db, key: url } }
  table: { name: orders }
  function: { name: validate-order }
  sink: { url: https://example.com/hook }
`,
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('exactly one of spec.function or spec.sink must be set');
  });
});

describe('Function', () => {
  it('becomes a Deployment and a Service owned by it, and reports why it is not Ready while no pod runs', async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], fnYaml('validate-order', '  image: registry.example.com/food/validate-order:1.4.2\n  port: 8080'));
    const fn = await eventually('the Function to be read back', () => getJson<FunctionJson>(cp, ['function', 'validate-order', '-n', NS]));

    const deployment = await eventually('the Deployment', () => getJson<V1Deployment>(cp, ['deployment', 'validate-order', '-n', NS]));
    expect(deployment.metadata?.ownerReferences).toEqual([
      { apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', name: 'validate-order', uid: fn.metadata.uid, controller: true, blockOwnerDeletion: true },
    ]);
    expect(deployment.metadata?.labels).toMatchObject({
      'app.kubernetes.io/name': 'validate-order',
      'app.kubernetes.io/component': 'function',
      'app.kubernetes.io/managed-by': 'eventide',
    });
    const container = deployment.spec?.template.spec?.containers[0];
    expect(container?.image).toBe('registry.example.com/food/validate-order:1.4.2');
    expect(container?.ports?.[0]).toMatchObject({ name: 'http', containerPort: 8080 });
    expect(container?.securityContext).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
    // Server-side apply: the operator's field manager owns what it set.
    const managed = JSON.parse(await kubectlOk(cp, ['get', 'deployment', 'validate-order', '-n', NS, '-o', 'json', '--show-managed-fields'])) as V1Deployment;
    expect(managed.metadata?.managedFields?.some((m) => m.manager === 'eventide-operator' && m.operation === 'Apply')).toBe(true);

    const service = await eventually('the Service', () => getJson<V1Service>(cp, ['service', 'validate-order', '-n', NS]));
    expect(service.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'Function', uid: fn.metadata.uid, controller: true });
    expect(service.spec?.ports).toEqual([expect.objectContaining({ name: 'http', port: 80, targetPort: 'http' })]);

    // The Deployment controller runs but there is no node yet: the pod stays Pending, the Deployment unavailable.
    const status = await eventually("Ready=False with the Deployment's reason", async () => {
      const now = await getJson<FunctionJson>(cp, ['function', 'validate-order', '-n', NS]);
      return conditionOf(now, 'Ready')?.reason === 'MinimumReplicasUnavailable' ? now?.status : undefined;
    });
    expect(conditionOf({ status }, 'Ready')).toMatchObject({ status: 'False', message: expect.stringContaining('0/1 replicas ready') });
    expect(conditionOf({ status }, 'DeploymentReady')).toMatchObject({ status: 'False', reason: 'MinimumReplicasUnavailable' });
    expect(conditionOf({ status }, 'ServiceReady')).toMatchObject({ status: 'True' });
    expect(status).toMatchObject({ readyReplicas: 0, observedGeneration: fn.metadata.generation, url: `http://validate-order.${NS}.svc.cluster.local` });
  });

  it('turns Ready once a node runs its pod (kwok), with ready replicas and a moved lastTransitionTime', async () => {
    const before = await getJson<FunctionJson>(cp, ['function', 'validate-order', '-n', NS]);
    const readyBefore = conditionOf(before, 'Ready');
    await new Promise((r) => setTimeout(r, 1100)); // condition times have second precision
    await cp.addFakeNodes(1);
    const status = await eventually(
      'Ready=True',
      async () => {
        const now = await getJson<FunctionJson>(cp, ['function', 'validate-order', '-n', NS]);
        return conditionOf(now, 'Ready')?.status === 'True' ? now?.status : undefined;
      },
      60_000,
    );
    expect(status).toMatchObject({ readyReplicas: 1, observedGeneration: 1 });
    expect(conditionOf({ status }, 'DeploymentReady')).toMatchObject({ status: 'True' });
    expect(conditionOf({ status }, 'Ready')?.lastTransitionTime).not.toBe(readyBefore?.lastTransitionTime);
    expect(conditionOf({ status }, 'ServiceReady')?.lastTransitionTime).toBe(conditionOf(before, 'ServiceReady')?.lastTransitionTime);
    const pods = JSON.parse(await kubectlOk(cp, ['get', 'pods', '-n', NS, '-l', 'app.kubernetes.io/name=validate-order', '-o', 'json'])) as { items: { status?: { phase?: string } }[] };
    expect(pods.items.map((p) => p.status?.phase)).toEqual(['Running']);
  });

  it('scales with spec.replicas: 3 ready replicas, then 0 (still Ready: nothing is asked to run)', async () => {
    await kubectlOk(cp, ['patch', 'function', 'validate-order', '-n', NS, '--type=merge', '-p', '{"spec":{"replicas":3}}']);
    await eventually(
      '3 ready replicas',
      async () => {
        const now = await getJson<FunctionJson>(cp, ['function', 'validate-order', '-n', NS]);
        return now?.status?.readyReplicas === 3 && conditionOf(now, 'Ready')?.status === 'True' && now.status.observedGeneration === 2;
      },
      60_000,
    );
    await kubectlOk(cp, ['patch', 'function', 'validate-order', '-n', NS, '--type=merge', '-p', '{"spec":{"replicas":0}}']);
    // The pods take a moment to go; the status follows the Deployment's down to 0 ready replicas.
    await eventually(
      '0 ready replicas, Ready',
      async () => {
        const now = await getJson<FunctionJson>(cp, ['function', 'validate-order', '-n', NS]);
        return now?.status?.observedGeneration === 3 && (now.status.readyReplicas ?? 0) === 0 && conditionOf(now, 'Ready')?.status === 'True';
      },
      60_000,
    );
    const deployment = await getJson<V1Deployment>(cp, ['deployment', 'validate-order', '-n', NS]);
    expect(deployment?.spec?.replicas).toBe(0);
  });

  it('has a /scale subresource: kubectl scale on the Function reaches the Deployment, and status reports replicas and the selector', async () => {
    await kubectlOk(cp, ['scale', 'function', 'validate-order', '-n', NS, '--replicas=2']);
    await eventually('2 replicas in the Deployment', async () => (await getJson<V1Deployment>(cp, ['deployment', 'validate-order', '-n', NS]))?.spec?.replicas === 2);
    const scale = await eventually(
      'the scale subresource reports 2 replicas',
      async () => {
        const now = JSON.parse(await kubectlOk(cp, ['get', '--raw', `/apis/eventide.dev/v1alpha1/namespaces/${NS}/functions/validate-order/scale`])) as {
          spec: { replicas: number };
          status: { replicas: number; selector?: string };
        };
        return now.status.replicas === 2 ? now : undefined;
      },
      60_000,
    );
    expect(scale.spec.replicas).toBe(2);
    expect(scale.status.selector).toContain('app.kubernetes.io/name=validate-order');
    const table = await eventually(
      'kubectl get fn shows 2 replicas, 2 available',
      async () => {
        const out = await kubectlOk(cp, ['get', 'fn', 'validate-order', '-n', NS]);
        // Desired and Scaling are the autoscaler's (spec.scale): empty here.
        return /True\s+Ready\s+2\s+2\s/.test(out) ? out : undefined;
      },
      60_000,
    );
    expect(table).toMatch(/DESIRED\s+REPLICAS\s+AVAILABLE\s+SCALING/);
  });

  it('a Function without spec.replicas leaves the count to whoever scales the Deployment', async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: 'self-scaled', namespace: NS }, spec: { image: 'img:1' } }));
    await eventually('its Deployment with the default single replica', async () => (await getJson<V1Deployment>(cp, ['deployment', 'self-scaled', '-n', NS]))?.spec?.replicas === 1);
    await kubectlOk(cp, ['scale', 'deployment', 'self-scaled', '-n', NS, '--replicas=3']);
    // A change of the Function makes the operator apply again: the count it does not own stays.
    await kubectlOk(cp, ['patch', 'function', 'self-scaled', '-n', NS, '--type=merge', '-p', '{"spec":{"image":"img:2"}}']);
    await eventually('the new image applied', async () => (await getJson<V1Deployment>(cp, ['deployment', 'self-scaled', '-n', NS]))?.spec?.template.spec?.containers[0]?.image === 'img:2');
    expect((await getJson<V1Deployment>(cp, ['deployment', 'self-scaled', '-n', NS]))?.spec?.replicas).toBe(3);
    await kubectlOk(cp, ['delete', 'function', 'self-scaled', '-n', NS]);
  });

  it("rolls a new image into the Deployment when the Function's image changes", async () => {
    await kubectlOk(cp, ['patch', 'function', 'validate-order', '-n', NS, '--type=merge', '-p', '{"spec":{"image":"registry.example.com/food/validate-order:1.5.0"}}']);
    await eventually('the new image in the Deployment', async () => {
      const d = await getJson<V1Deployment>(cp, ['deployment', 'validate-order', '-n', NS]);
      return d?.spec?.template.spec?.containers[0]?.image === 'registry.example.com/food/validate-order:1.5.0';
    });
  });

  it("reverts someone else's edit of the Deployment's image", async () => {
    await kubectlOk(cp, ['set', 'image', 'deployment/validate-order', '-n', NS, 'function=evil.example.com/miner:latest']);
    await eventually("the Function's image back in the Deployment", async () => {
      const d = await getJson<V1Deployment>(cp, ['deployment', 'validate-order', '-n', NS]);
      return d?.spec?.template.spec?.containers[0]?.image === 'registry.example.com/food/validate-order:1.5.0';
    });
  });

  it("leaves fields it does not manage alone (another manager's annotation survives re-apply)", async () => {
    await kubectlOk(cp, ['annotate', 'deployment/validate-order', '-n', NS, 'example.com/owner=payments-team']);
    await kubectlOk(cp, ['patch', 'function', 'validate-order', '-n', NS, '--type=merge', '-p', '{"spec":{"replicas":2}}']);
    const d = await eventually('replicas 2', async () => {
      const now = await getJson<V1Deployment>(cp, ['deployment', 'validate-order', '-n', NS]);
      return now?.spec?.replicas === 2 ? now : undefined;
    });
    expect(d.metadata?.annotations?.['example.com/owner']).toBe('payments-team');
  });

  it('recreates a Service someone deleted', async () => {
    const before = await getJson<V1Service>(cp, ['service', 'validate-order', '-n', NS]);
    await kubectlOk(cp, ['delete', 'service', 'validate-order', '-n', NS, '--wait=false']);
    await eventually('a new Service', async () => {
      const s = await getJson<V1Service>(cp, ['service', 'validate-order', '-n', NS]);
      return s !== undefined && s.metadata?.uid !== before?.metadata?.uid;
    });
  });

  it('deploys environment, resources and pull secrets as given', async () => {
    await kubectlOk(
      cp,
      ['apply', '-f', '-'],
      fnYaml(
        'process-payment',
        [
          '  image: registry.example.com/food/process-payment:2.0.0',
          '  env: [{ name: PAYMENT_PROVIDER, value: stripe }]',
          '  envFrom: [{ secretRef: { name: payment-keys } }]',
          '  resources: { requests: { cpu: 100m, memory: 64Mi } }',
          '  imagePullSecrets: [{ name: regcred }]',
          '  serviceAccountName: payments',
        ].join('\n'),
      ),
    );
    const d = await eventually('the Deployment', () => getJson<V1Deployment>(cp, ['deployment', 'process-payment', '-n', NS]));
    const container = d.spec?.template.spec?.containers[0];
    expect(container?.env).toContainEqual({ name: 'PAYMENT_PROVIDER', value: 'stripe' });
    expect(container?.envFrom).toEqual([{ secretRef: { name: 'payment-keys' } }]);
    expect(container?.resources?.requests).toEqual({ cpu: '100m', memory: '64Mi' });
    expect(d.spec?.template.spec?.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(d.spec?.template.spec?.serviceAccountName).toBe('payments');
  });

  it('is cleaned up with its Function: the garbage collector removes Deployment and Service', async () => {
    await kubectlOk(cp, ['delete', 'function', 'validate-order', '-n', NS]);
    await eventually(
      'Deployment and Service to be gone',
      async () => (await getJson(cp, ['deployment', 'validate-order', '-n', NS])) === undefined && (await getJson(cp, ['service', 'validate-order', '-n', NS])) === undefined,
      60_000,
    );
  });

  it('exposes reconcile metrics, the leader gauge and health endpoints', async () => {
    const metrics = await (await fetch(`${operator.opsUrl}/metrics`)).text();
    expect(metrics).toMatch(/eventide_operator_reconciles_total\{kind="Function",result="success"\} [1-9]/);
    expect(metrics).toMatch(/eventide_operator_reconcile_duration_seconds_bucket\{le="[^"]+",kind="Function"\}/);
    expect(metrics).toMatch(/eventide_operator_workqueue_depth\{kind="Function"\} 0/);
    expect(metrics).toMatch(/eventide_operator_is_leader 1/);
    expect(metrics).toContain('eventide_operator_reconcile_errors_total');
    expect((await fetch(`${operator.opsUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${operator.opsUrl}/readyz`)).status).toBe(200);
  });
});
