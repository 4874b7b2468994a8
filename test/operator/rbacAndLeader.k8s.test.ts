/**
 * The operator as the chart installs it: running as a ServiceAccount bound to exactly the chart's RBAC
 * (rendered with `helm template`), with leader election between replicas, in-process and as a child
 * process. kube-apiserver + etcd only: without kube-controller-manager nothing rewrites a Deployment's
 * status, so the test can set it to simulate a Deployment becoming available.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { V1Deployment, V1Lease } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { freePort } from '../../common/loopback.js';
import { dispatcherName } from '../../operator/eventtrigger/source.js';
import { type Operator, startOperator } from '../../operator/manager.js';
import { settingsWith } from '../../operator/settings.js';
import { CHART_DIR, helm } from '../chart/helmBinary.js';
import type { ControlPlane } from '../harness/controlPlane.js';
import { conditionOf, createNamespace, eventually, getJson, kubeConfigFrom, kubectlOk, REPO_ROOT, type StoredCondition, startClusterWithCrds } from './support.js';

const SYSTEM_NS = 'eventide-system';
const NS = 'kitchen';
const RBAC_KINDS = new Set(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);

let cp: ControlPlane;
let saKubeconfig: string;
let serviceAccount: string;
const operators: Operator[] = [];
let child: ChildProcess | undefined;
/** The chart's operator Deployment, applied as rendered (no controller runs it here): the Lease's owner. */
let operatorDeployment: { name: string; uid: string };

/** A logger that keeps every line, to assert the operator never hit a permission error. */
function recordingLogger(lines: string[]) {
  return pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
}

async function start(identity: string, lines: string[] = []): Promise<Operator> {
  const operator = await startOperator({
    kubeConfig: kubeConfigFrom(saKubeconfig),
    settings: settingsWith({ identity, leaderElect: true, namespace: SYSTEM_NS, metricsPort: 0, metricsHost: '127.0.0.1', workers: 2, leaseOwner: operatorDeployment.name }),
    logger: recordingLogger(lines),
  });
  operators.push(operator);
  return operator;
}

async function metric(operator: Operator | string, pattern: RegExp): Promise<number> {
  const base = typeof operator === 'string' ? operator : operator.opsUrl;
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

const reconciles = (op: Operator | string) => metric(op, /eventide_operator_reconciles_total\{kind="Function",result="success"\} (\d+)/);
const leaseHolder = async () => (await getJson<V1Lease>(cp, ['lease', 'eventide-operator', '-n', SYSTEM_NS]))?.spec?.holderIdentity;

function fnYaml(name: string): string {
  return JSON.stringify({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name, namespace: NS }, spec: { image: `registry.example.com/${name}:1` } });
}

beforeAll(async () => {
  cp = await startClusterWithCrds();
  await createNamespace(cp, SYSTEM_NS);
  await createNamespace(cp, NS);
  // Secrets readable in the test namespace only, as rbac.secretNamespaces grants them (the default, every
  // namespace through the ClusterRole, is what test/chart/apiserver.test.ts runs the operator with).
  const rendered = await helm(['template', 'eventide', CHART_DIR, '--namespace', SYSTEM_NS, '--set', `rbac.secretNamespaces={${NS}}`]);
  if (rendered.code !== 0) throw new Error(`helm template failed: ${rendered.stderr}`);
  const rbac = parseAllDocuments(rendered.stdout)
    .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string } } | null)
    .filter((d): d is { kind: string; metadata: { name: string } } => !!d?.kind && RBAC_KINDS.has(d.kind));
  expect(rbac.map((d) => d.kind).sort()).toEqual(['ClusterRole', 'ClusterRoleBinding', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'ServiceAccount']);
  // The harness creates the chart's ServiceAccount itself (with a token); the rest is applied as rendered.
  serviceAccount = rbac.find((d) => d.kind === 'ServiceAccount')!.metadata.name;
  saKubeconfig = await cp.makeServiceAccountKubeconfig(SYSTEM_NS, serviceAccount);
  const bindings = rbac.filter((d) => d.kind !== 'ServiceAccount');
  const deployment = parseAllDocuments(rendered.stdout)
    .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string } } | null)
    .find((d) => d?.kind === 'Deployment')!;
  await kubectlOk(cp, ['apply', '-f', '-'], JSON.stringify(deployment));
  const applied = (await getJson<{ metadata: { name: string; uid: string } }>(cp, ['deployment', deployment.metadata!.name!, '-n', SYSTEM_NS]))!;
  operatorDeployment = { name: applied.metadata.name, uid: applied.metadata.uid };
  await kubectlOk(cp, ['apply', '-f', '-'], bindings.map((d) => JSON.stringify(d)).join('\n---\n'));
  const whoami = await cp.kubectl(['auth', 'can-i', 'list', 'pods', '--kubeconfig', saKubeconfig]);
  expect(whoami.stdout.trim()).toBe('no'); // really a restricted identity, not the admin
}, 240_000);

afterAll(async () => {
  child?.kill('SIGKILL');
  for (const op of operators) await op.stop();
  await cp?.stop();
});

describe("operator with the chart's RBAC", () => {
  const lines: string[] = [];
  let leader: Operator;

  it('acquires the Lease and reconciles Functions, EventTriggers and Backfills end to end, with no permission error', async () => {
    leader = await start('replica-a', lines);
    await eventually('replica-a to lead', async () => leader.isLeader());
    expect(await leaseHolder()).toBe('replica-a');
    // Owned by the operator's Deployment, so helm uninstall garbage-collects it (the chart's RBAC suffices).
    const lease = await getJson<V1Lease>(cp, ['lease', 'eventide-operator', '-n', SYSTEM_NS]);
    expect(lease?.metadata?.ownerReferences).toEqual([{ apiVersion: 'apps/v1', kind: 'Deployment', name: operatorDeployment.name, uid: operatorDeployment.uid }]);

    await kubectlOk(cp, ['apply', '-f', '-'], fnYaml('approve-order'));
    await kubectlOk(cp, ['create', 'secret', 'generic', 'kitchen-db', '-n', NS, '--from-literal=url=postgres://kitchen@db:5432/kitchen']);
    await kubectlOk(
      cp,
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'eventide.dev/v1alpha1',
        kind: 'EventTrigger',
        metadata: { name: 'approval', namespace: NS },
        spec: { source: { connectionSecretRef: { name: 'kitchen-db' } }, table: { name: 'orders' }, function: { name: 'approve-order' }, filter: 'new.status == "paid"' },
      }),
    );
    await eventually(
      "the Function's Deployment and Service",
      async () => (await getJson(cp, ['deployment', 'approve-order', '-n', NS])) !== undefined && (await getJson(cp, ['service', 'approve-order', '-n', NS])) !== undefined,
    );
    const dispatcher = dispatcherName({ namespace: NS, secretName: 'kitchen-db', key: 'url' });
    await eventually('the dispatcher', async () => (await getJson(cp, ['deployment', dispatcher, '-n', NS])) !== undefined && (await getJson(cp, ['configmap', dispatcher, '-n', NS])) !== undefined);
    const trigger = await eventually("the trigger's status", async () => {
      const t = await getJson<{ status?: { conditions?: StoredCondition[] }; metadata: { finalizers?: string[] } }>(cp, ['eventtrigger', 'approval', '-n', NS]);
      return conditionOf(t, 'SourceReady')?.status === 'True' && conditionOf(t, 'FunctionResolved')?.status === 'True' ? t : undefined;
    });
    expect(trigger.metadata.finalizers).toContain('eventide.dev/dispatcher');
    // A Backfill: read (list/watch), carried into the dispatcher's ConfigMap, its status written (patch backfills/status).
    await kubectlOk(
      cp,
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'eventide.dev/v1alpha1',
        kind: 'Backfill',
        metadata: { name: 'approval-history', namespace: NS },
        spec: { trigger: { name: 'approval' } },
      }),
    );
    await eventually('the Backfill in the dispatcher config', async () =>
      ((await getJson<{ data?: Record<string, string> }>(cp, ['configmap', dispatcher, '-n', NS]))?.data?.['triggers.yaml'] ?? '').includes('kind: Backfill'),
    );
    await eventually("the Backfill's status", async () => {
      const b = await getJson<{ status?: { phase?: string; conditions?: StoredCondition[] } }>(cp, ['backfill', 'approval-history', '-n', NS]);
      return b?.status?.phase === 'Pending' && conditionOf(b, 'Accepted')?.reason === 'DispatcherPending';
    });
    // Events reach `kubectl describe` (needs events create).
    await kubectlOk(
      cp,
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'eventide.dev/v1alpha1',
        kind: 'EventTrigger',
        metadata: { name: 'bad-filter', namespace: NS },
        spec: { source: { connectionSecretRef: { name: 'kitchen-db' } }, table: { name: 'orders' }, function: { name: 'approve-order' }, filter: 'new.status ==' },
      }),
    );
    await eventually('an InvalidSpec event', async () => (await kubectlOk(cp, ['get', 'events', '-n', NS, '--field-selector', 'reason=InvalidSpec', '-o', 'name'])).trim() !== '');
    // Deleting runs the finalizer (patch on eventtriggers) and deletes the dispatcher objects.
    await kubectlOk(cp, ['delete', 'eventtrigger', 'approval', 'bad-filter', '-n', NS, '--wait=false']);
    await eventually('the triggers to be gone', async () => (await getJson(cp, ['eventtrigger', 'approval', '-n', NS])) === undefined);

    // A 403 appears in logs as a status field or the word (not as digits of a timestamp).
    const denied = lines.filter((l) => /forbidden|"(status|statusCode|code)":403\b/i.test(l));
    expect(denied).toEqual([]);
  });

  it("says so in the trigger's status when it may not read the Secrets of its namespace, and recovers once it may", async () => {
    const pantry = 'pantry';
    await createNamespace(cp, pantry);
    await kubectlOk(cp, ['create', 'secret', 'generic', 'pantry-db', '-n', pantry, '--from-literal=url=postgres://pantry@db:5432/pantry']);
    await kubectlOk(
      cp,
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'eventide.dev/v1alpha1',
        kind: 'EventTrigger',
        metadata: { name: 'stock', namespace: pantry },
        spec: { source: { connectionSecretRef: { name: 'pantry-db' } }, table: { name: 'stock' }, sink: { url: 'http://stock.example/hook' } },
      }),
    );
    const forbidden = await eventually('SourceReady=False, SecretsForbidden', async () => {
      const t = await getJson<{ status?: { conditions?: StoredCondition[] } }>(cp, ['eventtrigger', 'stock', '-n', pantry]);
      const condition = conditionOf(t, 'SourceReady');
      return condition?.status === 'False' && condition.reason === 'SecretsForbidden' ? condition : undefined;
    });
    expect(forbidden.message).toBe(
      'the operator may not read Secrets in namespace "pantry" (list forbidden); with the Helm chart, add the namespace to rbac.secretNamespaces or leave that list empty',
    );
    expect(conditionOf(await getJson(cp, ['eventtrigger', 'stock', '-n', pantry]), 'Ready')?.status).toBe('False');

    // What the chart grants for a listed namespace: the operator notices on its next list.
    await kubectlOk(cp, ['create', 'role', 'eventide-secrets', '-n', pantry, '--verb=get,list,watch', '--resource=secrets']);
    await kubectlOk(cp, ['create', 'rolebinding', 'eventide-secrets', '-n', pantry, '--role=eventide-secrets', `--serviceaccount=${SYSTEM_NS}:${serviceAccount}`]);
    await eventually(
      'SourceReady=True',
      async () => {
        const t = await getJson<{ status?: { conditions?: StoredCondition[] } }>(cp, ['eventtrigger', 'stock', '-n', pantry]);
        return conditionOf(t, 'SourceReady')?.status === 'True';
      },
      60_000,
    );
    await kubectlOk(cp, ['delete', 'eventtrigger', 'stock', '-n', pantry, '--wait=false']);
    await eventually('the trigger to be gone', async () => (await getJson(cp, ['eventtrigger', 'stock', '-n', pantry])) === undefined);
  }, 120_000);

  it('reports the Function Ready once its Deployment is available (status set by the test, as no kubelet runs)', async () => {
    const deployment = await getJson<V1Deployment>(cp, ['deployment', 'approve-order', '-n', NS]);
    const available = {
      status: {
        observedGeneration: deployment?.metadata?.generation,
        replicas: 1,
        readyReplicas: 1,
        availableReplicas: 1,
        updatedReplicas: 1,
        conditions: [{ type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' }],
      },
    };
    await kubectlOk(cp, ['patch', 'deployment', 'approve-order', '-n', NS, '--subresource=status', '--type=merge', '-p', JSON.stringify(available)]);
    const fn = await eventually('Ready=True', async () => {
      const f = await getJson<{ status?: { conditions?: StoredCondition[]; readyReplicas?: number } }>(cp, ['function', 'approve-order', '-n', NS]);
      return conditionOf(f, 'Ready')?.status === 'True' ? f : undefined;
    });
    expect(fn.status?.readyReplicas).toBe(1);
    expect(conditionOf(fn, 'DeploymentReady')).toMatchObject({ status: 'True', reason: 'Available', message: '1/1 replicas ready' });
  });

  it('a second replica stays passive while the first leads: ready, not leader, reconciles nothing', async () => {
    const standby = await start('replica-b');
    await standby.synced;
    expect((await fetch(`${standby.opsUrl}/readyz`)).status).toBe(200);
    await kubectlOk(cp, ['apply', '-f', '-'], fnYaml('assign-agent'));
    await eventually('the leader to create assign-agent', async () => (await getJson(cp, ['deployment', 'assign-agent', '-n', NS])) !== undefined);
    await new Promise((r) => setTimeout(r, 3000)); // more than a retry period
    expect(standby.isLeader()).toBe(false);
    expect(await metric(standby, /^eventide_operator_is_leader (\d+)$/m)).toBe(0);
    expect(await reconciles(standby)).toBe(0);
    expect(await leaseHolder()).toBe('replica-a');
  });

  it('the standby takes over when the leader stops (Lease released), and reconciles', async () => {
    const standby = operators[1]!;
    const stoppedAt = Date.now();
    await leader.stop();
    await eventually('replica-b to lead', async () => standby.isLeader(), 15_000, 100);
    // Released, not expired: the takeover is one retry period away, not a lease duration.
    expect(Date.now() - stoppedAt).toBeLessThan(8_000);
    expect(await leaseHolder()).toBe('replica-b');
    await kubectlOk(cp, ['apply', '-f', '-'], fnYaml('deliver-order'));
    await eventually('replica-b to create deliver-order', async () => (await getJson(cp, ['deployment', 'deliver-order', '-n', NS])) !== undefined);
    expect(await reconciles(standby)).toBeGreaterThan(0);
    expect(await metric(standby, /^eventide_operator_is_leader (\d+)$/m)).toBe(1);
  });

  it('runs as a child process (node operator/main.ts): stands by, takes over, and releases the Lease on SIGTERM', async () => {
    const port = await freePort();
    const output: string[] = [];
    child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(REPO_ROOT, 'operator', 'main.ts'),
        '--kubeconfig',
        saKubeconfig,
        '--leader-elect',
        `--namespace=${SYSTEM_NS}`,
        '--identity',
        'replica-c',
        '--metrics-port',
        String(port),
        '--metrics-host',
        '127.0.0.1',
        '--dispatcher-image',
        'ghcr.io/eventide-dev/eventide:test',
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } },
    );
    child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
    child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    const opsUrl = `http://127.0.0.1:${port}`;
    await eventually('the child to be ready', async () => (await fetch(`${opsUrl}/readyz`).catch(() => undefined))?.status === 200, 30_000);
    expect(await metric(opsUrl, /^eventide_operator_is_leader (\d+)$/m)).toBe(0);

    await operators[1]!.stop();
    await eventually('replica-c to lead', async () => (await leaseHolder()) === 'replica-c', 15_000);
    await kubectlOk(cp, ['apply', '-f', '-'], fnYaml('notify-customer'));
    await eventually('replica-c to create notify-customer', async () => (await getJson(cp, ['deployment', 'notify-customer', '-n', NS])) !== undefined);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await leaseHolder()).toBeFalsy();
    expect(output.join('')).toMatch(/"msg":"released the lease"/);
  });
});
