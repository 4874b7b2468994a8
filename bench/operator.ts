/**
 * Operator throughput against a real control plane: `npm run bench:operator [-- --count 1000 --workers 4
 * --controller-manager]`.
 *
 * 1. Starts kube-apiserver + etcd (+ kube-controller-manager with --controller-manager), applies the
 *    CRDs, starts the operator in-process.
 * 2. Creates N Functions (32 requests in flight) and measures the time until every one is reconciled:
 *    its Deployment and Service exist and its status.observedGeneration equals its generation.
 * 3. Restarts the operator over the N existing Functions and measures how long the resync takes (the
 *    steady-state path: nothing to apply, nothing to write).
 * 4. Baseline, with the operator stopped: a bare client creates N more Functions in another namespace
 *    the same way and, with the same number of workers, server-side applies each one's Deployment and
 *    Service (the operator's own manifests) and writes its status: the API writes of phase 2 with no
 *    watch, cache or queue — the floor the operator's figure is a ratio to.
 */

import { parseArgs } from 'node:util';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { FunctionResource } from '../api/v1alpha1/index.js';
import { silentLogger } from '../common/logger.js';
import { makeDeployment, makeService } from '../operator/function/resources.js';
import { applyObject, applyStatus, makeClients } from '../operator/kube.js';
import { type Operator, startOperator } from '../operator/manager.js';
import { settingsWith } from '../operator/settings.js';
import { startControlPlane } from '../test/harness/controlPlane.js';
import { installCrds, kubeConfigFrom } from '../test/operator/support.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '4' },
    'controller-manager': { type: 'boolean', default: false },
  },
});
const COUNT = Number(values.count);
const WORKERS = Number(values.workers);
const NAMESPACE = 'bench';
const BASELINE_NAMESPACE = 'bench-baseline';
const GROUP = { group: 'eventide.dev', version: 'v1alpha1', plural: 'functions' };

interface Listed {
  items: { metadata: { generation?: number }; status?: { observedGeneration?: number } }[];
}

async function countReconciled(custom: CustomObjectsApi, kubeConfig: KubeConfig, namespace = NAMESPACE): Promise<{ functions: number; deployments: number; services: number }> {
  const fns = (await custom.listNamespacedCustomObject({ ...GROUP, namespace })) as Listed;
  const functions = fns.items.filter((f) => f.status?.observedGeneration !== undefined && f.status.observedGeneration === f.metadata.generation).length;
  // Counting through the API keeps the measurement independent of the operator's own caches.
  const { AppsV1Api, CoreV1Api } = await import('@kubernetes/client-node');
  const selector = { namespace, labelSelector: 'app.kubernetes.io/component=function' };
  const deployments = (await kubeConfig.makeApiClient(AppsV1Api).listNamespacedDeployment(selector)).items.length;
  const services = (await kubeConfig.makeApiClient(CoreV1Api).listNamespacedService(selector)).items.length;
  return { functions, deployments, services };
}

async function waitUntil(what: string, done: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Sum of a counter's samples (optionally filtered by label values) from a registry. */
async function counter(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? []).filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0);
}

/** A quantile of the reconcile duration histogram, from its buckets. */
async function durationQuantile(registry: Registry, q: number): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'eventide_operator_reconcile_duration_seconds');
  const buckets = (metric?.values ?? [])
    .filter((v) => (v as { metricName?: string }).metricName === 'eventide_operator_reconcile_duration_seconds_bucket' && v.labels.kind === 'Function')
    .map((v) => ({ le: v.labels.le === '+Inf' ? Infinity : Number(v.labels.le), count: v.value }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  return buckets.find((b) => b.count >= q * total)?.le ?? NaN;
}

/** Creates COUNT Functions in a namespace, 32 requests in flight, handing each stored one to `created`. */
async function createFunctions(custom: CustomObjectsApi, namespace: string, created: (fn: FunctionResource) => void): Promise<void> {
  let next = 0;
  const createOne = async () => {
    while (next < COUNT) {
      const i = next++;
      const stored = await custom.createNamespacedCustomObject({
        ...GROUP,
        namespace,
        body: { apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: `fn-${i}` }, spec: { image: `registry.example.com/bench/fn:${i}` } },
      });
      created(stored as FunctionResource);
    }
  };
  await Promise.all(Array.from({ length: 32 }, createOne));
}

/**
 * The baseline: the operator's API writes done straight by WORKERS workers as Functions are created
 * (apply Deployment, apply Service, apply status), no informers, no queue. Returns the elapsed ms.
 */
async function bareClientBaseline(kubeConfig: KubeConfig, custom: CustomObjectsApi): Promise<number> {
  const clients = makeClients(kubeConfig);
  const pending: FunctionResource[] = [];
  let creating = true;
  const idle: (() => void)[] = [];
  const wakeAll = () => {
    for (const wake of idle.splice(0)) wake();
  };
  const started = Date.now();
  const worker = async () => {
    for (;;) {
      const fn = pending.shift();
      if (!fn) {
        if (!creating) return;
        await new Promise<void>((resolve) => idle.push(resolve));
        continue;
      }
      await applyObject(clients, makeDeployment(fn));
      await applyObject(clients, makeService(fn));
      await applyStatus(clients, 'Function', { name: fn.metadata.name, namespace: BASELINE_NAMESPACE }, { observedGeneration: fn.metadata.generation });
    }
  };
  const workers = Array.from({ length: WORKERS }, worker);
  await createFunctions(custom, BASELINE_NAMESPACE, (fn) => {
    pending.push(fn);
    wakeAll();
  });
  creating = false;
  wakeAll();
  await Promise.all(workers);
  const elapsedMs = Date.now() - started;
  const done = await countReconciled(custom, kubeConfig, BASELINE_NAMESPACE);
  if (done.functions !== COUNT || done.deployments !== COUNT || done.services !== COUNT) throw new Error(`baseline incomplete: ${JSON.stringify(done)}`);
  return elapsedMs;
}

function startBenchOperator(kubeConfig: KubeConfig): Promise<Operator> {
  return startOperator({ kubeConfig, settings: settingsWith({ metricsPort: -1, workers: WORKERS, logLevel: 'silent' }), logger: silentLogger() });
}

async function main(): Promise<void> {
  console.log(`eventide operator bench: ${COUNT} Functions, ${WORKERS} workers per kind, kube-controller-manager ${values['controller-manager'] ? 'on' : 'off'}`);
  // The harness's default Service range (a /24) holds 254 Services; N Functions need N.
  const serviceRange = '--service-cluster-ip-range=10.0.0.0/16';
  const cp = await startControlPlane({
    controllerManager: values['controller-manager'] ?? false,
    apiServerArgs: [serviceRange],
    controllerManagerArgs: [serviceRange],
  });
  let operator: Operator | undefined;
  try {
    await installCrds(cp);
    const created = await cp.kubectl(['create', 'namespace', NAMESPACE]);
    if (created.code !== 0) throw new Error(created.stderr);
    const kubeConfig = kubeConfigFrom(cp.kubeconfigPath);
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    operator = await startBenchOperator(kubeConfig);
    await operator.synced;

    // Phase 1: create N Functions and wait until all are reconciled.
    const started = Date.now();
    await createFunctions(custom, NAMESPACE, () => undefined);
    const createdMs = Date.now() - started;
    let last = { functions: 0, deployments: 0, services: 0 };
    await waitUntil(
      'every Function to be reconciled',
      async () => {
        last = await countReconciled(custom, kubeConfig);
        return last.functions === COUNT && last.deployments === COUNT && last.services === COUNT;
      },
      30 * 60_000,
    );
    const elapsedMs = Date.now() - started;
    const reg = operator.metrics.registry;
    const reconciles = await counter(reg, 'eventide_operator_reconciles_total', { kind: 'Function' });
    const errors = await counter(reg, 'eventide_operator_reconcile_errors_total');
    const conflicts = await counter(reg, 'eventide_operator_reconciles_total', { kind: 'Function', result: 'conflict' });
    console.log(`created ${COUNT} Functions in ${(createdMs / 1000).toFixed(1)} s`);
    console.log(`all reconciled (Deployment + Service exist, status.observedGeneration set) after ${(elapsedMs / 1000).toFixed(1)} s`);
    console.log(
      `  ${(COUNT / (elapsedMs / 1000)).toFixed(1)} Functions/s; ${reconciles} reconciles (${(reconciles / (elapsedMs / 1000)).toFixed(1)} reconciles/s), ${conflicts} stale-read conflicts, ${errors} errors`,
    );
    console.log(`  reconcile duration p50 <= ${await durationQuantile(reg, 0.5)} s, p99 <= ${await durationQuantile(reg, 0.99)} s`);

    // Phase 2: a restarted operator resyncs N Functions; nothing should need writing.
    await operator.stop();
    const restart = Date.now();
    operator = await startBenchOperator(kubeConfig);
    await operator.synced;
    const syncedMs = Date.now() - restart;
    const resynced = operator;
    await waitUntil(
      'the resync to finish',
      async () => (await counter(resynced.metrics.registry, 'eventide_operator_reconciles_total', { kind: 'Function' })) >= COUNT && resynced.metrics.queueDepths.get('Function')?.() === 0,
      10 * 60_000,
    );
    const resyncMs = Date.now() - restart;
    const resyncReconciles = await counter(resynced.metrics.registry, 'eventide_operator_reconciles_total', { kind: 'Function' });
    console.log(
      `restart over ${COUNT} existing Functions: caches synced in ${(syncedMs / 1000).toFixed(1)} s, every Function reconciled (no-op) after ` +
        `${(resyncMs / 1000).toFixed(1)} s (${(resyncReconciles / (resyncMs / 1000)).toFixed(0)} reconciles/s)`,
    );

    // Phase 3: the baseline, with the operator stopped so it neither competes nor sees the objects.
    await operator.stop();
    operator = undefined;
    const baselineNs = await cp.kubectl(['create', 'namespace', BASELINE_NAMESPACE]);
    if (baselineNs.code !== 0) throw new Error(baselineNs.stderr);
    const baselineMs = await bareClientBaseline(kubeConfig, custom);
    console.log(
      `baseline, a bare client doing the same API writes (${WORKERS} workers, no watch/cache/queue): ${(baselineMs / 1000).toFixed(1)} s; ` +
        `operator ${(elapsedMs / 1000).toFixed(1)} s = ${(elapsedMs / baselineMs).toFixed(2)}× the baseline time (${(baselineMs / elapsedMs).toFixed(2)}× its rate)`,
    );
  } finally {
    await operator?.stop();
    await cp.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
