import type { KubeConfig, V1Secret } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import type { Problem } from './conditions.js';
import { apiErrorMessage, apiStatusCode } from './errors.js';
import { ResilientInformer } from './informer.js';
import type { KubeClients } from './kube.js';
import type { OperatorMetrics } from './metrics.js';

export const REASON_SECRETS_FORBIDDEN = 'SecretsForbidden';
export const REASON_SECRETS_UNAVAILABLE = 'SecretsUnavailable';

/**
 * Secrets, watched only in namespaces that have EventTriggers: an informer per namespace, started the
 * first time a trigger there is reconciled. Nothing else of the cluster's Secrets is listed or cached.
 */
export class SecretWatcher {
  private readonly informers = new Map<string, ResilientInformer<V1Secret>>();

  constructor(
    private readonly config: KubeConfig,
    private readonly clients: KubeClients,
    private readonly deps: { logger: Logger; metrics: OperatorMetrics },
    private readonly handlers: {
      /** A Secret in a watched namespace changed. */
      changed(namespace: string, name: string): void;
      /** A namespace's Secrets are now cached: everything waiting on them can be reconciled. */
      synced(namespace: string): void;
      /** Listing a namespace's Secrets failed before they were ever cached (e.g. RBAC forbids it). */
      failed(namespace: string): void;
    },
  ) {}

  /** Starts watching `namespace` if needed; true once its Secrets are cached. */
  ensure(namespace: string): boolean {
    const existing = this.informers.get(namespace);
    if (existing) return existing.hasSynced();
    const informer = new ResilientInformer<V1Secret>(
      this.config,
      {
        resource: `secrets/${namespace}`,
        path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
        list: () => this.clients.core.listNamespacedSecret({ namespace }),
      },
      this.deps,
    );
    informer.on((_event, secret) => {
      if (secret.metadata?.name) this.handlers.changed(namespace, secret.metadata.name);
    });
    informer.onFailure(() => {
      if (!informer.hasSynced()) this.handlers.failed(namespace);
    });
    this.informers.set(namespace, informer);
    informer.start();
    informer.waitForSync().then(
      () => this.handlers.synced(namespace),
      () => {},
    );
    return false;
  }

  /**
   * Why a namespace's Secrets are not cached, once listing them has failed: the operator may not read
   * them (RBAC), or the API answered with an error. Undefined while the first list is under way.
   */
  problem(namespace: string): Problem | undefined {
    const informer = this.informers.get(namespace);
    if (!informer || informer.hasSynced()) return undefined;
    const error = informer.failing();
    if (error === undefined) return undefined;
    if (apiStatusCode(error) === 403) {
      return {
        reason: REASON_SECRETS_FORBIDDEN,
        message: `the operator may not read Secrets in namespace "${namespace}" (list forbidden); with the Helm chart, add the namespace to rbac.secretNamespaces or leave that list empty`,
      };
    }
    return { reason: REASON_SECRETS_UNAVAILABLE, message: `cannot list Secrets in namespace "${namespace}": ${apiErrorMessage(error)}` };
  }

  get(namespace: string, name: string): V1Secret | undefined {
    return this.informers.get(namespace)?.get(name, namespace);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
    this.informers.clear();
  }
}
