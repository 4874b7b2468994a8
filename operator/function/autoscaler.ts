import type { V1Deployment } from '@kubernetes/client-node';
import { type FunctionResource, parseFunction } from '../../api/v1alpha1/index.js';
import type { Logger } from '../../common/logger.js';
import type { Cache, StoredEventTrigger, StoredFunction } from '../cache.js';
import type { EventRecorder } from '../events.js';
import { storedSourceOf, targetsFunction } from '../eventtrigger/keys.js';
import type { DispatcherReading } from '../eventtrigger/serving.js';
import { dispatcherName } from '../eventtrigger/source.js';
import type { OperatorMetrics } from '../metrics.js';
import { controllerOf } from '../ownerRefs.js';
import { type FunctionDemand, sumDemand } from './demand.js';
import { decideScale, type ScaleDecision, type ScaleMemory, type ScaleSpec, scaleSpecOf } from './scaleDecision.js';

/** What the autoscaler last decided for a Function: the replicas its Deployment should have, and why. */
export interface AutoscaleStatus {
  desiredReplicas: number;
  reason: string;
  message: string;
  /** When the replicas last changed (RFC 3339). */
  lastScaleTime?: string;
}

export interface FunctionAutoscalerDeps {
  functions: Cache<StoredFunction>;
  triggers: Cache<StoredEventTrigger>;
  deployments: Cache<V1Deployment>;
  /** The dispatchers' last /state readings. */
  readings: { get(namespace: string, name: string): DispatcherReading | undefined };
  /** Wakes the Function's reconcile, which writes the new count into its Deployment. */
  enqueue(functionKey: string): void;
  events: EventRecorder;
  metrics: OperatorMetrics;
  logger: Logger;
  now?: () => number;
}

interface Tracked {
  status: AutoscaleStatus;
  memory: ScaleMemory;
}

/** A Function with spec.scale, defaults applied. */
type Autoscaled = FunctionResource & { spec: { scale: NonNullable<FunctionResource['spec']['scale']> } };

const EVENT_REASONS: Partial<Record<ScaleDecision['reason'], string>> = { ScaleUp: 'ScaledUp', ScaleDown: 'ScaledDown', Idle: 'ScaledToZero' };

/**
 * Scales Functions with spec.scale from the dispatchers' exact demand, on the leader, after every read
 * of the dispatchers' /state (about once a second). The decision is decideScale's (pure); this edge
 * gathers the demand, remembers each Function's decision and, when the count changes, records an Event
 * and wakes the Function's reconcile — the one writer of its Deployment, so the count and the rest of
 * the Deployment are applied together by one field manager and never fight.
 */
export class FunctionAutoscaler {
  private readonly tracked = new Map<string, Tracked>();
  /** Parsed Functions by uid, kept while their resourceVersion holds: parsing every Function every second would cost more than deciding. */
  private readonly parsed = new Map<string, { resourceVersion: string | undefined; fn: Autoscaled | undefined }>();
  private leadingSince = 0;
  private readonly now: () => number;

  constructor(private readonly deps: FunctionAutoscalerDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Starts deciding (on becoming leader): it knows nothing of the demand before now, so it will not scale down for a while. */
  start(): void {
    this.leadingSince = this.now();
    this.tracked.clear();
  }

  stop(): void {
    this.tracked.clear();
    this.deps.metrics.functionDesiredReplicas.reset();
    this.deps.metrics.functionDemand.reset();
  }

  /** The last decision for a Function (`namespace/name`), if this leader has made one. */
  desired(functionKey: string): AutoscaleStatus | undefined {
    return this.tracked.get(functionKey)?.status;
  }

  /** Decides every autoscaled Function once. */
  tick(): void {
    const seen = new Set<string>();
    const live = new Set<string>();
    for (const stored of this.deps.functions.list()) {
      live.add(stored.metadata?.uid ?? '');
      const fn = this.autoscaled(stored);
      if (!fn) continue;
      const key = `${fn.metadata.namespace}/${fn.metadata.name}`;
      seen.add(key);
      try {
        this.decide(key, fn);
      } catch (error) {
        this.deps.logger.error({ function: key, err: (error as Error).message }, 'autoscaling decision failed');
      }
    }
    for (const uid of this.parsed.keys()) if (!live.has(uid)) this.parsed.delete(uid);
    for (const key of this.tracked.keys()) {
      if (seen.has(key)) continue;
      this.tracked.delete(key);
      this.deps.metrics.functionDesiredReplicas.remove({ function: key });
      for (const kind of ['inflight', 'events', 'backlog']) this.deps.metrics.functionDemand.remove({ function: key, kind });
    }
  }

  private decide(key: string, fn: Autoscaled): void {
    const { namespace, name } = fn.metadata as { namespace: string; name: string };
    const spec = scaleSpecOf(fn.spec.scale);
    const found = this.demandOf(namespace, name);
    const previous = this.tracked.get(key);
    const current = previous?.status.desiredReplicas ?? this.deploymentReplicas(namespace, name, fn) ?? spec.min;
    const now = this.now();
    const decision = decideScale({
      spec,
      now,
      current,
      demand: 'demand' in found ? found.demand : undefined,
      leadingSince: this.leadingSince,
      memory: previous?.memory ?? { recent: [] },
    });
    const { metrics } = this.deps;
    metrics.functionDesiredReplicas.set({ function: key }, decision.replicas);
    if ('demand' in found) {
      metrics.functionDemand.set({ function: key, kind: 'inflight' }, found.demand.inflight);
      metrics.functionDemand.set({ function: key, kind: 'events' }, found.demand.events);
      metrics.functionDemand.set({ function: key, kind: 'backlog' }, found.demand.backlog);
    }
    const changed = decision.replicas !== current;
    // The status says why the count is what it is: rewritten when the count changes and on this leader's first decision.
    const status: AutoscaleStatus =
      changed || !previous
        ? {
            desiredReplicas: decision.replicas,
            reason: decision.reason,
            message: describe(found, spec, decision),
            ...(changed ? { lastScaleTime: new Date(now).toISOString() } : lastScaleTimeOf(fn)),
          }
        : previous.status;
    this.tracked.set(key, { status, memory: decision.memory });
    if (!changed && previous) return;
    if (changed) {
      metrics.scaleDecisions.inc({ function: key, direction: decision.replicas > current ? 'up' : 'down' });
      const reason = EVENT_REASONS[decision.reason] ?? decision.reason;
      this.deps.events.normal(fn as FunctionResource & { metadata: { name: string } }, reason, `${current} → ${decision.replicas} replicas: ${status.message}`);
      this.deps.logger.info({ function: key, from: current, to: decision.replicas, reason: decision.reason, demand: 'demand' in found ? found.demand : undefined }, 'scaling');
    }
    this.deps.enqueue(key);
  }

  /** The Function parsed, if it is valid, alive and has spec.scale. */
  private autoscaled(stored: StoredFunction): Autoscaled | undefined {
    if (!(stored.spec as { scale?: unknown } | undefined)?.scale || stored.metadata?.deletionTimestamp) return undefined;
    const uid = stored.metadata?.uid ?? '';
    const resourceVersion = stored.metadata?.resourceVersion;
    const cached = this.parsed.get(uid);
    if (cached && cached.resourceVersion === resourceVersion) return cached.fn;
    let fn: Autoscaled | undefined;
    try {
      const parsed = parseFunction(stored as unknown as Record<string, unknown>);
      fn = parsed.spec.scale ? (parsed as Autoscaled) : undefined;
    } catch {
      // An invalid Function is reported by its reconcile; nothing to scale.
      fn = undefined;
    }
    this.parsed.set(uid, { resourceVersion, fn });
    return fn;
  }

  /** The demand of a Function over the dispatchers of the triggers that target it. */
  private demandOf(namespace: string, name: string): FunctionDemand {
    const dispatchers = new Map<string, DispatcherReading | undefined>();
    for (const trigger of this.deps.triggers.list(namespace)) {
      if (trigger.metadata?.deletionTimestamp || !targetsFunction(trigger, name)) continue;
      const source = storedSourceOf(trigger);
      if (!source) continue;
      const dispatcher = dispatcherName(source);
      dispatchers.set(dispatcher, this.deps.readings.get(namespace, dispatcher));
    }
    return sumDemand(
      `${namespace}/${name}`,
      [...dispatchers].map(([dispatcher, reading]) => ({ name: dispatcher, reading })),
    );
  }

  /** The Deployment's count when this leader has not decided yet (a new leader carries on from it). */
  private deploymentReplicas(namespace: string, name: string, fn: FunctionResource): number | undefined {
    const deployment = this.deps.deployments.get(name, namespace);
    if (!deployment || controllerOf(deployment.metadata, 'Function')?.uid !== fn.metadata.uid) return undefined;
    return deployment.spec?.replicas;
  }
}

function lastScaleTimeOf(fn: FunctionResource): { lastScaleTime?: string } {
  const at = fn.status?.autoscaling?.lastScaleTime;
  return at ? { lastScaleTime: at } : {};
}

/** The demand behind a decision, for people. */
function describe(found: FunctionDemand, spec: ScaleSpec, decision: ScaleDecision): string {
  if (!('demand' in found)) return `demand unknown, replicas held: ${found.unknown}`;
  const { inflight, events, backlog, capacity } = found.demand;
  const pending = events + backlog;
  const parts = [`${pending} events pending (${events} in the dispatchers, ${backlog} in backlogs), ${inflight} requests in flight; target ${spec.target} per pod`];
  if (capacity !== undefined && capacity < pending) parts.push(`the dispatchers send at most ${capacity} at once`);
  if (found.unavailableSince !== undefined) parts.push(`no ready pod since ${new Date(found.unavailableSince).toISOString()}`);
  if (decision.reason === 'AfterLeaderChange') parts.push('no scale-down right after a leader change');
  return parts.join('; ');
}
