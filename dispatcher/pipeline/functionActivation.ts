import type { SharedGate } from './triggerLane.js';

/** How often a function with no ready endpoints is tried again: about the time kube-proxy takes to open a new endpoint. */
export const PROBE_INTERVAL_MS = 200;
/** When a refused attempt's events are offered again; the probe gate decides when one is actually sent. */
export const HOLD_RETRY_MS = 100;
/** Function.spec.scale.activationTimeout's default, also for Functions without spec.scale. */
export const DEFAULT_ACTIVATION_TIMEOUT_MS = 120_000;

/**
 * A Function that refuses connections: its Service has no ready endpoints (scaled to zero, a rollout,
 * every pod failing readiness), and kube-proxy rejects. Until the activation timeout its events are
 * not attempted for real: one request at a time, every PROBE_INTERVAL_MS, finds out whether a pod is
 * ready, and the rest wait without spending retries (Knative's activator buffers requests the same
 * way, on the data path; here the waiting events simply stay where they are). Past the timeout the
 * gate opens and the usual retries and dead-lettering apply.
 */
export class FunctionActivation {
  private probing = false;
  private lastProbeAt = 0;
  private waiters: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly since: number,
    private timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  timedOut(now = this.now()): boolean {
    return now - this.since >= this.timeoutMs;
  }

  setTimeout(timeoutMs: number): void {
    this.timeoutMs = timeoutMs;
  }

  /** Whether a request may go now: always once timed out, else one probe at a time, PROBE_INTERVAL_MS apart. */
  tryProbe(): boolean {
    const now = this.now();
    if (this.timedOut(now)) return true;
    if (this.probing || now - this.lastProbeAt < PROBE_INTERVAL_MS) return false;
    this.probing = true;
    this.lastProbeAt = now;
    return true;
  }

  probeEnded(): void {
    this.probing = false;
    this.scheduleWake();
  }

  whenFree(wake: () => void): void {
    this.waiters.push(wake);
    this.scheduleWake();
  }

  /** The function answered (or is no longer a target): every waiting lane goes on. */
  end(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const wake of this.waiters.splice(0)) queueMicrotask(wake);
  }

  private scheduleWake(): void {
    if (this.timer || this.waiters.length === 0) return;
    const wait = Math.max(0, this.lastProbeAt + PROBE_INTERVAL_MS - this.now());
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        // One lane probes; the others find the gate closed again and wait for the next wake.
        for (const wake of this.waiters.splice(0)) queueMicrotask(wake);
      },
      this.probing ? PROBE_INTERVAL_MS : wait,
    );
  }
}

/** What the delivery of one attempt learned about a Function's endpoints. */
export type RefusalVerdict = 'hold' | 'count';

/** The Functions that refuse connections now, by `namespace/name`; empty (and free) while every function answers. */
export class FunctionActivations {
  private readonly active = new Map<string, FunctionActivation>();
  private timeouts: ReadonlyMap<string, number> = new Map();

  constructor(
    private readonly hooks: { started?(fn: string, timeoutMs: number): void; ended?(fn: string, afterMs: number, why: 'answered' | 'untargeted'): void } = {},
    private readonly now: () => number = Date.now,
  ) {}

  /** Activation timeouts per Function (`spec.scale.activationTimeout`) and the Functions still targeted, after a (re)load. */
  configure(timeouts: ReadonlyMap<string, number>, targeted: ReadonlySet<string>): void {
    this.timeouts = timeouts;
    for (const [fn, activation] of this.active) {
      if (targeted.has(fn)) activation.setTimeout(this.timeoutOf(fn));
      else this.end(fn, 'untargeted');
    }
  }

  /** A connection to the function was refused: hold the events, or (past the timeout) count the attempt. */
  refused(fn: string): RefusalVerdict {
    let activation = this.active.get(fn);
    if (!activation) {
      activation = new FunctionActivation(this.now(), this.timeoutOf(fn), this.now);
      this.active.set(fn, activation);
      this.hooks.started?.(fn, this.timeoutOf(fn));
    }
    return activation.timedOut() ? 'count' : 'hold';
  }

  /** The function answered over HTTP (any status): it has endpoints. */
  answered(fn: string): void {
    this.end(fn, 'answered');
  }

  private end(fn: string, why: 'answered' | 'untargeted'): void {
    const activation = this.active.get(fn);
    if (!activation) return;
    this.active.delete(fn);
    activation.end();
    this.hooks.ended?.(fn, this.now() - activation.since, why);
  }

  /** The gate a lane passes before a request to `fn`: none while the function answers (the common case). */
  gateFor(fn: string | undefined, inner: SharedGate | undefined): SharedGate | undefined {
    const activation = fn === undefined ? undefined : this.active.get(fn);
    return activation ? new ActivationGate(activation, inner) : inner;
  }

  /** Since when each refusing Function has refused, and whether it is past its activation timeout. */
  unavailable(): Map<string, { since: number; timedOut: boolean }> {
    return new Map([...this.active].map(([fn, a]) => [fn, { since: a.since, timedOut: a.timedOut() }]));
  }

  private timeoutOf(fn: string): number {
    return this.timeouts.get(fn) ?? DEFAULT_ACTIVATION_TIMEOUT_MS;
  }
}

/**
 * One request's pass through an activating function's probe gate, then the function's concurrency
 * gate: made per request, so it knows at release whether it held the probe.
 */
class ActivationGate implements SharedGate {
  private probe = false;
  private blockedBy: 'activation' | 'concurrency' = 'activation';

  constructor(
    private readonly activation: FunctionActivation,
    private readonly inner: SharedGate | undefined,
  ) {}

  tryAcquire(): boolean {
    if (!this.activation.tryProbe()) {
      this.blockedBy = 'activation';
      return false;
    }
    if (this.inner && !this.inner.tryAcquire()) {
      this.activation.probeEnded();
      this.blockedBy = 'concurrency';
      return false;
    }
    this.probe = true;
    return true;
  }

  release(): void {
    this.inner?.release();
    if (this.probe) this.activation.probeEnded();
    this.probe = false;
  }

  /** Waits on whichever gate said no. */
  whenFree(wake: () => void): void {
    if (this.blockedBy === 'concurrency' && this.inner) this.inner.whenFree(wake);
    else this.activation.whenFree(wake);
  }
}
