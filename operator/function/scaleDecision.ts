/**
 * How many pods a Function should run, from the dispatchers' exact demand. Pure: the caller keeps the
 * returned memory between decisions and writes the replica count only when it changes.
 *
 * Knative's autoscaler infers concurrency through a proxy and averages it over a 60 s window; the
 * HPA/KEDA poll a metric and stabilise for 300 s. The dispatchers know the demand itself (events in
 * memory, in flight, waiting in the backlog) at the moment it exists, so this decides from that:
 * up at once, down only after `scaleDownDelayMs` at the lower level, to zero only after `idleTimeoutMs`
 * with nothing pending, never below what the requests in flight need, and not down at all while the
 * demand cannot be read (a dispatcher that does not answer means "hold", never "zero").
 */
import { parseDuration } from '../../api/v1alpha1/duration.js';
import type { FunctionSpecT } from '../../api/v1alpha1/schema.js';

export interface ScaleSpec {
  min: number;
  max: number;
  /** Concurrent deliveries one pod should serve. */
  target: number;
  scaleDownDelayMs: number;
  idleTimeoutMs: number;
}

/** The decider's spec from a Function's spec.scale (defaults applied): durations in milliseconds. Pure. */
export function scaleSpecOf(scale: NonNullable<FunctionSpecT['scale']>): ScaleSpec {
  return {
    min: scale.min,
    max: scale.max,
    target: scale.target,
    scaleDownDelayMs: parseDuration(scale.scaleDownDelay),
    idleTimeoutMs: parseDuration(scale.idleTimeout),
  };
}

/** The demand summed over every dispatcher that serves a trigger of the Function. */
export interface Demand {
  /** Requests in flight to the Function. */
  inflight: number;
  /** Events in memory (in flight, ready to send, waiting for a retry). */
  events: number;
  /** Events waiting in backlogs. */
  backlog: number;
  /** The most requests the dispatchers would send at once (their triggers' concurrency); pods past it would idle. */
  capacity?: number;
  /** The last delivery to the Function: traffic served between two readings is demand too, though never seen pending. */
  lastDeliveryAt?: number;
}

/** What a decision remembers for the next one. */
export interface ScaleMemory {
  /** Recent wanted counts, newest last, kept for the scale-down delay. */
  recent: { at: number; wanted: number }[];
  /** Last time any demand was seen. */
  lastDemandAt?: number;
}

export interface ScaleInput {
  spec: ScaleSpec;
  now: number;
  /** Replicas the Deployment asks for now. */
  current: number;
  /** Undefined while some dispatcher's demand cannot be read. */
  demand: Demand | undefined;
  /** When this operator replica became leader: it knows nothing of the demand before. */
  leadingSince: number;
  memory: ScaleMemory;
}

export interface ScaleDecision {
  replicas: number;
  /** Why, in one CamelCase word, for the status and the event. */
  reason: 'DemandUnknown' | 'ScaleUp' | 'ScaleDown' | 'Idle' | 'Steady' | 'AfterLeaderChange';
  memory: ScaleMemory;
}

const clamp = (n: number, spec: ScaleSpec) => Math.min(spec.max, Math.max(spec.min, n));

/** Decides the replica count. */
export function decideScale(input: ScaleInput): ScaleDecision {
  const { spec, now, current, demand, memory } = input;
  if (!demand) return { replicas: current, reason: 'DemandUnknown', memory };

  const pending = demand.events + demand.backlog;
  const seenPending = pending > 0 ? now : memory.lastDemandAt;
  const lastDemandAt = demand.lastDeliveryAt === undefined ? seenPending : Math.max(seenPending ?? demand.lastDeliveryAt, demand.lastDeliveryAt);
  // Every pending event is a delivery some pod will serve, but no more at once than the dispatchers
  // send; one pod at least while anything waits.
  const servable = Math.min(pending, demand.capacity ?? Number.POSITIVE_INFINITY);
  const wanted = pending > 0 ? Math.max(1, Math.ceil(servable / spec.target)) : 0;
  const recent = [...memory.recent.filter((r) => now - r.at < spec.scaleDownDelayMs), { at: now, wanted }];
  const next: ScaleMemory = { recent, ...(lastDemandAt !== undefined ? { lastDemandAt } : {}) };

  if (clamp(wanted, spec) > current) return { replicas: clamp(wanted, spec), reason: 'ScaleUp', memory: next };

  // Down: the highest count wanted within the delay, so a dip shorter than the delay changes nothing.
  let floor = Math.max(...recent.map((r) => r.wanted));
  // Requests in flight finish where they run: keep the pods they need.
  floor = Math.max(floor, Math.ceil(demand.inflight / spec.target));
  // Idle but not for long enough: keep one pod warm rather than go to zero.
  const idleFor = lastDemandAt === undefined ? Number.POSITIVE_INFINITY : now - lastDemandAt;
  if (floor === 0 && idleFor < spec.idleTimeoutMs) floor = Math.min(1, current);
  const replicas = clamp(floor, spec);
  if (replicas >= current) return { replicas: current, reason: 'Steady', memory: next };
  // A new leader has not seen the demand of the last delay: it may scale up, not down.
  if (now - input.leadingSince < spec.scaleDownDelayMs) return { replicas: current, reason: 'AfterLeaderChange', memory: next };
  return { replicas, reason: replicas === 0 ? 'Idle' : 'ScaleDown', memory: next };
}
