import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KubeConfig, KubernetesListObject, KubernetesObject, V1ConfigMap, V1Deployment, V1OwnerReference, V1Service } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/v1alpha1/index.js';
import { createOpsApp, listen } from '../common/httpServer.js';
import { createLogger, type Logger } from '../common/logger.js';
import { BackfillTriggerIndex, backfillKeysOfTrigger } from './backfill/keys.js';
import { ParsedBackfills } from './backfill/parsed.js';
import { BackfillReconciler } from './backfill/reconciler.js';
import { keyOf, type StoredBackfill, type StoredEventTrigger, type StoredFunction } from './cache.js';
import { Controller } from './controller.js';
import { apiErrorMessage } from './errors.js';
import { EventRecorder } from './events.js';
import { dispatcherStateUrl, sourceOfDispatcher } from './eventtrigger/dispatcher.js';
import { DispatcherStates } from './eventtrigger/dispatcherStates.js';
import { ownerKeysOfDispatcherObject, sharesSource, targetsFunction, usesSecret } from './eventtrigger/keys.js';
import { DEFAULT_LAG_THRESHOLD_BYTES, EventTriggerReconciler } from './eventtrigger/reconciler.js';
import type { dropSlotAndPublication } from './eventtrigger/slotDrop.js';
import { FunctionAutoscaler } from './function/autoscaler.js';
import { functionKeyOfChild, functionKeyOfTrigger } from './function/keys.js';
import { FunctionReconciler } from './function/reconciler.js';
import { ResilientInformer } from './informer.js';
import { makeClients, PLURALS } from './kube.js';
import { COMPONENT_DISPATCHER, LABEL_COMPONENT, MANAGED_SELECTOR } from './labels.js';
import { LeaderElector } from './leaderElection.js';
import { createOperatorMetrics, type OperatorMetrics } from './metrics.js';
import { ResourceReconciler } from './resourceReconciler.js';
import { SecretWatcher } from './secretWatcher.js';
import type { OperatorSettings } from './settings.js';

export interface StartOperatorOptions {
  kubeConfig: KubeConfig;
  settings: OperatorSettings;
  logger?: Logger;
  /** Replaces how slots are dropped (tests pointing at a database the cluster cannot name). */
  dropSlot?: typeof dropSlotAndPublication;
  /** How often the leader reads each dispatcher's /state, and autoscales from it (default 1 s). */
  statePollMs?: number;
  /** WAL a slot may hold back before its triggers report Lagging (default 1 GiB). */
  lagThresholdBytes?: number;
}

/** A running operator. */
export interface Operator {
  readonly identity: string;
  readonly metrics: OperatorMetrics;
  /** Base URL of /metrics, /healthz and /readyz, when served. */
  readonly opsUrl: string | undefined;
  /** Resolves once every informer has synced. */
  readonly synced: Promise<void>;
  /** Resolves when the operator stops: `lost` if it lost the Lease on its own (the process should exit). */
  readonly done: Promise<'lost' | 'stopped'>;
  isLeader(): boolean;
  isReady(): boolean;
  /** Stops reconciling (in-flight reconciles finish), releases the Lease, stops watching. */
  stop(): Promise<void>;
}

/**
 * Starts the operator: informers on every replica (a standby keeps a warm cache and reports ready),
 * reconcile workers only on the leader and only once every informer has synced.
 */
export async function startOperator(options: StartOperatorOptions): Promise<Operator> {
  const { kubeConfig, settings } = options;
  const logger = options.logger ?? createLogger('eventide-operator', { level: settings.logLevel });
  const metrics = createOperatorMetrics();
  const clients = makeClients(kubeConfig);
  const deps = { logger, metrics };

  const customList =
    <T extends KubernetesObject>(plural: string) =>
    async () =>
      (await clients.custom.listCustomObjectForAllNamespaces({ group: GROUP, version: VERSION, resourcePlural: plural })) as KubernetesListObject<T>;
  const functions = new ResilientInformer<StoredFunction>(
    kubeConfig,
    { resource: 'functions', path: `/apis/${GROUP}/${VERSION}/${PLURALS.Function}`, list: customList<StoredFunction>(PLURALS.Function) },
    deps,
  );
  const triggers = new ResilientInformer<StoredEventTrigger>(
    kubeConfig,
    { resource: 'eventtriggers', path: `/apis/${GROUP}/${VERSION}/${PLURALS.EventTrigger}`, list: customList<StoredEventTrigger>(PLURALS.EventTrigger) },
    deps,
  );
  const backfills = new ResilientInformer<StoredBackfill>(
    kubeConfig,
    { resource: 'backfills', path: `/apis/${GROUP}/${VERSION}/${PLURALS.Backfill}`, list: customList<StoredBackfill>(PLURALS.Backfill) },
    deps,
  );
  const labelSelector = MANAGED_SELECTOR;
  const deployments = new ResilientInformer<V1Deployment>(
    kubeConfig,
    { resource: 'deployments', path: '/apis/apps/v1/deployments', labelSelector, list: () => clients.apps.listDeploymentForAllNamespaces({ labelSelector }) },
    deps,
  );
  const services = new ResilientInformer<V1Service>(
    kubeConfig,
    { resource: 'services', path: '/api/v1/services', labelSelector, list: () => clients.core.listServiceForAllNamespaces({ labelSelector }) },
    deps,
  );
  const configMaps = new ResilientInformer<V1ConfigMap>(
    kubeConfig,
    { resource: 'configmaps', path: '/api/v1/configmaps', labelSelector, list: () => clients.core.listConfigMapForAllNamespaces({ labelSelector }) },
    deps,
  );
  // Backfills too before any reconcile: a dispatcher config derived without them would cancel the ones running.
  const informers = [functions, triggers, backfills, deployments, services, configMaps];

  const events = new EventRecorder(clients.core, settings.identity, logger);
  // Assigned below; the Secret watcher's handlers need it before the controller can be built.
  let triggerController: Controller | undefined;
  const enqueueTriggers = (namespace: string, match: (t: StoredEventTrigger) => boolean) => {
    for (const t of triggers.list(namespace)) if (match(t)) triggerController?.enqueue(keyOf(t));
  };
  const secrets = new SecretWatcher(kubeConfig, clients, deps, {
    changed: (namespace, name) => enqueueTriggers(namespace, (t) => usesSecret(t, name)),
    synced: (namespace) => enqueueTriggers(namespace, () => true),
    failed: (namespace) => enqueueTriggers(namespace, () => true),
  });

  const lagThresholdBytes = options.lagThresholdBytes ?? DEFAULT_LAG_THRESHOLD_BYTES;
  // The states, the autoscaler and the Function controller call each other only once running (closures).
  const states: DispatcherStates = new DispatcherStates({
    endpoints: () =>
      deployments.list().flatMap((d) => {
        const source = d.metadata?.labels?.[LABEL_COMPONENT] === COMPONENT_DISPATCHER ? sourceOfDispatcher(d) : undefined;
        return source && d.metadata?.name ? [{ namespace: source.namespace, name: d.metadata.name, url: dispatcherStateUrl(source) }] : [];
      }),
    changed: (keys) => {
      for (const key of keys) triggerController?.enqueue(key);
    },
    backfillsChanged: (keys) => {
      for (const key of keys) backfillController.enqueue(key);
    },
    polled: () => autoscaler.tick(),
    intervalMs: options.statePollMs ?? 1000,
    timeoutMs: 2000,
    lagThresholdBytes,
    logger,
  });
  const parsedBackfills = new ParsedBackfills();
  const triggerReconciler = new EventTriggerReconciler({
    clients,
    triggers,
    functions,
    backfills: { valid: (namespace) => parsedBackfills.valid(backfills.list(namespace)) },
    deployments,
    configMaps,
    services,
    secrets,
    states,
    lagThresholdBytes,
    events,
    settings: {
      image: settings.dispatcherImage,
      ...(settings.dispatcherImagePullPolicy ? { imagePullPolicy: settings.dispatcherImagePullPolicy } : {}),
    },
    ...(options.dropSlot ? { dropSlot: options.dropSlot } : {}),
  });
  const autoscaler = new FunctionAutoscaler({
    functions,
    triggers,
    deployments,
    readings: states,
    enqueue: (key) => functionController.enqueue(key),
    events,
    metrics,
    logger,
  });
  const functionReconciler = new ResourceReconciler(new FunctionReconciler({ functions, triggers, deployments, services, autoscaler }), { clients, events });
  const controllerDeps = { logger, metrics, workers: settings.workers };
  const functionController = new Controller(functionReconciler, controllerDeps);
  const eventTriggerController = new Controller(new ResourceReconciler(triggerReconciler, { clients, events }), controllerDeps);
  triggerController = eventTriggerController;
  const backfillReconciler = new BackfillReconciler({ backfills, triggers, parsed: parsedBackfills, states, events });
  const backfillController = new Controller(new ResourceReconciler(backfillReconciler, { clients, events }), controllerDeps);
  const controllers = [functionController, eventTriggerController, backfillController];
  for (const c of controllers) metrics.queueDepths.set(c.kind, () => c.queue.len());

  // Informer handlers map every change to the keys it concerns, and only enqueue.
  functions.on((_event, fn) => {
    functionController.enqueue(keyOf(fn));
    enqueueTriggers(fn.metadata?.namespace ?? '', (t) => targetsFunction(t, fn.metadata?.name));
  });
  triggers.on((event, t) => {
    triggerController?.enqueue(keyOf(t));
    // Whether its Backfills are accepted, and by which dispatcher.
    for (const key of backfillKeysOfTrigger(backfills.list(t.metadata?.namespace ?? ''), t)) backfillController.enqueue(key);
    // Its delivery timeout bounds how long the Function's pods may take to stop.
    const fn = functionKeyOfTrigger(t);
    if (fn) functionController.enqueue(fn);
    if (event !== 'delete') return;
    if (t.metadata?.uid) triggerReconciler.forget(t.metadata.uid);
    // Without its finalizer (removed by hand), a deleted trigger's siblings must drop it from their config.
    enqueueTriggers(t.metadata?.namespace ?? '', (other) => sharesSource(other, t));
  });
  const backfillTriggers = new BackfillTriggerIndex();
  backfills.on((event, b) => {
    backfillController.enqueue(keyOf(b));
    // Its trigger's reconcile re-derives the source's dispatcher config, with or without it.
    for (const key of backfillTriggers.triggerKeys(event, b)) triggerController?.enqueue(key);
    if (event === 'delete' && b.metadata?.uid) backfillReconciler.forget(b.metadata.uid);
  });
  const enqueueOwners = (_event: string, obj: V1Deployment | V1Service | V1ConfigMap) => {
    const fn = functionKeyOfChild(obj);
    if (fn) functionController.enqueue(fn);
    for (const key of ownerKeysOfDispatcherObject(obj)) triggerController?.enqueue(key);
  };
  deployments.on(enqueueOwners);
  services.on(enqueueOwners);
  configMaps.on(enqueueOwners);

  for (const informer of informers) informer.start();
  let ready = false;
  const synced = Promise.all(informers.map((i) => i.waitForSync())).then(() => {
    ready = true;
    logger.info('informers synced');
  });
  synced.catch(() => {});

  let server: Server | undefined;
  let opsUrl: string | undefined;
  if (settings.metricsPort >= 0) {
    const app = createOpsApp(metrics.registry, {
      live: () => true,
      ready: () => (ready ? { ok: true } : { ok: false, reason: 'informers not synced' }),
    });
    server = await listen(app, settings.metricsPort, settings.metricsHost);
    const address = server.address() as AddressInfo;
    opsUrl = `http://${settings.metricsHost === '0.0.0.0' ? '127.0.0.1' : settings.metricsHost}:${address.port}`;
  }

  let resolveDone!: (reason: 'lost' | 'stopped') => void;
  const done = new Promise<'lost' | 'stopped'>((resolve) => (resolveDone = resolve));
  let controllersStarted = false;
  let stopping = false;
  const startControllers = async () => {
    await synced;
    if (stopping) return;
    controllersStarted = true;
    functionController.start(functions.list().map(keyOf));
    eventTriggerController.start(triggers.list().map(keyOf));
    backfillController.start(backfills.list().map(keyOf));
    autoscaler.start();
    states.start();
    logger.info({ workers: settings.workers }, 'reconciling');
  };
  /** On a lost Lease reconciles in flight are aborted: another replica may lead by now, so none may write again. */
  const stopControllers = (abort = false) => Promise.all([states.stop().then(() => autoscaler.stop()), ...controllers.map((c) => c.stop({ abort }))]);

  const election = new AbortController();
  let elector: LeaderElector | undefined;
  let electing: Promise<void> | undefined;
  if (settings.leaderElect) {
    elector = new LeaderElector(
      clients.coordination,
      {
        namespace: settings.namespace,
        name: settings.leaseName,
        identity: settings.identity,
        leaseDurationMs: settings.leaseDurationMs,
        renewDeadlineMs: settings.renewDeadlineMs,
        retryPeriodMs: settings.retryPeriodMs,
        ...(settings.leaseOwner ? { owner: () => leaseOwnerReference(clients, settings.namespace, settings.leaseOwner!, logger) } : {}),
      },
      logger,
    );
    electing = elector.run(election.signal, {
      onStartedLeading: () => {
        metrics.isLeader.set(1);
        startControllers().catch((error: unknown) => logger.error({ err: error }, 'could not start reconciling'));
      },
      onStoppedLeading: (reason) => {
        metrics.isLeader.set(0);
        if (reason === 'lost') {
          // Another replica may lead by now: stop writing at once, and let the process restart.
          void stopControllers(true).then(() => resolveDone('lost'));
        }
      },
      onNewLeader: (identity) => {
        if (identity !== settings.identity) logger.info({ leader: identity }, 'another replica leads; standing by');
      },
    });
  } else {
    metrics.isLeader.set(1);
    startControllers().catch((error: unknown) => logger.error({ err: error }, 'could not start reconciling'));
  }

  return {
    identity: settings.identity,
    metrics,
    opsUrl,
    synced,
    done,
    isLeader: () => (elector ? elector.isLeader() : true) && controllersStarted,
    isReady: () => ready,
    async stop() {
      if (stopping) return;
      stopping = true;
      // Finish in-flight reconciles before giving up the Lease, so two replicas never write at once.
      await stopControllers();
      election.abort();
      await electing;
      metrics.isLeader.set(0);
      await Promise.all([...informers.map((i) => i.stop()), secrets.stop()]);
      await new Promise<void>((resolve) => {
        if (!server) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      resolveDone('stopped');
      logger.info('stopped');
    },
  };
}

/** The operator's Deployment as the Lease's owner; none (with a warning) when it cannot be read: the Lease then outlives an uninstall. */
async function leaseOwnerReference(clients: ReturnType<typeof makeClients>, namespace: string, name: string, logger: Logger): Promise<V1OwnerReference | undefined> {
  try {
    const deployment = await clients.apps.readNamespacedDeployment({ name, namespace });
    if (!deployment.metadata?.uid) return undefined;
    return { apiVersion: 'apps/v1', kind: 'Deployment', name, uid: deployment.metadata.uid };
  } catch (error) {
    logger.warn({ deployment: `${namespace}/${name}`, err: apiErrorMessage(error) }, 'cannot read the operator Deployment to own the Lease; the Lease will outlive an uninstall');
    return undefined;
  }
}
