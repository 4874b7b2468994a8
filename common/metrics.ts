import { collectDefaultMetrics, Registry } from 'prom-client';

/** A fresh registry with the process metrics (memory, CPU, event loop lag) both programs expose. */
export function createRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${prefix}_` });
  return registry;
}

/** Histogram buckets in seconds from 1 ms to 60 s, for request and end-to-end latencies. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
