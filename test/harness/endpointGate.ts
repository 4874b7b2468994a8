/**
 * A local HTTP server that plays a Service's pods for tests where no container runs: it listens on
 * its loopback address only while the Service has a ready endpoint, as a real cluster behaves —
 * kube-proxy REJECTs connections to a Service without ready endpoints (the client sees
 * ECONNREFUSED), and a pod that goes away takes its connections with it.
 *
 * Readiness comes from the Service's EndpointSlices (discovery.k8s.io/v1), which the
 * kube-controller-manager's endpointslice controller fills from the Ready pods the Service selects
 * (with kwok, pods on fake nodes; see ControlPlaneOptions.podReadyDelayMs). The slices are polled,
 * not watched: a list every ~100 ms is cheap on a test control plane and has no watch to lose.
 */

import { createServer, type RequestListener, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { DiscoveryV1Api, type KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node';

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const DEFAULT_POLL_INTERVAL_MS = 100;

export interface EndpointGateOptions {
  kubeConfig: KubeConfig;
  /** The Service whose EndpointSlices open and close the gate. */
  namespace: string;
  service: string;
  /** Where to listen while open: a loopback address the test maps the Service's DNS name to. */
  host: string;
  port: number;
  handler: RequestListener;
  /** How often to list the EndpointSlices (default 100 ms). */
  pollIntervalMs?: number;
}

/** A moment the listener opened (first ready endpoint) or closed (none left, or `close()`). */
export interface GateTransition {
  state: 'open' | 'closed';
  /** Date.now() when the listener started accepting, or stopped. */
  at: number;
  readyEndpoints: number;
}

/**
 * Ready endpoints across a Service's slices, each address counted once (an endpoint can sit in two
 * slices while the controller moves it). `conditions.ready` unset means ready, as the API says.
 * Only ready endpoints count: kube-proxy's fallback to serving-but-terminating endpoints does not
 * arise with kwok, which deletes a terminating pod at once.
 */
export function countReadyEndpoints(slices: readonly V1EndpointSlice[]): number {
  const ready = new Set<string>();
  for (const slice of slices) {
    for (const endpoint of slice.endpoints ?? []) {
      if (endpoint.conditions?.ready === false) continue;
      ready.add([...endpoint.addresses].sort().join(','));
    }
  }
  return ready.size;
}

type GateState = { kind: 'closed' } | { kind: 'open'; server: Server } | { kind: 'stopped' };

/** See the module comment. Create with `EndpointGatedServer.start`; stop with `close()`. */
export class EndpointGatedServer {
  private state: GateState = { kind: 'closed' };
  private ready = 0;
  private error: unknown;
  private readonly history: GateTransition[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly stopping = new AbortController();
  private readonly discovery: DiscoveryV1Api;
  private loop: Promise<void> = Promise.resolve();

  private constructor(private readonly options: EndpointGateOptions) {
    this.discovery = options.kubeConfig.makeApiClient(DiscoveryV1Api);
  }

  /** Starts polling; resolves after the first poll, so the gate already reflects the Service; throws if that poll fails. */
  static async start(options: EndpointGateOptions): Promise<EndpointGatedServer> {
    const gate = new EndpointGatedServer(options);
    await gate.poll();
    if (gate.error !== undefined) {
      // A wrong kubeconfig, RBAC or a taken address fails the set-up, not a later wait.
      await gate.close();
      throw new Error(`endpoint gate for ${options.namespace}/${options.service} could not start`, { cause: gate.error });
    }
    gate.loop = gate.pollUntilStopped();
    return gate;
  }

  /** Ready endpoints at the last successful poll. */
  get readyEndpoints(): number {
    return this.ready;
  }

  get isOpen(): boolean {
    return this.state.kind === 'open';
  }

  /** Every open and close, oldest first. */
  get transitions(): readonly GateTransition[] {
    return this.history;
  }

  /** When the listener first opened (nothing can have been delivered before), if ever. */
  get firstOpenedAt(): number | undefined {
    return this.history.find((t) => t.state === 'open')?.at;
  }

  /** The error of the last poll or listen, cleared by the next success; the gate keeps its state meanwhile. */
  get lastError(): unknown {
    return this.error;
  }

  /**
   * Resolves with the time of the first transition to `state` after `since` (default: any time,
   * so an already open gate resolves at once for 'open'); rejects after `timeoutMs`.
   */
  async waitFor(state: GateTransition['state'], timeoutMs: number, since = 0): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.history.find((t) => t.state === state && t.at >= since);
      if (found) return found.at;
      if (this.state.kind === 'stopped') throw new Error(`endpoint gate closed while waiting for it to be ${state}`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        const cause = this.error instanceof Error ? `; last error: ${this.error.message}` : '';
        throw new Error(`endpoint gate for ${this.options.namespace}/${this.options.service} not ${state} within ${timeoutMs} ms (ready endpoints: ${this.ready})${cause}`);
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, remaining);
        this.waiters.add(done);
      });
    }
  }

  /** Stops polling and closes the listener (and its connections). Idempotent. */
  async close(): Promise<void> {
    if (this.state.kind === 'stopped') return;
    const current = this.state;
    this.state = { kind: 'stopped' };
    this.stopping.abort();
    await this.loop;
    if (current.kind === 'open') {
      this.record('closed');
      await this.shut(current.server);
    }
    this.wake();
  }

  private async pollUntilStopped(): Promise<void> {
    const interval = this.options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    while (this.state.kind !== 'stopped') {
      try {
        await sleep(interval, undefined, { signal: this.stopping.signal });
      } catch {
        return; // aborted by close()
      }
      await this.poll();
    }
  }

  private async poll(): Promise<void> {
    const { namespace, service } = this.options;
    try {
      const list = await this.discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `${SERVICE_NAME_LABEL}=${service}` });
      this.ready = countReadyEndpoints(list.items);
      this.error = undefined;
    } catch (error) {
      // The API server unreachable: keep the last state, as kube-proxy keeps its rules.
      this.error = error;
      return;
    }
    const state = this.state;
    if (state.kind === 'closed' && this.ready > 0) await this.open();
    else if (state.kind === 'open' && this.ready === 0) {
      this.state = { kind: 'closed' };
      this.record('closed');
      await this.shut(state.server);
    }
  }

  private async open(): Promise<void> {
    const server = createServer(this.options.handler);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.options.port, this.options.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      this.error = error; // e.g. EADDRINUSE: retried at the next poll
      return;
    }
    server.on('error', (error) => (this.error = error));
    if (this.state.kind === 'stopped') {
      // close() ran while we were binding; it did not see this server.
      await this.shut(server);
      return;
    }
    this.state = { kind: 'open', server };
    this.record('open');
  }

  private async shut(server: Server): Promise<void> {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // A pod that went away resets its connections; idle keep-alive ones would otherwise linger.
    server.closeAllConnections();
    await closed;
  }

  private record(state: GateTransition['state']): void {
    this.history.push({ state, at: Date.now(), readyEndpoints: this.ready });
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
