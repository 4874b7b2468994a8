/**
 * Functions scale with their load, to zero and back, on a real kube-apiserver + controller-manager with
 * kwok pods that become Ready only after a delay (a container start is not instant), the operator
 * in-process, and the real dispatcher process it deploys (DispatcherKubelet). The function is a local
 * server that listens only while its Service has a ready endpoint, as kube-proxy lets connections
 * through only then (EndpointGatedServer): so "delivery starts once endpoints are ready" and "no event
 * is counted as a failed attempt while waiting" are what the dispatcher actually did.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { V1Deployment } from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTEMPT_HEADER } from '../../api/v1alpha1/index.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { dispatcherName } from '../../operator/eventtrigger/source.js';
import { type Operator, startOperator } from '../../operator/manager.js';
import { settingsWith } from '../../operator/settings.js';
import type { ControlPlane } from '../harness/controlPlane.js';
import { ClusterDns, DispatcherKubelet } from '../harness/dispatcherKubelet.js';
import { EndpointGatedServer } from '../harness/endpointGate.js';
import { createNamespace, eventually, getJson, kubeConfigFrom, kubectlOk, startClusterWithCrds, testLogger } from '../operator/support.js';

// A namespace and address no other test uses: the cluster DNS names are host-wide (/etc/hosts).
const NS = 'system-scale';
const FUNCTION_ADDRESS = '127.0.0.91';
const POD_READY_DELAY_MS = 2000;
const dispatcher = dispatcherName({ namespace: NS, secretName: 'orders-db', key: 'url' });

interface FunctionJson {
  spec: { replicas?: number };
  status?: { replicas?: number; readyReplicas?: number; autoscaling?: { desiredReplicas: number; reason: string; message: string; lastScaleTime?: string } };
}

let cp: ControlPlane;
let operator: Operator;
let postgres: EmbeddedPostgres;
let dns: ClusterDns;
let kubelet: DispatcherKubelet;
let gate: EndpointGatedServer;
let db: pg.Client;
/** Requests the function received: attempt header, subject, when. */
const received: { attempt: string; subject: string; at: number }[] = [];

const apply = (objects: unknown[]) => kubectlOk(cp, ['apply', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n---\n'));
const deploymentReplicas = async (name: string) => (await getJson<V1Deployment>(cp, ['deployment', name, '-n', NS]))?.spec?.replicas;
const getFunction = (name: string) => getJson<FunctionJson>(cp, ['function', name, '-n', NS]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function handler(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  req.on('end', () => {
    received.push({ attempt: String(req.headers[ATTEMPT_HEADER]), subject: String(req.headers['ce-subject']), at: Date.now() });
    // A little work per event, so a burst keeps several pods' worth in flight.
    setTimeout(() => res.writeHead(200).end(), 100);
  });
}

async function dispatcherMetric(series: string): Promise<number> {
  const text = await (await fetch(`http://${dispatcher}.${NS}.svc.cluster.local:9090/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

beforeAll(async () => {
  [cp, postgres] = await Promise.all([
    startClusterWithCrds({ controllerManager: true, kwok: true, podReadyDelayMs: POD_READY_DELAY_MS, controllerManagerArgs: ['--horizontal-pod-autoscaler-sync-period=1s'] }),
    startEmbeddedPostgres(),
  ]);
  await cp.addFakeNodes(1);
  await createNamespace(cp, NS);
  db = new pg.Client({ connectionString: postgres.url });
  db.on('error', () => undefined);
  await db.connect();
  await db.query('CREATE TABLE public.orders (id int PRIMARY KEY, total int NOT NULL)');

  dns = new ClusterDns();
  dns.add(`burst.${NS}.svc.cluster.local`, FUNCTION_ADDRESS);
  const kubeConfig = kubeConfigFrom(cp.kubeconfigPath);
  gate = await EndpointGatedServer.start({ kubeConfig, namespace: NS, service: 'burst', host: FUNCTION_ADDRESS, port: 80, handler });
  operator = await startOperator({
    kubeConfig,
    settings: settingsWith({ metricsPort: 0, metricsHost: '127.0.0.1', workers: 2, dispatcherImage: 'ghcr.io/eventide-dev/eventide:test' }),
    logger: testLogger(),
  });
  await operator.synced;
  // Dispatcher addresses of their own: operatorDispatcher.test.ts may run at the same time from .10 on.
  kubelet = new DispatcherKubelet(kubeConfig, NS, dns, { firstAddress: 110 });
  kubelet.start();
  await apply([
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'orders-db', namespace: NS }, stringData: { url: postgres.url } },
    {
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'Function',
      metadata: { name: 'burst', namespace: NS },
      spec: { image: 'example.com/burst:1', scale: { min: 0, max: 5, target: 10, scaleDownDelay: '3s', idleTimeout: '6s' } },
    },
    {
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'EventTrigger',
      metadata: { name: 'orders-to-burst', namespace: NS },
      spec: {
        source: { connectionSecretRef: { name: 'orders-db', key: 'url' }, dropSlotOnDelete: true },
        table: { name: 'orders' },
        operations: ['insert'],
        ordering: 'none',
        function: { name: 'burst' },
        // Few retries with short waits: a burst that burned attempts while no pod was ready would show.
        delivery: { retries: 3, backoff: { delay: '100ms', maxDelay: '200ms' } },
      },
    },
  ]);
  // The trigger is served before the burst: the dispatcher runs and reads the slot.
  await eventually(
    'the trigger Ready',
    async () => {
      const t = await getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(cp, ['eventtrigger', 'orders-to-burst', '-n', NS]);
      return t?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    },
    120_000,
  );
}, 300_000);

afterAll(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await gate?.close();
  dns?.restore();
  await db?.end().catch(() => undefined);
  await Promise.all([cp?.stop(), postgres?.destroy()]);
}, 120_000);

describe('a Function with spec.scale follows its demand', () => {
  it('starts at zero: the Deployment is created with 0 replicas and the Function is Ready', async () => {
    expect(await deploymentReplicas('burst')).toBe(0);
    const fn = await eventually(
      'the Function Ready at zero',
      async () => {
        const f = await getJson<FunctionJson & { status?: { conditions?: { type: string; status: string }[] } }>(cp, ['function', 'burst', '-n', NS]);
        return f?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? f : undefined;
      },
      60_000,
    );
    expect(fn.status?.autoscaling).toMatchObject({ desiredReplicas: 0 });
    expect(gate.isOpen).toBe(false);
  });

  it('a burst on the Function at zero: replicas rise to ceil(demand/target) within seconds, delivery starts once a pod is ready, no attempt is spent waiting, nothing is lost', async () => {
    const insertedAt = Date.now();
    await db.query('INSERT INTO orders SELECT g, g FROM generate_series(1, 40) g');
    // 40 events pending, target 10 per pod: 4 pods, asked for at once (not one at a time).
    const scaledAt = await eventually('the Deployment asks for 4 replicas', async () => ((await deploymentReplicas('burst')) === 4 ? Date.now() : undefined), 30_000, 50);
    expect(scaledAt - insertedAt).toBeLessThan(5000);
    const opened = await gate.waitFor('open', 30_000);
    // No pod is ready before the kwok delay: the first delivery waits for it, and comes soon after.
    expect(opened - scaledAt).toBeGreaterThanOrEqual(POD_READY_DELAY_MS * 0.8);
    await eventually('all 40 delivered', async () => new Set(received.map((r) => r.subject)).size >= 40, 30_000);
    expect(Math.min(...received.map((r) => r.at))).toBeGreaterThanOrEqual(opened);
    expect(received[0]!.at - opened).toBeLessThan(2000);
    // Every event arrived on its first attempt: waiting for the pod cost no retries.
    expect(received.map((r) => r.attempt)).toEqual(Array(received.length).fill('1'));
    expect(received.length).toBe(40);
    expect(await dispatcherMetric(`eventide_dispatcher_retries_total{trigger="${NS}/orders-to-burst"}`)).toBe(0);
    expect(await dispatcherMetric(`eventide_dispatcher_deliveries_total{trigger="${NS}/orders-to-burst",outcome="held"}`)).toBeGreaterThan(0);

    const fn = await getFunction('burst');
    expect(fn?.status?.autoscaling).toMatchObject({ desiredReplicas: 4, reason: 'ScaleUp' });
    expect(fn?.status?.autoscaling?.message).toContain('target 10 per pod');
    const events = await kubectlOk(cp, [
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.kind=Function,involvedObject.name=burst',
      '-o',
      'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}',
    ]);
    expect(events).toMatch(/ScaledUp: 0 → 4 replicas: 40 events pending/);
    const table = await kubectlOk(cp, ['get', 'fn', 'burst', '-n', NS]);
    expect(table).toMatch(/DESIRED\s+REPLICAS\s+AVAILABLE\s+SCALING/);
    expect(table).toMatch(/\s4\s+4\s+4\s+ScaleUp/);
  }, 90_000);

  it('idle: back to zero after scaleDownDelay and idleTimeout, with an event and the reason in status', async () => {
    const idleSince = Math.max(...received.map((r) => r.at));
    const zeroAt = await eventually('the Deployment at 0 replicas', async () => ((await deploymentReplicas('burst')) === 0 ? Date.now() : undefined), 60_000, 100);
    // Not before the idle timeout (6 s) has passed with nothing pending — counted from the operator's
    // last reading that saw demand, which may precede the last delivery by one read interval (1 s).
    expect(zeroAt - idleSince).toBeGreaterThanOrEqual(6000 - 1000);
    expect(zeroAt - idleSince).toBeLessThan(20_000);
    await gate.waitFor('closed', 30_000);
    const fn = await eventually('status says Idle', async () => {
      const f = await getFunction('burst');
      return f?.status?.autoscaling?.reason === 'Idle' ? f : undefined;
    });
    expect(fn.status?.autoscaling?.desiredReplicas).toBe(0);
    const events = await kubectlOk(cp, [
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.kind=Function,involvedObject.name=burst',
      '-o',
      'jsonpath={range .items[*]}{.reason}{"\\n"}{end}',
    ]);
    expect(events).toContain('ScaledToZero');
    const metrics = await (await fetch(`${operator.opsUrl}/metrics`)).text();
    expect(metrics).toContain(`eventide_operator_function_desired_replicas{function="${NS}/burst"} 0`);
    expect(metrics).toContain(`eventide_operator_scale_decisions_total{function="${NS}/burst",direction="up"}`);
  }, 90_000);

  it('spec.replicas and spec.scale are exclusive: the API server rejects both, and kubectl scale on an autoscaled Function', async () => {
    const both = await cp.kubectl(['patch', 'function', 'burst', '-n', NS, '--type=merge', '-p', '{"spec":{"replicas":2}}']);
    expect(both.code).not.toBe(0);
    expect(both.stderr).toContain('spec.replicas and spec.scale are exclusive');
    const scaled = await cp.kubectl(['scale', 'function', 'burst', '-n', NS, '--replicas=3']);
    expect(scaled.code).not.toBe(0);
    expect(scaled.stderr).toContain('spec.replicas and spec.scale are exclusive');
  });
});

describe('a Function without spec.scale: whoever scales it owns the count', () => {
  beforeAll(async () => {
    await apply([{ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: 'fixed', namespace: NS }, spec: { image: 'example.com/fixed:1' } }]);
    await eventually('its Deployment', async () => (await deploymentReplicas('fixed')) === 1);
  });

  it('kubectl scale on the Function sticks: the Deployment follows and a later change of the Function keeps it', async () => {
    await kubectlOk(cp, ['scale', 'function', 'fixed', '-n', NS, '--replicas=2']);
    await eventually('the Deployment at 2', async () => (await deploymentReplicas('fixed')) === 2);
    await kubectlOk(cp, ['patch', 'function', 'fixed', '-n', NS, '--type=merge', '-p', '{"spec":{"image":"example.com/fixed:2"}}']);
    await eventually('the new image applied', async () => (await getJson<V1Deployment>(cp, ['deployment', 'fixed', '-n', NS]))?.spec?.template.spec?.containers[0]?.image === 'example.com/fixed:2');
    expect(await deploymentReplicas('fixed')).toBe(2);
    expect((await getFunction('fixed'))?.spec.replicas).toBe(2);
  });

  it("an HPA pointed at the Function's scale subresource sets the count and the operator does not fight it", async () => {
    // No metrics server here: the HPA still enforces its minimum through /scale, which is what we need.
    await apply([
      {
        apiVersion: 'autoscaling/v2',
        kind: 'HorizontalPodAutoscaler',
        metadata: { name: 'fixed', namespace: NS },
        spec: {
          scaleTargetRef: { apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', name: 'fixed' },
          minReplicas: 3,
          maxReplicas: 5,
          metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } }],
        },
      },
    ]);
    await eventually('the HPA scaled the Function to 3', async () => (await getFunction('fixed'))?.spec.replicas === 3, 60_000);
    await eventually('the Deployment at 3', async () => (await deploymentReplicas('fixed')) === 3);
    await eventually('status reports 3 replicas', async () => (await getFunction('fixed'))?.status?.replicas === 3, 30_000);
    // Some reconciles and HPA syncs later, still 3 on both: nobody reverts anybody.
    await kubectlOk(cp, ['annotate', 'function', 'fixed', '-n', NS, 'touched=yes']);
    await sleep(4000);
    expect((await getFunction('fixed'))?.spec.replicas).toBe(3);
    expect(await deploymentReplicas('fixed')).toBe(3);
    const hpa = await getJson<{ status?: { currentReplicas?: number; desiredReplicas?: number } }>(cp, ['hpa', 'fixed', '-n', NS]);
    expect(hpa?.status?.desiredReplicas).toBe(3);
  }, 90_000);
});
