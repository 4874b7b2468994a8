import { setTimeout as sleep } from 'node:timers/promises';
import { type KubeConfig, type KubernetesListObject, type KubernetesObject, makeInformer } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import { apiErrorMessage, apiStatusCode } from './errors.js';
import type { OperatorMetrics } from './metrics.js';

export type InformerEvent = 'add' | 'update' | 'delete';
export type InformerHandler<T> = (event: InformerEvent, obj: T) => void;

/** What one informer lists and watches. */
export interface InformerSpec<T extends KubernetesObject> {
  /** Name for logs and metrics, e.g. "deployments". */
  resource: string;
  /** Watch path, e.g. /apis/apps/v1/deployments. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
}

const RESTART_BASE_MS = 500;
const RESTART_MAX_MS = 30_000;

/**
 * A list+watch cache that does not die. client-node's informer relists by itself on 410 Gone and
 * reconnects when a watch ends normally; on any other failure it only reports the error and stops. Here
 * every such failure is logged, counted and followed by a restart with exponential backoff (resuming
 * from the last resourceVersion, or relisting when that is too old).
 */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly informer;
  private readonly handlers: InformerHandler<T>[] = [];
  private readonly syncWaiters: (() => void)[] = [];
  private readonly stopController = new AbortController();
  private synced = false;
  private listSucceeded = false;
  private failure: ((error: unknown) => void) | undefined;
  private running: Promise<void> | undefined;
  private readonly failureListeners: ((error: unknown) => void)[] = [];
  private lastError: unknown;

  constructor(
    config: KubeConfig,
    readonly spec: InformerSpec<T>,
    private readonly deps: { logger: Logger; metrics: OperatorMetrics },
  ) {
    const list = async () => {
      const result = await spec.list();
      this.listSucceeded = true;
      return result;
    };
    this.informer = makeInformer<T>(config, spec.path, list, spec.labelSelector);
    this.informer.on('add', (obj) => this.emit('add', obj));
    this.informer.on('update', (obj) => this.emit('update', obj));
    this.informer.on('delete', (obj) => this.emit('delete', obj));
    this.informer.on('error', (error: unknown) => this.failure?.(error ?? new Error('watch ended with an error')));
  }

  /** Registers a handler for cache changes; handlers must only enqueue keys. */
  on(handler: InformerHandler<T>): void {
    this.handlers.push(handler);
  }

  /** Registers a listener for list/watch failures (each is followed by a restart with backoff). */
  onFailure(listener: (error: unknown) => void): void {
    this.failureListeners.push(listener);
  }

  /** The failure since which the informer has not listed successfully, if any. */
  failing(): unknown {
    return this.lastError;
  }

  /** Starts listing and watching in the background. */
  start(): void {
    this.running ??= this.run();
  }

  /** True once the first list has filled the cache; stays true across restarts. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the cache is filled; rejects if the informer is stopped first. */
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.syncWaiters.push(resolve);
      this.stopController.signal.addEventListener('abort', () => reject(new Error(`${this.spec.resource} informer stopped before it synced`)), { once: true });
    });
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.informer.list(namespace);
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    this.failure?.(undefined);
    await this.informer.stop();
    await this.running;
  }

  private emit(event: InformerEvent, obj: T): void {
    for (const handler of this.handlers) {
      try {
        handler(event, obj);
      } catch (error) {
        this.deps.logger.error({ err: error, resource: this.spec.resource }, 'informer handler threw');
      }
    }
  }

  private async run(): Promise<void> {
    const { logger, metrics } = this.deps;
    const signal = this.stopController.signal;
    let delay = RESTART_BASE_MS;
    while (!signal.aborted) {
      let failed = false;
      const failure = new Promise<unknown>((resolve) => {
        this.failure = (error) => {
          failed = true;
          resolve(error);
        };
      });
      try {
        // Resolves once the list is in the cache and the watch is open, or after a failure was reported.
        await this.informer.start();
      } catch (error) {
        this.failure?.(error);
      }
      if (signal.aborted) break;
      if (!failed && this.listSucceeded) {
        delay = RESTART_BASE_MS;
        this.lastError = undefined;
        if (!this.synced) {
          this.synced = true;
          logger.debug({ resource: this.spec.resource, objects: this.informer.list().length }, 'informer synced');
          for (const resolve of this.syncWaiters.splice(0)) resolve();
        }
      }
      const error = await failure;
      if (signal.aborted) break;
      if (!this.synced) this.lastError = error ?? new Error('list failed');
      for (const listener of this.failureListeners) listener(error);
      metrics.informerRestarts.inc({ resource: this.spec.resource });
      logger.warn({ resource: this.spec.resource, status: apiStatusCode(error), err: apiErrorMessage(error), retryInMs: delay }, 'list/watch failed; restarting');
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        break;
      }
      delay = Math.min(delay * 2, RESTART_MAX_MS);
    }
  }
}
