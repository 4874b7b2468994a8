/**
 * A Function's replicas on a laptop, kept at the count asked for as a Deployment's ReplicaSet keeps its
 * pods: a replica joins its LocalService's rotation once it answers its readiness probe; one that is
 * no longer wanted leaves the rotation first, finishes the requests it has, and only then gets
 * SIGTERM; one that dies unasked is replaced, after a back-off when that keeps happening.
 */
import type { ChildProcess } from 'node:child_process';
import { freeListenPort } from './localPorts.js';
import { type LocalProcesses, waitReady } from './localProcesses.js';
import type { LocalService } from './localService.js';
import { planReplicas } from './replicaPlan.js';

/** A started replica as the deployment sees it. */
export interface LaunchedReplica {
  /** Resolves when it answers its readiness probe; rejects when it exits first or never does. */
  ready: Promise<void>;
  /** Resolves when it has exited, for whatever reason. */
  exited: Promise<void>;
  /** Asks it to stop (it drains) and resolves once it has exited. */
  stop(): Promise<void>;
}

/** Starts replica number `id` of a Function listening on `port`. */
export type LaunchReplica = (port: number, id: number) => LaunchedReplica;

/** Replicas and what the deployment has seen of them, for the demo's view and summary. */
export interface DeploymentStatus {
  /** The count asked for (the Deployment's spec.replicas). */
  desired: number;
  /** Replicas ready and in the Service's rotation. */
  ready: number;
  /** The most replicas ready at once so far. */
  peakReady: number;
  /** Replica processes not yet exited: starting, ready, or finishing their requests on the way out. */
  running: number;
  /** Replicas that died without being asked to (each was replaced). */
  restarts: number;
}

interface Replica {
  id: number;
  ready: boolean;
  launched?: LaunchedReplica;
}

const FIRST_RESTART_DELAY_MS = 1000;
const MAX_RESTART_DELAY_MS = 30_000;

/** Keeps one Function's replicas at the count asked for. */
export class LocalDeployment {
  /** Replicas that count: starting or ready. Those leaving are only in `leaving`. */
  private readonly replicas = new Map<number, Replica>();
  private readonly leaving = new Set<Promise<void>>();
  private wanted = 0;
  private nextId = 1;
  private peakReady = 0;
  private restarts = 0;
  /** Failures since a replica last became ready: the back-off grows with them, as CrashLoopBackOff does. */
  private failuresInARow = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private halted = false;

  /** `signal`: once aborted (Ctrl-C reached the replicas too), no replica is started or replaced. */
  constructor(
    readonly service: LocalService,
    private readonly launch: LaunchReplica,
    signal?: AbortSignal,
  ) {
    signal?.addEventListener('abort', () => this.halt(), { once: true });
  }

  /** The count asked for. */
  get desired(): number {
    return this.wanted;
  }

  status(): DeploymentStatus {
    return { desired: this.wanted, ready: this.service.ready, peakReady: this.peakReady, running: this.replicas.size + this.leaving.size, restarts: this.restarts };
  }

  /** Asks for `replicas` replicas: starts or retires some at once. */
  scaleTo(replicas: number): void {
    this.wanted = Math.max(0, replicas);
    this.reconcile();
  }

  /** Retires every replica as a scale to zero does, and resolves once they have all exited. */
  async stop(): Promise<void> {
    this.halt();
    for (const id of [...this.replicas.keys()]) this.retire(id);
    while (this.leaving.size) await Promise.all(this.leaving);
  }

  private halt(): void {
    this.halted = true;
    clearTimeout(this.restartTimer);
  }

  private reconcile(): void {
    if (this.halted) return;
    const views = [...this.replicas.values()].map((r) => ({ id: r.id, ready: r.ready, inflight: this.service.inflight(r.id) }));
    const plan = planReplicas(views, this.wanted);
    for (let i = 0; i < plan.start; i++) void this.startReplica();
    for (const id of plan.stop) this.retire(id);
  }

  private async startReplica(): Promise<void> {
    const replica: Replica = { id: this.nextId++, ready: false };
    this.replicas.set(replica.id, replica);
    const current = () => this.replicas.get(replica.id) === replica;
    try {
      const port = await freeListenPort();
      if (!current() || this.halted) return;
      const launched = this.launch(port, replica.id);
      replica.launched = launched;
      void launched.exited.then(() => this.fail(replica));
      await launched.ready;
      if (!current()) return;
      replica.ready = true;
      this.failuresInARow = 0;
      this.service.add(replica.id, port);
      this.peakReady = Math.max(this.peakReady, this.service.ready);
    } catch {
      // It exited before it was ready, or never became ready: replaced after the back-off.
      this.fail(replica);
    }
  }

  /** A replica that died or never became ready while it was wanted: out, stopped, and replaced later. */
  private fail(replica: Replica): void {
    if (this.replicas.get(replica.id) !== replica) return; // retired on purpose, or already handled
    if (replica.ready) this.restarts += 1;
    this.failuresInARow += 1;
    this.retire(replica.id);
    if (this.halted || this.restartTimer) return;
    const delay = Math.min(MAX_RESTART_DELAY_MS, FIRST_RESTART_DELAY_MS * 2 ** (this.failuresInARow - 1));
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.reconcile();
    }, delay);
  }

  /** Out of the rotation now; stopped once the requests it serves have finished. */
  private retire(id: number): void {
    const replica = this.replicas.get(id);
    if (!replica) return;
    this.replicas.delete(id);
    const gone: Promise<void> = (async () => {
      await this.service.remove(id);
      await replica.launched?.stop();
    })().finally(() => this.leaving.delete(gone));
    this.leaving.add(gone);
  }
}

/**
 * Launches a replica as the demo runs functions: `node <args>` with PORT set, ready when it answers
 * `readinessPath` (the Function's spec.readinessPath), stopped with SIGTERM so the runtime drains.
 */
export function nodeReplicaLauncher(processes: LocalProcesses, options: { name: string; args: string[]; env: NodeJS.ProcessEnv; readinessPath: string }): LaunchReplica {
  return (port, id) => {
    const child: ChildProcess = processes.start(`${options.name}-${id}`, options.args, { ...options.env, PORT: String(port) });
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    return {
      ready: waitReady(`http://127.0.0.1:${port}${options.readinessPath}`, `${options.name} replica ${id}`, child),
      exited,
      stop: () => processes.stop(child),
    };
  };
}
