import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createRegistry, LATENCY_BUCKETS } from '../common/metrics.js';

/** How a reconcile ended, the `result` label. */
export type ReconcileResult = 'success' | 'requeue' | 'error' | 'conflict' | 'terminal';

/** The operator's metrics, all under `eventide_operator_`. */
export interface OperatorMetrics {
  registry: Registry;
  reconciles: Counter<'kind' | 'result'>;
  reconcileErrors: Counter<'kind'>;
  reconcileDuration: Histogram<'kind'>;
  workqueueDepth: Gauge<'kind'>;
  /** Read at scrape time into workqueue_depth: kind → current depth. */
  queueDepths: Map<string, () => number>;
  informerRestarts: Counter<'resource'>;
  isLeader: Gauge;
  /** Per autoscaled Function (spec.scale): the replicas the autoscaler asks for. */
  functionDesiredReplicas: Gauge<'function'>;
  /** Per autoscaled Function: its demand summed over the dispatchers, by kind (inflight, events, backlog). */
  functionDemand: Gauge<'function' | 'kind'>;
  /** Autoscaler decisions that changed a Function's replicas, by direction (up, down). */
  scaleDecisions: Counter<'function' | 'direction'>;
}

export function createOperatorMetrics(): OperatorMetrics {
  const registry = createRegistry('eventide_operator');
  const queueDepths = new Map<string, () => number>();
  return {
    registry,
    queueDepths,
    reconciles: new Counter({
      name: 'eventide_operator_reconciles_total',
      help: 'Reconciles by kind and result (success, requeue, error, conflict, terminal).',
      labelNames: ['kind', 'result'],
      registers: [registry],
    }),
    reconcileErrors: new Counter({
      name: 'eventide_operator_reconcile_errors_total',
      help: 'Reconciles that failed and were requeued with backoff.',
      labelNames: ['kind'],
      registers: [registry],
    }),
    reconcileDuration: new Histogram({
      name: 'eventide_operator_reconcile_duration_seconds',
      help: 'Time one reconcile took.',
      labelNames: ['kind'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    workqueueDepth: new Gauge({
      name: 'eventide_operator_workqueue_depth',
      help: 'Keys waiting in the work queue (ready to be processed).',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        for (const [kind, depth] of queueDepths) this.set({ kind }, depth());
      },
    }),
    informerRestarts: new Counter({
      name: 'eventide_operator_informer_restarts_total',
      help: 'Times a list+watch failed and was restarted.',
      labelNames: ['resource'],
      registers: [registry],
    }),
    isLeader: new Gauge({
      name: 'eventide_operator_is_leader',
      help: 'Whether this replica holds the leader Lease (1) or stands by (0).',
      registers: [registry],
    }),
    functionDesiredReplicas: new Gauge({
      name: 'eventide_operator_function_desired_replicas',
      help: 'Replicas the autoscaler asks for, per Function with spec.scale.',
      labelNames: ['function'],
      registers: [registry],
    }),
    functionDemand: new Gauge({
      name: 'eventide_operator_function_demand',
      help: 'Demand of an autoscaled Function summed over its dispatchers: requests in flight (inflight), events in memory (events), events in backlogs (backlog).',
      labelNames: ['function', 'kind'],
      registers: [registry],
    }),
    scaleDecisions: new Counter({
      name: 'eventide_operator_scale_decisions_total',
      help: "Autoscaler decisions that changed a Function's replicas, by direction (up, down).",
      labelNames: ['function', 'direction'],
      registers: [registry],
    }),
  };
}
