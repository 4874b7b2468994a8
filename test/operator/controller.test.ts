import { describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../common/logger.js';
import { Controller, type Reconciler } from '../../operator/controller.js';
import { deleteObject, type KubeClients, withSignal } from '../../operator/kube.js';
import { createOperatorMetrics } from '../../operator/metrics.js';

describe('a controller that loses its Lease', () => {
  it('aborts the reconciles in flight: their writes refuse, nothing reaches the API server, and they are not requeued', async () => {
    const del = vi.fn(async () => ({}));
    const clients = { objects: { delete: del } } as unknown as KubeClients;
    let started!: () => void;
    const inFlight = new Promise<void>((resolve) => (started = resolve));
    const outcomes: string[] = [];
    const reconciler: Reconciler = {
      kind: 'Function',
      async reconcile(_key, _log, signal) {
        started();
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        try {
          await deleteObject(withSignal(clients, signal), { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x', namespace: 'y' } });
          outcomes.push('wrote');
        } catch (error) {
          outcomes.push((error as Error).message);
          throw error;
        }
        return {};
      },
    };
    const metrics = createOperatorMetrics();
    const controller = new Controller(reconciler, { logger: silentLogger(), metrics, workers: 1 });
    controller.start(['y/x']);
    await inFlight;
    await controller.stop({ abort: true });
    expect(outcomes).toEqual(['leadership lost']);
    expect(del).not.toHaveBeenCalled();
    expect(controller.queue.len()).toBe(0);
    expect(await metrics.registry.getSingleMetricAsString('eventide_operator_reconciles_total')).toContain('result="aborted"');
  });

  it('a plain stop lets the reconcile in flight finish its writes', async () => {
    const del = vi.fn(async () => ({}));
    const clients = { objects: { delete: del } } as unknown as KubeClients;
    const reconciler: Reconciler = {
      kind: 'Function',
      async reconcile(_key, _log, signal) {
        await new Promise((r) => setTimeout(r, 50));
        await deleteObject(withSignal(clients, signal), { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x', namespace: 'y' } });
        return {};
      },
    };
    const controller = new Controller(reconciler, { logger: silentLogger(), metrics: createOperatorMetrics(), workers: 1 });
    controller.start(['y/x']);
    await new Promise((r) => setTimeout(r, 10));
    await controller.stop();
    expect(del).toHaveBeenCalledTimes(1);
  });
});
