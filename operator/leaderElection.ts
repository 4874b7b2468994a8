import { setTimeout as sleep } from 'node:timers/promises';
import { type ConfigurationOptions, type CoordinationV1Api, Observable, type ObservableMiddleware, type V1Lease, type V1LeaseSpec, V1MicroTime, type V1OwnerReference } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import { apiErrorMessage, isConflict, isNotFound } from './errors.js';

/** client-go's defaults: a leader that cannot renew for 10 s steps down; others wait 15 s before taking over. */
export interface LeaderElectionConfig {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /**
   * Set on the Lease when this elector creates it: the operator's Deployment, so that uninstalling the
   * operator (helm uninstall) garbage-collects the Lease instead of leaving it behind.
   */
  owner?: () => Promise<V1OwnerReference | undefined>;
}

export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;

/**
 * How long one Lease API call may take, as client-go's leader-election client: half the renew deadline,
 * at least 1 s, so one hung request does not use up the whole deadline. While leading, a call is also
 * cut short at the renew deadline.
 */
export function leaseCallTimeoutMs(renewDeadlineMs: number): number {
  return Math.max(1_000, renewDeadlineMs / 2);
}

/** The Lease fields leader election reads. */
export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  leaseTransitions?: number;
  acquireTime?: unknown;
  renewTime?: unknown;
}

/** What to do with the Lease as last read. */
export type LeaseDecision = { action: 'create' } | { action: 'renew' } | { action: 'takeOver'; previousHolder: string | undefined } | { action: 'wait'; holder: string; remainingMs: number };

/**
 * Pure: may `identity` write the Lease? Expiry is judged on the local clock from when this candidate
 * last saw the record change (`observedAtMs`), never from the holder's renewTime, so clock skew between
 * nodes cannot make two leaders (client-go's rule).
 */
export function decideLease(record: LeaseRecord | undefined, observedAtMs: number, nowMs: number, identity: string): LeaseDecision {
  if (!record) return { action: 'create' };
  const holder = record.holderIdentity;
  if (holder === identity) return { action: 'renew' };
  if (!holder) return { action: 'takeOver', previousHolder: undefined };
  const expiresAt = observedAtMs + (record.leaseDurationSeconds ?? 0) * 1000;
  if (expiresAt > nowMs) return { action: 'wait', holder, remainingMs: expiresAt - nowMs };
  return { action: 'takeOver', previousHolder: holder };
}

/** The Lease spec this candidate writes after a `renew` or `takeOver` decision. */
export function nextLeaseSpec(record: LeaseRecord | undefined, identity: string, now: Date, leaseDurationMs: number): V1LeaseSpec {
  const renewing = record?.holderIdentity === identity;
  const transitions = record?.leaseTransitions ?? 0;
  return {
    holderIdentity: identity,
    leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
    acquireTime: renewing && record?.acquireTime ? asMicroTime(record.acquireTime) : new V1MicroTime(now.getTime()),
    renewTime: new V1MicroTime(now.getTime()),
    leaseTransitions: renewing || !record ? transitions : transitions + 1,
  };
}

function asMicroTime(value: unknown): V1MicroTime {
  return new V1MicroTime(value instanceof Date ? value.getTime() : new Date(String(value)).getTime());
}

/** Callbacks of an election. */
export interface LeaderCallbacks {
  onStartedLeading(): void;
  /** Leadership ended: lost (renew failed past the deadline) or given up because `run` was aborted. */
  onStoppedLeading(reason: 'lost' | 'released'): void;
  onNewLeader?(identity: string): void;
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection: try every retry
 * period until the Lease is free or expired, then renew every retry period; a leader that has not
 * renewed within the renew deadline stops leading. On abort, a leader releases the Lease (holder
 * cleared, duration 1 s) so a standby takes over at once instead of waiting for expiry.
 */
export class LeaderElector {
  private leading = false;
  private observed: { record: LeaseRecord | undefined; key: string; atMs: number } = { record: undefined, key: '', atMs: 0 };
  private lastLeader: string | undefined;

  constructor(
    private readonly api: CoordinationV1Api,
    private readonly config: LeaderElectionConfig,
    private readonly logger: Logger,
  ) {}

  isLeader(): boolean {
    return this.leading;
  }

  /** Runs until `signal` aborts or leadership is lost; resolves then. */
  async run(signal: AbortSignal, callbacks: LeaderCallbacks): Promise<void> {
    const { retryPeriodMs, renewDeadlineMs } = this.config;
    // Acquire.
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew(callbacks, { signal })) break;
      if (!(await pause(jittered(retryPeriodMs), signal))) return;
    }
    if (signal.aborted) return;
    this.leading = true;
    this.logger.info({ lease: `${this.config.namespace}/${this.config.name}`, identity: this.config.identity }, 'became leader');
    callbacks.onStartedLeading();
    // Renew. Every attempt, and every call in it, ends by the deadline: a leader still waiting on a hung
    // call past it would go on acting while a standby, seeing no renewal, takes the Lease.
    let deadline = Date.now() + renewDeadlineMs;
    while (!signal.aborted) {
      // Never sleep past the deadline: after failed attempts, the step-down is due at the deadline itself.
      if (!(await pause(Math.min(retryPeriodMs, deadline - Date.now()), signal))) break;
      if (Date.now() < deadline && (await this.tryAcquireOrRenew(callbacks, { signal, deadline }))) {
        deadline = Date.now() + renewDeadlineMs;
        continue;
      }
      if (signal.aborted) break;
      if (Date.now() >= deadline) {
        this.leading = false;
        this.logger.error({ lease: this.config.name, renewDeadlineMs }, 'failed to renew the lease in time; stepping down');
        callbacks.onStoppedLeading('lost');
        return;
      }
    }
    this.leading = false;
    await this.release();
    callbacks.onStoppedLeading('released');
  }

  /** Clears the holder so a standby can take over at once. Only the current holder releases. */
  async release(): Promise<void> {
    try {
      const lease = await this.read({});
      if (!lease || lease.spec?.holderIdentity !== this.config.identity) return;
      const now = new V1MicroTime(Date.now());
      await this.call({}, (options) =>
        this.api.replaceNamespacedLease(
          {
            name: this.config.name,
            namespace: this.config.namespace,
            body: {
              ...lease,
              spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: now, acquireTime: now },
            },
          },
          options,
        ),
      );
      this.logger.info({ lease: this.config.name }, 'released the lease');
    } catch (error) {
      this.logger.warn({ err: apiErrorMessage(error) }, 'could not release the lease; a standby takes over once it expires');
    }
  }

  /**
   * One Lease API call, cancelled once it has taken `leaseCallTimeoutMs`, reached `bound.deadline`, or
   * `bound.signal` aborted; a cancelled call rejects, so the attempt counts as failed.
   */
  private async call<T>(bound: CallBound, request: (options: ConfigurationOptions) => Promise<T>): Promise<T> {
    const timeoutMs = Math.max(0, Math.min(leaseCallTimeoutMs(this.config.renewDeadlineMs), (bound.deadline ?? Infinity) - Date.now()));
    // A controller of its own rather than AbortSignal.any: no listener is left on the run's signal.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`Lease API call timed out after ${Math.round(timeoutMs)} ms`)), timeoutMs);
    const stop = () => controller.abort(bound.signal?.reason);
    if (bound.signal?.aborted) stop();
    bound.signal?.addEventListener('abort', stop, { once: true });
    try {
      return await settledBy(request(abortingWith(controller.signal)), controller.signal);
    } finally {
      clearTimeout(timer);
      bound.signal?.removeEventListener('abort', stop);
    }
  }

  private async read(bound: CallBound): Promise<V1Lease | undefined> {
    try {
      return await this.call(bound, (options) => this.api.readNamespacedLease({ name: this.config.name, namespace: this.config.namespace }, options));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async tryAcquireOrRenew(callbacks: LeaderCallbacks, bound: CallBound): Promise<boolean> {
    const { namespace, name, identity, leaseDurationMs } = this.config;
    const now = new Date();
    try {
      const lease = await this.read(bound);
      const record = lease?.spec;
      this.observe(record, now.getTime(), callbacks);
      const decision = decideLease(record, this.observed.atMs, now.getTime(), identity);
      if (decision.action === 'wait') return false;
      const spec = nextLeaseSpec(record, identity, now, leaseDurationMs);
      if (decision.action === 'create' || !lease) {
        const owner = await this.config.owner?.();
        const body = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace, ...(owner ? { ownerReferences: [owner] } : {}) }, spec };
        await this.call(bound, (options) => this.api.createNamespacedLease({ namespace, body }, options));
      } else {
        // replace carries the resourceVersion we read: of two candidates, only one can win.
        await this.call(bound, (options) => this.api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec } }, options));
      }
      this.observe(spec, now.getTime(), callbacks);
      return true;
    } catch (error) {
      // A conflict is another candidate winning; an abort is our own shutdown: neither needs a warning.
      const level = isConflict(error) || bound.signal?.aborted ? 'debug' : 'warn';
      this.logger[level]({ err: apiErrorMessage(error), lease: `${namespace}/${name}` }, 'could not acquire or renew the lease');
      return false;
    }
  }

  private observe(record: LeaseRecord | undefined, atMs: number, callbacks: LeaderCallbacks): void {
    const key = record ? `${record.holderIdentity ?? ''}|${String(record.renewTime instanceof Date ? record.renewTime.getTime() : record.renewTime)}|${record.leaseTransitions ?? 0}` : '';
    if (key !== this.observed.key) this.observed = { record, key, atMs };
    const holder = record?.holderIdentity;
    if (holder && holder !== this.lastLeader) {
      this.lastLeader = holder;
      callbacks.onNewLeader?.(holder);
    }
  }
}

/** What ends a Lease API call early besides its own timeout: the run's signal, and the renew deadline (epoch ms). */
interface CallBound {
  signal?: AbortSignal;
  deadline?: number;
}

/**
 * Per-call options handing `signal` to the request: client-node passes a request's signal to fetch, so
 * a call cut short is really cancelled (its connection closed), not left running in the background.
 */
function abortingWith(signal: AbortSignal): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre: (request) => {
      request.setSignal(signal);
      return new Observable(Promise.resolve(request));
    },
    post: (response) => new Observable(Promise.resolve(response)),
  };
  // Appended, so the client's own middleware still runs.
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}

/**
 * `promise`, or a rejection with the signal's reason once it aborts. The signal only reaches fetch after
 * authentication (a token file, an exec credential plugin), so a call hung before that is given up here.
 */
function settledBy<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** client-go waits retryPeriod * (1 + up to 20 % jitter) between acquire attempts. */
function jittered(ms: number): number {
  return ms * (1 + Math.random() * 0.2);
}

async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}
