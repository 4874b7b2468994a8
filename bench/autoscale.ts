/**
 * Autoscaling latency on a real control plane: `npm run bench:autoscale [-- --rounds 5 --step-rounds 3 --hpa-rounds 3
 * --pod-ready-delay 2000 --step-events 200 --step-target 10 --step-max 20]`.
 *
 * The pieces of test/system/autoscaling.test.ts: kube-apiserver + etcd + kube-controller-manager +
 * scheduler, kwok fake nodes whose pods turn Ready a fixed delay after they run (`--pod-ready-delay`,
 * standing in for an image start), the operator in-process, the real dispatcher process it deploys
 * (DispatcherKubelet), and each function as a local server that listens only while its Service has a
 * ready endpoint (EndpointGatedServer). Every figure sits beside a baseline measured in the same run
 * with the same cluster: a plain Deployment scaled by an API write (what `kubectl scale` sends), so
 * the difference is what eventide adds over Kubernetes delivering a ready pod.
 *
 * 1. Cold start: a Function at zero gets one INSERT; time from the commit to the request reaching the
 *    function. Baseline: a plain Deployment + Service scaled 0 → 1, time until its endpoint is ready.
 * 2. Step: a Function at 1 pod gets `--step-events` rows in one commit; time until its Deployment asks
 *    for the expected count and until that many pods are ready. Baselines: a plain Deployment scaled
 *    1 → the same count, time until that many are ready; and (`--hpa-rounds`, 0 to skip) the same step
 *    on a Function scaled by a kube-controller-manager HPA with its defaults, fed the same signal (the
 *    dispatcher's pending events) through an external metrics API this bench serves, as KEDA would.
 * The first cold and step round is a warm-up and not counted (kube-controller-manager acts only some
 * seconds after it starts; the first connections and compilations are slower). Everything started is
 * stopped at the end, on failure and on Ctrl-C, and /etc/hosts is restored.
 */

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { AppsV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions, type V1Deployment, Watch } from '@kubernetes/client-node';
import pg from 'pg';
import { ATTEMPT_HEADER } from '../api/v1alpha1/index.js';
import type { DispatcherStateReport } from '../common/dispatcherState.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../common/embeddedPostgres.js';
import { silentLogger } from '../common/logger.js';
import { dispatcherName } from '../operator/eventtrigger/source.js';
import { type Operator, startOperator } from '../operator/manager.js';
import { settingsWith } from '../operator/settings.js';
import type { ControlPlane } from '../test/harness/controlPlane.js';
import { ClusterDns, DispatcherKubelet } from '../test/harness/dispatcherKubelet.js';
import { EndpointGatedServer } from '../test/harness/endpointGate.js';
import { createNamespace, getJson, kubeConfigFrom, kubectlOk, startClusterWithCrds } from '../test/operator/support.js';
import { fmtMs, notes, printTable, record } from './report.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    'step-rounds': { type: 'string', default: '3' },
    'hpa-rounds': { type: 'string', default: '3' },
    'pod-ready-delay': { type: 'string', default: '2000' },
    'step-events': { type: 'string', default: '200' },
    'step-target': { type: 'string', default: '10' },
    'step-max': { type: 'string', default: '20' },
  },
});
const ROUNDS = Number(values.rounds);
const STEP_ROUNDS = Number(values['step-rounds']);
const HPA_ROUNDS = Number(values['hpa-rounds']);
const POD_READY_DELAY_MS = Number(values['pod-ready-delay']);
const STEP_EVENTS = Number(values['step-events']);
const STEP_TARGET = Number(values['step-target']);
const STEP_MAX = Number(values['step-max']);
// The step trigger sends up to STEP_EVENTS at once (concurrency × batch 1), so the dispatchers' capacity
// does not cap the demand: the operator should ask for ceil(events / target) pods, within max.
const STEP_CONCURRENCY = Math.min(STEP_EVENTS, 1024);
const STEP_EXPECTED = Math.min(STEP_MAX, Math.ceil(Math.min(STEP_EVENTS, STEP_CONCURRENCY) / STEP_TARGET));

// A namespace and addresses no test uses: cluster DNS names are host-wide (/etc/hosts).
const NS = 'bench-autoscale';
const COLD = { name: 'cold', address: '127.0.0.221' };
const STEP = { name: 'step', address: '127.0.0.222' };
const PLAIN_COLD = { name: 'plain-cold', address: '127.0.0.223' };
const PLAIN_STEP = 'plain-step';
const HPA = { name: 'hpa', address: '127.0.0.224' };
const DISPATCHER = dispatcherName({ namespace: NS, secretName: 'orders-db', key: 'url' });
const EXTERNAL_METRIC = 'eventide_function_pending';
const WAIT_MS = 90_000;
/**
 * The operator's /state read interval (its default). Each round follows the operator's last tick by a
 * nearly fixed time (the rounds wait for its scale-down), so without care every INSERT would land at the
 * same phase of the read cycle; round i of n waits (i / n) of an interval first, spreading the phases evenly.
 */
const STATE_READ_MS = 1000;
/** The same for the HPA: kube-controller-manager's default sync period. */
const HPA_SYNC_MS = 15_000;
const phaseOffset = (round: number, rounds: number, periodMs = STATE_READ_MS) => (round === 0 ? 0 : ((round - 1) / rounds) * periodMs);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
/** 15 s periods the HPA's default scale-up policy (max of +100 % and +4 pods per period) needs from 1 to n. */
const hpaPeriods = (n: number) => {
  let periods = 0;
  for (let c = 1; c < n; periods++) c = Math.max(2 * c, c + 4);
  return periods;
};
const fmtOpt = (ms: number | undefined) => (ms === undefined ? '?' : fmtMs(ms));
/** Median of the values known. */
const medianKnown = (xs: readonly (number | undefined)[]) => {
  const known = xs.filter((x): x is number => x !== undefined);
  return known.length ? median(known) : undefined;
};
const stats = (xs: readonly number[]) => ({ median: median(xs), max: Math.max(...xs) });
const fmtStats = (xs: readonly number[]) => `median ${fmtMs(median(xs))}, max ${fmtMs(Math.max(...xs))}`;

// ---------------------------------------------------------------------------------------------
// What the bench watches: Deployments (through a watch, so no polling load and ms timestamps) and the
// requests the functions receive.
// ---------------------------------------------------------------------------------------------

interface DeploymentState {
  at: number;
  replicas: number;
  ready: number;
  /** Pods that exist (status.replicas). */
  pods: number;
}

/** Every state of the namespace's Deployments the watch delivered, with when it arrived. */
class DeploymentTimeline {
  private readonly history = new Map<string, DeploymentState[]>();
  private readonly waiters = new Set<() => void>();
  private abort: AbortController | undefined;
  private stopped = false;

  constructor(private readonly kubeConfig: KubeConfig) {}

  async start(): Promise<void> {
    this.abort = await new Watch(this.kubeConfig).watch(
      `/apis/apps/v1/namespaces/${NS}/deployments`,
      {},
      (phase: string, d: V1Deployment) => {
        if (phase === 'DELETED' || !d.metadata?.name) return;
        const states = this.history.get(d.metadata.name) ?? [];
        states.push({ at: Date.now(), replicas: d.spec?.replicas ?? 1, ready: d.status?.readyReplicas ?? 0, pods: d.status?.replicas ?? 0 });
        this.history.set(d.metadata.name, states);
        for (const wake of [...this.waiters]) wake();
      },
      () => {
        // The server ends watches after a while: watch again (a fresh watch lists the current states first).
        if (!this.stopped) setTimeout(() => void this.start().catch(() => undefined), 200);
      },
    );
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }

  latest(name: string): DeploymentState | undefined {
    return this.history.get(name)?.at(-1);
  }

  /** The replica counts asked for since `since`, in order, without repeats. */
  replicasSince(name: string, since: number): number[] {
    const counts = (this.history.get(name) ?? []).filter((s) => s.at >= since).map((s) => s.replicas);
    return counts.filter((c, i) => i === 0 || c !== counts[i - 1]);
  }

  /** The first state seen at or after `since` that satisfies `holds`. */
  async waitFor(name: string, what: string, holds: (s: DeploymentState) => boolean, since: number, timeoutMs = WAIT_MS): Promise<DeploymentState> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = (this.history.get(name) ?? []).find((s) => s.at >= since && holds(s));
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`timed out waiting for deployment ${name}: ${what}; last ${JSON.stringify(this.latest(name))}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(1000, Math.max(0, deadline - Date.now())));
        this.waiters.add(done);
      });
    }
  }

  /** Waits until the Deployment's latest state satisfies `holds` (whenever it started to). */
  settled(name: string, what: string, holds: (s: DeploymentState) => boolean): Promise<DeploymentState> {
    const last = this.latest(name);
    return this.waitFor(name, what, holds, last && holds(last) ? last.at : Date.now());
  }
}

/** Requests a function received, with when their headers arrived; optionally held until released. */
class Arrivals {
  readonly requests: { at: number; attempt: string }[] = [];
  private held: ServerResponse[] = [];
  private readonly waiters = new Set<() => void>();
  hold = false;

  readonly handler = (req: IncomingMessage, res: ServerResponse): void => {
    this.requests.push({ at: Date.now(), attempt: String(req.headers[ATTEMPT_HEADER]) });
    for (const wake of [...this.waiters]) wake();
    req.resume();
    req.on('end', () => {
      if (this.hold) this.held.push(res);
      else res.writeHead(200).end();
    });
  };

  /** Answers every held request. */
  release(): void {
    for (const res of this.held.splice(0)) if (!res.writableEnded) res.writeHead(200).end();
  }

  /** Resolves with the `count`-th request since index `from` (0-based count of earlier requests). */
  async nth(from: number, count: number, timeoutMs = WAIT_MS): Promise<{ at: number; attempt: string }> {
    const deadline = Date.now() + timeoutMs;
    while (this.requests.length < from + count) {
      if (Date.now() > deadline) throw new Error(`timed out: ${this.requests.length - from} of ${count} requests arrived`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, 1000);
        this.waiters.add(done);
      });
    }
    return this.requests[from + count - 1]!;
  }
}

// ---------------------------------------------------------------------------------------------
// The HPA on the same signal: an external metrics API (what KEDA's metrics server is) serving each
// Function's pending events, read from the dispatcher's /state at every request, as the operator reads
// them. kube-apiserver reaches it through an APIService; with aggregator routing it dials the
// Service's endpoint, which must be a non-loopback address (the API server refuses loopback ones).
// ---------------------------------------------------------------------------------------------

const EXTERNAL_GROUP_VERSION = 'external.metrics.k8s.io/v1beta1';

/** The machine's first non-loopback IPv4 address, if any. */
function hostAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
}

/** Pending events of a Function by the dispatcher's /state: events + backlog, no more than it would send at once. */
async function pendingOf(fn: string): Promise<number> {
  const response = await fetch(`http://${DISPATCHER}.${NS}.svc.cluster.local:9090/state`, { signal: AbortSignal.timeout(2000) });
  if (!response.ok) throw new Error(`dispatcher /state answered ${response.status}`);
  const demand = ((await response.json()) as DispatcherStateReport).functions[`${NS}/${fn}`];
  if (!demand) return 0;
  return Math.min(demand.events + demand.backlog, demand.capacity ?? Number.POSITIVE_INFINITY);
}

/** Starts the external metrics API on `host` (self-signed: the APIService skips TLS verification). */
async function startExternalMetrics(host: string): Promise<{ port: number; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'eventide-metrics-'));
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=eventide-metrics',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ]);
    const tls = { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
    const send = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const server = createHttpsServer(tls, (req, res) => {
      const url = new URL(req.url ?? '/', 'https://metrics');
      const prefix = `/apis/${EXTERNAL_GROUP_VERSION}`;
      if (url.pathname === prefix) {
        send(res, 200, {
          kind: 'APIResourceList',
          apiVersion: 'v1',
          groupVersion: EXTERNAL_GROUP_VERSION,
          resources: [{ name: EXTERNAL_METRIC, singularName: '', namespaced: true, kind: 'ExternalMetricValueList', verbs: ['get'] }],
        });
        return;
      }
      const match = new RegExp(`^${prefix}/namespaces/([^/]+)/${EXTERNAL_METRIC}$`).exec(url.pathname);
      const fn = /(?:^|,)function=([^,]+)/.exec(url.searchParams.get('labelSelector') ?? '')?.[1];
      if (!match || match[1] !== NS || !fn) {
        send(res, 404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 });
        return;
      }
      pendingOf(fn).then(
        (value) =>
          send(res, 200, {
            kind: 'ExternalMetricValueList',
            apiVersion: EXTERNAL_GROUP_VERSION,
            metadata: {},
            items: [{ metricName: EXTERNAL_METRIC, metricLabels: { function: fn }, timestamp: new Date().toISOString(), value: String(value) }],
          }),
        (error: Error) => send(res, 503, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: error.message, code: 503 }),
      );
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, () => resolve()));
    return {
      port: (server.address() as AddressInfo).port,
      close: async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The APIService and its Service + Endpoints pointing at the external metrics server. */
function externalMetricsObjects(host: string, port: number): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'eventide-metrics', namespace: NS }, spec: { ports: [{ port: 443, targetPort: port }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'eventide-metrics', namespace: NS }, subsets: [{ addresses: [{ ip: host }], ports: [{ port }] }] },
    {
      apiVersion: 'apiregistration.k8s.io/v1',
      kind: 'APIService',
      metadata: { name: `v1beta1.external.metrics.k8s.io` },
      spec: {
        group: 'external.metrics.k8s.io',
        version: 'v1beta1',
        service: { namespace: NS, name: 'eventide-metrics', port: 443 },
        insecureSkipTLSVerify: true,
        groupPriorityMinimum: 100,
        versionPriority: 100,
      },
    },
  ];
}

/** An HPA on the Function's Deployment from its pending events, as KEDA would set one up (defaults, but scale-down at once so rounds can repeat). */
function hpaManifest(): unknown {
  return {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: { name: HPA.name, namespace: NS },
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: HPA.name },
      minReplicas: 1,
      maxReplicas: STEP_MAX,
      metrics: [
        {
          type: 'External',
          external: { metric: { name: EXTERNAL_METRIC, selector: { matchLabels: { function: HPA.name } } }, target: { type: 'AverageValue', averageValue: String(STEP_TARGET) } },
        },
      ],
      behavior: { scaleDown: { stabilizationWindowSeconds: 0 } },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------------

interface World {
  cp: ControlPlane;
  postgres: EmbeddedPostgres;
  db: pg.Client;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  timeline: DeploymentTimeline;
  gates: { cold: EndpointGatedServer; step: EndpointGatedServer; hpa: EndpointGatedServer; plain: EndpointGatedServer };
  arrivals: { cold: Arrivals; step: Arrivals; hpa: Arrivals };
  kubelet: DispatcherKubelet;
  /** Why the HPA baseline does not run, when it does not. */
  hpaSkipped?: string;
}

const owned: { cleanups: (() => Promise<unknown> | unknown)[] } = { cleanups: [] };
let stopping: Promise<void> | undefined;

/** Stops everything started, newest first; safe to call twice (Ctrl-C during a failure's clean-up). */
function stopAll(): Promise<void> {
  stopping ??= (async () => {
    for (const cleanup of owned.cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        console.error('clean-up step failed:', (error as Error).message);
      }
    }
  })();
  return stopping;
}

const plainDeployment = (name: string, replicas: number) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: NS },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'example.com/plain:1', ports: [{ containerPort: 8080 }] }] } },
  },
});

function trigger(name: string, table: string, fn: string, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: NS },
    spec: { source: { connectionSecretRef: { name: 'orders-db', key: 'url' } }, table: { name: table }, operations: ['insert'], ordering: 'none', function: { name: fn }, ...spec },
  };
}

async function setUp(): Promise<World> {
  const started = Date.now();
  const [cp, postgres] = await Promise.all([
    startClusterWithCrds({
      controllerManager: true,
      kwok: true,
      podReadyDelayMs: POD_READY_DELAY_MS,
      // Aggregator routing: the API server dials the external metrics server's endpoint, not a Service IP (no kube-proxy here).
      apiServerArgs: ['--enable-aggregator-routing=true'],
      // kwok keeps no node Lease and refreshes the fake node's status about as rarely as the node
      // lifecycle controller's 50 s grace period: the node flaps Unknown about once a minute, every pod on
      // it is marked NotReady, and kwok makes them Ready again a pod-ready delay later. A real kubelet
      // renews its Lease every 10 s; a long grace period keeps the flap out of the figures.
      controllerManagerArgs: ['--node-monitor-grace-period=1h'],
    }),
    startEmbeddedPostgres(),
  ]);
  owned.cleanups.push(
    () => cp.stop(),
    () => postgres.destroy(),
  );
  await cp.addFakeNodes(1);
  await createNamespace(cp, NS);
  const db = new pg.Client({ connectionString: postgres.url });
  db.on('error', () => undefined);
  await db.connect();
  owned.cleanups.push(() => db.end());
  await db.query('CREATE TABLE public.cold_orders (id int PRIMARY KEY); CREATE TABLE public.step_orders (id int PRIMARY KEY); CREATE TABLE public.hpa_orders (id int PRIMARY KEY)');

  const kubeConfig = kubeConfigFrom(cp.kubeconfigPath);
  const dns = new ClusterDns();
  owned.cleanups.push(() => dns.restore());
  dns.add(`${COLD.name}.${NS}.svc.cluster.local`, COLD.address);
  dns.add(`${STEP.name}.${NS}.svc.cluster.local`, STEP.address);
  dns.add(`${HPA.name}.${NS}.svc.cluster.local`, HPA.address);
  const arrivals = { cold: new Arrivals(), step: new Arrivals(), hpa: new Arrivals() };
  const releaseAll = () => {
    for (const a of Object.values(arrivals)) a.release();
  };
  owned.cleanups.push(releaseAll);
  const gate = async (service: string, host: string, handler: Arrivals['handler']) => {
    const g = await EndpointGatedServer.start({ kubeConfig, namespace: NS, service, host, port: 80, handler });
    owned.cleanups.push(() => g.close());
    return g;
  };
  const noop = (_req: IncomingMessage, res: ServerResponse) => res.writeHead(200).end();
  const gates = {
    cold: await gate(COLD.name, COLD.address, arrivals.cold.handler),
    step: await gate(STEP.name, STEP.address, arrivals.step.handler),
    hpa: await gate(HPA.name, HPA.address, arrivals.hpa.handler),
    plain: await gate(PLAIN_COLD.name, PLAIN_COLD.address, noop),
  };
  const timeline = new DeploymentTimeline(kubeConfig);
  await timeline.start();
  owned.cleanups.push(() => timeline.stop());

  const operator: Operator = await startOperator({
    kubeConfig,
    settings: settingsWith({ metricsPort: -1, workers: 2, logLevel: 'silent', dispatcherImage: 'ghcr.io/eventide-dev/eventide:bench' }),
    logger: silentLogger(),
  });
  owned.cleanups.push(() => operator.stop());
  await operator.synced;
  // Past the system tests' dispatcher addresses (.10 on, .110 on), so a test started meanwhile keeps its own.
  const kubelet = new DispatcherKubelet(kubeConfig, NS, dns, { firstAddress: 210 });
  kubelet.start();
  // Stopped before the operator (cleanups run newest first), after the held requests are answered.
  owned.cleanups.push(() => kubelet.stop(), releaseAll);
  const logDir = process.env.EVENTIDE_BENCH_LOG_DIR;
  if (logDir) {
    // Before the kubelet stops: the dispatcher's log, for a run that looks wrong.
    owned.cleanups.push(() => {
      mkdirSync(logDir, { recursive: true });
      for (const pod of kubelet.history) writeFileSync(join(logDir, `${pod.name}-${pod.child.pid}.log`), pod.output());
      console.log(`dispatcher logs in ${logDir}`);
    });
  }

  const apply = (objects: unknown[]) => kubectlOk(cp, ['apply', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n---\n'));
  await apply([
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'orders-db', namespace: NS }, stringData: { url: postgres.url } },
    {
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'Function',
      metadata: { name: COLD.name, namespace: NS },
      spec: { image: 'example.com/cold:1', scale: { min: 0, max: 5, target: 10, scaleDownDelay: '1s', idleTimeout: '2s' } },
    },
    {
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'Function',
      metadata: { name: STEP.name, namespace: NS },
      spec: { image: 'example.com/step:1', scale: { min: 1, max: STEP_MAX, target: STEP_TARGET, scaleDownDelay: '2s', idleTimeout: '2s' } },
    },
    trigger('cold-orders', 'cold_orders', COLD.name),
    // Held requests stay in flight until the bench answers them, well within the timeout.
    trigger('step-orders', 'step_orders', STEP.name, { concurrency: STEP_CONCURRENCY, delivery: { timeout: '120s' } }),
    // The HPA's Function: no spec.scale and no spec.replicas, so the operator leaves its Deployment's count to the HPA.
    { apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: HPA.name, namespace: NS }, spec: { image: 'example.com/hpa:1' } },
    trigger('hpa-orders', 'hpa_orders', HPA.name, { concurrency: STEP_CONCURRENCY, delivery: { timeout: '300s' } }),
    plainDeployment(PLAIN_COLD.name, 0),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: PLAIN_COLD.name, namespace: NS }, spec: { selector: { app: PLAIN_COLD.name }, ports: [{ port: 80, targetPort: 8080 }] } },
    plainDeployment(PLAIN_STEP, 1),
  ]);
  for (const name of ['cold-orders', 'step-orders', 'hpa-orders']) {
    await waitUntil(`EventTrigger ${name} Ready`, async () => {
      const t = await getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(cp, ['eventtrigger', name, '-n', NS]);
      return t?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    });
  }
  const hpaSkipped = HPA_ROUNDS > 0 ? await setUpHpa(cp, apply) : 'not asked for (--hpa-rounds 0)';
  console.log(`set up in ${((Date.now() - started) / 1000).toFixed(1)} s (control plane, Postgres, operator, dispatcher; triggers Ready${hpaSkipped ? '' : '; HPA reads the metric'})`);
  return { cp, postgres, db, apps: kubeConfig.makeApiClient(AppsV1Api), custom: kubeConfig.makeApiClient(CustomObjectsApi), kubelet, timeline, gates, arrivals, ...(hpaSkipped ? { hpaSkipped } : {}) };
}

/** Serves the external metric and points an HPA at the HPA Function's Deployment; returns why not, if it cannot. */
async function setUpHpa(cp: ControlPlane, apply: (objects: unknown[]) => Promise<string>): Promise<string | undefined> {
  const host = hostAddress();
  if (!host) return 'the machine has no non-loopback IPv4 address for the API server to reach an external metrics server at';
  const metrics = await startExternalMetrics(host);
  owned.cleanups.push(() => metrics.close());
  await apply(externalMetricsObjects(host, metrics.port));
  const available = await cp.kubectl(['wait', '--for=condition=Available', '--timeout=60s', 'apiservice/v1beta1.external.metrics.k8s.io']);
  if (available.code !== 0) return `the external metrics APIService did not become Available: ${available.stderr.trim()}`;
  await waitUntil("the HPA Function's Deployment", async () => (await getJson(cp, ['deployment', HPA.name, '-n', NS])) !== undefined);
  await apply([hpaManifest()]);
  try {
    await waitUntil(
      'the HPA reading its metric',
      async () => {
        const hpa = await getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(cp, ['hpa', HPA.name, '-n', NS]);
        return hpa?.status?.conditions?.some((c) => c.type === 'ScalingActive' && c.status === 'True') ?? false;
      },
      60_000,
    );
  } catch {
    const described = await cp.kubectl(['describe', 'hpa', HPA.name, '-n', NS]);
    return `the HPA could not read the external metric: ${described.stdout.split('\n').slice(-8).join(' ').trim()}`;
  }
  return undefined;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** What `kubectl scale deployment` sends: a merge patch of the scale subresource. Returns when it was sent. */
async function scalePlain(w: World, name: string, replicas: number): Promise<number> {
  const at = Date.now();
  await w.apps.patchNamespacedDeploymentScale({ name, namespace: NS, body: { spec: { replicas } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  return at;
}

/**
 * When the operator decided the scale-up seen after `since`: the Function's status.autoscaling.lastScaleTime
 * (the autoscaler's clock, this machine's), or undefined if the status has moved on or is not written yet.
 */
async function decidedAt(w: World, fn: string, since: number): Promise<number | undefined> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const stored = (await w.custom.getNamespacedCustomObject({ group: 'eventide.dev', version: 'v1alpha1', namespace: NS, plural: 'functions', name: fn })) as {
      status?: { autoscaling?: { reason?: string; lastScaleTime?: string } };
    };
    const at = Date.parse(stored.status?.autoscaling?.lastScaleTime ?? '');
    if (at >= since) return stored.status?.autoscaling?.reason === 'ScaleUp' ? at : undefined;
    await sleep(100);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// 1. Cold start
// ---------------------------------------------------------------------------------------------

interface ColdRound {
  baselineMs: number;
  coldMs: number;
  /** commit → the Deployment asks for a pod (operator: dispatcher read, decision, reconcile, apply). */
  scaledMs: number;
  /** commit → the operator's decision (the dispatcher's decode, then the wait for the next /state read). */
  decidedMs: number | undefined;
  /** Deployment asks → endpoint ready (Kubernetes: the part the baseline measures). */
  readyMs: number;
  /** endpoint ready → the request arrives (the dispatcher's probing of a function that refused). */
  probeMs: number;
  attempt: string;
}

let nextId = 1;

async function coldRound(w: World, offsetMs: number): Promise<ColdRound> {
  // Baseline: a plain Deployment 0 → 1, until its Service has a ready endpoint.
  const scaledAt = await scalePlain(w, PLAIN_COLD.name, 1);
  const openedAt = await w.gates.plain.waitFor('open', WAIT_MS, scaledAt);
  await scalePlain(w, PLAIN_COLD.name, 0);
  await w.gates.plain.waitFor('closed', WAIT_MS, openedAt);
  await w.timeline.settled(PLAIN_COLD.name, 'no pods', (s) => s.pods === 0);

  // eventide: one row into the table of a Function at zero.
  await w.timeline.settled(COLD.name, 'at zero', (s) => s.replicas === 0 && s.pods === 0);
  if (w.gates.cold.isOpen) throw new Error('the cold function still has a ready endpoint');
  const before = w.arrivals.cold.requests.length;
  await sleep(offsetMs);
  await w.db.query('INSERT INTO public.cold_orders VALUES ($1)', [nextId++]);
  const committedAt = Date.now();
  const first = await w.arrivals.cold.nth(before, 1);
  const asked = await w.timeline.waitFor(COLD.name, 'asks for a pod', (s) => s.replicas >= 1, committedAt);
  const decided = await decidedAt(w, COLD.name, committedAt);
  const opened = await w.gates.cold.waitFor('open', WAIT_MS, committedAt);
  // Back to zero (idle timeout) before the next round.
  await w.timeline.waitFor(COLD.name, 'back at zero', (s) => s.replicas === 0 && s.pods === 0, first.at);
  await w.gates.cold.waitFor('closed', WAIT_MS, opened);
  return {
    baselineMs: openedAt - scaledAt,
    coldMs: first.at - committedAt,
    scaledMs: asked.at - committedAt,
    decidedMs: decided === undefined ? undefined : decided - committedAt,
    readyMs: opened - asked.at,
    probeMs: first.at - opened,
    attempt: first.attempt,
  };
}

// ---------------------------------------------------------------------------------------------
// 2. Step of demand
// ---------------------------------------------------------------------------------------------

interface StepResult {
  /** commit → the Deployment asks for the expected count. */
  desiredMs: number;
  /** commit → eventide's decision to scale up (undefined for the HPA). */
  decidedMs: number | undefined;
  /** commit → that many pods ready. */
  readyMs: number;
  /** The counts the Deployment asked for on the way. */
  path: number[];
  /** Requests that were not first attempts, and all requests received (events received more than once show here). */
  retried: number;
  received: number;
  /** Times the function's Service lost its last ready endpoint during the round (should be 0: it stays at 1 pod or more). */
  gateClosed: number;
}

/** A plain Deployment 1 → n by a scale write: ms until n pods are ready. */
async function plainStep(w: World): Promise<number> {
  const n = STEP_EXPECTED;
  await w.timeline.settled(PLAIN_STEP, 'at 1 ready', (s) => s.replicas === 1 && s.ready === 1 && s.pods === 1);
  const scaledAt = await scalePlain(w, PLAIN_STEP, n);
  const ready = await w.timeline.waitFor(PLAIN_STEP, `${n} ready`, (s) => s.ready >= n, scaledAt);
  await scalePlain(w, PLAIN_STEP, 1);
  await w.timeline.settled(PLAIN_STEP, 'back at 1', (s) => s.replicas === 1 && s.pods === 1 && s.ready === 1);
  return ready.at - scaledAt;
}

/**
 * STEP_EVENTS rows in one commit to `table`, whose trigger targets a Function at 1 pod. That pod holds
 * every request, so the demand (events in flight) stays until the pods are there, as with slow work.
 */
async function demandStep(w: World, fn: 'step' | 'hpa', table: string, timeoutMs: number, offsetMs: number): Promise<StepResult> {
  const arrivals = w.arrivals[fn];
  const gate = w.gates[fn];
  const n = STEP_EXPECTED;
  await w.timeline.settled(fn, 'at 1 ready', (s) => s.replicas === 1 && s.ready === 1 && s.pods === 1);
  const before = arrivals.requests.length;
  arrivals.hold = true;
  const first = nextId;
  nextId += STEP_EVENTS;
  let result: StepResult;
  try {
    await sleep(offsetMs);
    await w.db.query(`INSERT INTO public.${table} SELECT g FROM generate_series($1::int, $2::int) g`, [first, first + STEP_EVENTS - 1]);
    const committedAt = Date.now();
    const closesBefore = gate.transitions.filter((t) => t.state === 'closed').length;
    const desired = await w.timeline.waitFor(fn, `asks for ${n}`, (s) => s.replicas >= n, committedAt, timeoutMs);
    const decided = fn === HPA.name ? undefined : await decidedAt(w, fn, committedAt);
    const ready = await w.timeline.waitFor(fn, `${n} ready`, (s) => s.ready >= n, committedAt, timeoutMs);
    await arrivals.nth(before, STEP_EVENTS);
    result = {
      desiredMs: desired.at - committedAt,
      decidedMs: decided === undefined ? undefined : decided - committedAt,
      readyMs: ready.at - committedAt,
      path: [1, ...w.timeline.replicasSince(fn, committedAt)].filter((c, i, a) => i === 0 || c !== a[i - 1]),
      retried: arrivals.requests.slice(before).filter((r) => r.attempt !== '1').length,
      received: arrivals.requests.length - before,
      gateClosed: gate.transitions.filter((t) => t.state === 'closed').length - closesBefore,
    };
  } finally {
    arrivals.hold = false;
    arrivals.release();
  }
  // Idle again: down to 1 after the scale-down delay (the HPA: at its next sync).
  await w.timeline.settled(fn, 'back at 1', (s) => s.replicas === 1 && s.pods === 1);
  return result;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const benchStarted = Date.now();
  console.log(
    `eventide autoscale bench: pod-ready delay ${POD_READY_DELAY_MS} ms (kwok), cold start ${ROUNDS} rounds, ` +
      `step ${STEP_EVENTS} events × ${STEP_ROUNDS} rounds (target ${STEP_TARGET}, max ${STEP_MAX}, trigger concurrency ${STEP_CONCURRENCY} → expect ${STEP_EXPECTED} pods), ` +
      `HPA ${HPA_ROUNDS} rounds; the first cold and step round is a warm-up`,
  );
  const w = await setUp();
  const label = (i: number) => (i === 0 ? 'warm-up' : `round ${i}`);

  const cold: ColdRound[] = [];
  for (let i = 0; i <= ROUNDS; i++) {
    const r = await coldRound(w, phaseOffset(i, ROUNDS));
    console.log(
      `  cold ${label(i)}: commit → delivered ${fmtMs(r.coldMs)} (decided ${fmtOpt(r.decidedMs)}, asked ${fmtMs(r.scaledMs)}, +ready ${fmtMs(r.readyMs)}, ` +
        `+probe ${fmtMs(r.probeMs)}; attempt ${r.attempt}); baseline 0 → 1 ready ${fmtMs(r.baselineMs)}`,
    );
    if (i > 0) cold.push(r);
  }
  const steps: (StepResult & { baselineMs: number })[] = [];
  for (let i = 0; i <= STEP_ROUNDS; i++) {
    const baselineMs = await plainStep(w);
    const r = await demandStep(w, 'step', 'step_orders', WAIT_MS, phaseOffset(i, STEP_ROUNDS));
    console.log(
      `  step ${label(i)}: decided ${fmtOpt(r.decidedMs)}, asks for ${STEP_EXPECTED} after ${fmtMs(r.desiredMs)} (replicas ${r.path.join(' → ')}), ` +
        `${STEP_EXPECTED} ready after ${fmtMs(r.readyMs)}; ${r.received} requests, ${r.retried} of them retries${r.gateClosed ? `, Service lost its endpoints ${r.gateClosed}×` : ''}; baseline 1 → ${STEP_EXPECTED} ready ${fmtMs(baselineMs)}`,
    );
    if (i > 0) steps.push({ ...r, baselineMs });
  }
  const hpa: StepResult[] = [];
  if (!w.hpaSkipped) {
    for (let i = 1; i <= HPA_ROUNDS; i++) {
      // Long waits: the HPA acts every 15 s and adds at most max(100 %, 4 pods) per 15 s.
      const r = await demandStep(w, 'hpa', 'hpa_orders', 300_000, phaseOffset(i, HPA_ROUNDS, HPA_SYNC_MS));
      console.log(
        `  HPA round ${i}: asks for ${STEP_EXPECTED} after ${fmtMs(r.desiredMs)} (replicas ${r.path.join(' → ')}), ${STEP_EXPECTED} ready after ${fmtMs(r.readyMs)}; ` +
          `${r.received} requests, ${r.retried} of them retries${r.gateClosed ? `, Service lost its endpoints ${r.gateClosed}×` : ''}`,
      );
      hpa.push(r);
    }
  }

  const coldMs = stats(cold.map((r) => r.coldMs));
  const coldBase = stats(cold.map((r) => r.baselineMs));
  record({
    figure: `cold start: commit → first delivery, Function at zero (pod-ready delay ${POD_READY_DELAY_MS} ms)`,
    value: fmtStats(cold.map((r) => r.coldMs)),
    baseline: `plain Deployment 0 → 1 → ready endpoint: ${fmtStats(cold.map((r) => r.baselineMs))}`,
    ratio: coldMs.median / coldBase.median,
    target: '',
  });
  record({
    figure: 'cold start overhead (cold start − baseline)',
    value: `median ${fmtMs(coldMs.median - coldBase.median)}`,
    baseline: `per round: ${cold.map((r) => fmtMs(r.coldMs - r.baselineMs)).join(', ')}`,
    ratio: NaN,
    target: '',
  });
  record({
    figure: 'cold start, split (medians): commit → operator decides | → Deployment asks for 1 | → endpoint ready | → delivered',
    value: [
      fmtOpt(medianKnown(cold.map((r) => r.decidedMs))),
      fmtOpt(medianKnown(cold.map((r) => (r.decidedMs === undefined ? undefined : r.scaledMs - r.decidedMs)))),
      fmtMs(median(cold.map((r) => r.readyMs))),
      fmtMs(median(cold.map((r) => r.probeMs))),
    ].join(' | '),
    baseline: `endpoint ready after the scale write: ${fmtMs(coldBase.median)}`,
    ratio: NaN,
    target: '',
  });
  const desired = stats(steps.map((r) => r.desiredMs));
  const hpaDesired = hpa.length ? stats(hpa.map((r) => r.desiredMs)) : undefined;
  record({
    figure: `step of ${STEP_EVENTS} events, 1 pod: commit → Deployment asks for ${STEP_EXPECTED}`,
    value: `${fmtStats(steps.map((r) => r.desiredMs))} (operator decided after median ${fmtOpt(medianKnown(steps.map((r) => r.decidedMs)))})`,
    baseline: hpaDesired ? `HPA on the same signal (defaults, external metric): ${fmtStats(hpa.map((r) => r.desiredMs))}` : 'kubectl scale: the write itself',
    ratio: hpaDesired ? desired.median / hpaDesired.median : NaN,
    target: '',
  });
  const ready = stats(steps.map((r) => r.readyMs));
  const stepBase = stats(steps.map((r) => r.baselineMs));
  record({
    figure: `step: commit → ${STEP_EXPECTED} pods ready`,
    value: fmtStats(steps.map((r) => r.readyMs)),
    baseline: `plain Deployment 1 → ${STEP_EXPECTED} ready: ${fmtStats(steps.map((r) => r.baselineMs))}`,
    ratio: ready.median / stepBase.median,
    target: '',
  });
  record({
    figure: 'step overhead (ready − baseline)',
    value: `median ${fmtMs(ready.median - stepBase.median)}`,
    baseline: `per round: ${steps.map((r) => fmtMs(r.readyMs - r.baselineMs)).join(', ')}`,
    ratio: NaN,
    target: '',
  });
  if (hpa.length) {
    const hpaReady = stats(hpa.map((r) => r.readyMs));
    record({
      figure: `step: commit → ${STEP_EXPECTED} pods ready, HPA on the same signal (defaults)`,
      value: fmtStats(hpa.map((r) => r.readyMs)),
      baseline: `eventide: ${fmtStats(steps.map((r) => r.readyMs))}`,
      ratio: hpaReady.median / ready.median,
      target: '',
    });
  }

  notes.push(
    `Every cold-start delivery was a first attempt: ${cold.every((r) => r.attempt === '1')}; step rounds' retries: ${steps.map((r) => r.retried).join(', ')} (of ${STEP_EVENTS} events each). ` +
      `Replica counts the Deployment asked for on the way, eventide: ${steps.map((r) => r.path.join('→')).join('; ')}` +
      (hpa.length ? `; HPA: ${hpa.map((r) => r.path.join('→')).join('; ')}.` : '.'),
    w.hpaSkipped
      ? `No HPA measured: ${w.hpaSkipped}; the baselines are the pod-ready delay as the cluster delivers it.`
      : `HPA: autoscaling/v2 on the Function's Deployment, External metric ${EXTERNAL_METRIC} (the dispatcher's pending events, read from /state at each request: ` +
          `the signal eventide uses, as KEDA would serve it), AverageValue ${STEP_TARGET}, kube-controller-manager's default 15 s sync and default scale-up policy; ` +
          'scale-down stabilization 0 only so that rounds can repeat.',
    `Peers, documented defaults, NOT measured: an HPA acts on its sync period (kube-controller-manager --horizontal-pod-autoscaler-sync-period, default 15 s) ` +
      `and by default adds at most max(100 %, 4 pods) per 15 s, so 1 → ${STEP_EXPECTED} takes ${hpaPeriods(STEP_EXPECTED)} such periods; ` +
      `KEDA polls its scaler every pollingInterval (default 30 s) and activates from zero on that poll. eventide's reaction here: median ${fmtMs(desired.median)} (step), ` +
      `${fmtMs(median(cold.map((r) => r.scaledMs)))} (from zero).`,
  );
  printTable();
  console.log(`\nbench took ${((Date.now() - benchStarted) / 1000).toFixed(0)} s`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping everything`);
    void stopAll().finally(() => process.exit(130));
  });
}

main()
  .then(stopAll)
  .then(
    () => process.exit(0),
    async (error: unknown) => {
      console.error(error);
      await stopAll();
      process.exit(1);
    },
  );
