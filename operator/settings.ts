import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULT_LEASE_DURATION_MS, DEFAULT_RENEW_DEADLINE_MS, DEFAULT_RETRY_PERIOD_MS } from './leaderElection.js';

/** Everything the operator is configured with, parsed once at start-up. */
export interface OperatorSettings {
  /** Kubeconfig file; absent means in-cluster (the pod's ServiceAccount). */
  kubeconfig?: string;
  /** Namespace of the leader Lease (the operator's own namespace). */
  namespace: string;
  /** Image of the dispatcher Deployments the operator creates. */
  dispatcherImage: string;
  dispatcherImagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** Port of /metrics, /healthz and /readyz; 0 picks a free one, -1 serves nothing. */
  metricsPort: number;
  metricsHost: string;
  leaderElect: boolean;
  leaseName: string;
  /** The operator's own Deployment (in `namespace`), made the Lease's owner so that uninstalling removes it. */
  leaseOwner?: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** This replica's name in the Lease. */
  identity: string;
  /** Concurrent reconciles per kind. */
  workers: number;
  logLevel: string;
}

const SERVICE_ACCOUNT_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export const DEFAULT_SETTINGS = {
  namespace: 'eventide-system',
  dispatcherImage: 'ghcr.io/eventide-dev/eventide:latest',
  metricsPort: 8080,
  metricsHost: '0.0.0.0',
  leaderElect: false,
  leaseName: 'eventide-operator',
  leaseDurationMs: DEFAULT_LEASE_DURATION_MS,
  renewDeadlineMs: DEFAULT_RENEW_DEADLINE_MS,
  retryPeriodMs: DEFAULT_RETRY_PERIOD_MS,
  workers: 4,
  logLevel: 'info',
} as const;

/** An invalid flag or environment variable. */
export class SettingsError extends Error {
  readonly code = 'EVENTIDE_INVALID_SETTINGS';
  override readonly name = 'SettingsError';
}

export const USAGE = `Usage: eventide-operator [flags]

  --kubeconfig <file>          kubeconfig to use (default: in-cluster, or $KUBECONFIG)
  --namespace <ns>             namespace of the leader Lease (default: the pod's namespace, $POD_NAMESPACE, ${DEFAULT_SETTINGS.namespace})
  --dispatcher-image <ref>     image of dispatcher Deployments ($EVENTIDE_DISPATCHER_IMAGE)
  --dispatcher-image-pull-policy Always|IfNotPresent|Never
  --metrics-port <port>        /metrics /healthz /readyz port (default ${DEFAULT_SETTINGS.metricsPort}; -1 disables)
  --metrics-host <addr>        address to listen on (default ${DEFAULT_SETTINGS.metricsHost})
  --leader-elect               run only while holding the Lease (for more than one replica)
  --lease-name <name>          default ${DEFAULT_SETTINGS.leaseName}
  --lease-owner <deployment>   the operator's Deployment, owner of the Lease it creates ($EVENTIDE_LEASE_OWNER)
  --identity <id>              name in the Lease (default: $POD_NAME or hostname, plus a random suffix)
  --workers <n>                concurrent reconciles per kind (default ${DEFAULT_SETTINGS.workers})
  --log-level <level>          trace|debug|info|warn|error ($LOG_LEVEL, default info)
`;

function integer(name: string, text: string, min: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new SettingsError(`--${name}: expected an integer >= ${min}, got "${text}"`);
  return value;
}

function podNamespace(env: NodeJS.ProcessEnv): string | undefined {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Parses flags, falling back to environment variables, then defaults. */
export function parseSettings(argv: string[], env: NodeJS.ProcessEnv = process.env): OperatorSettings {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        kubeconfig: { type: 'string' },
        namespace: { type: 'string' },
        'dispatcher-image': { type: 'string' },
        'dispatcher-image-pull-policy': { type: 'string' },
        'metrics-port': { type: 'string' },
        'metrics-host': { type: 'string' },
        'leader-elect': { type: 'boolean' },
        'lease-name': { type: 'string' },
        'lease-owner': { type: 'string' },
        identity: { type: 'string' },
        workers: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new SettingsError(`${(error as Error).message}\n\n${USAGE}`);
  }
  const v = parsed.values;
  if (v.help) throw new SettingsError(USAGE);
  const pullPolicy = v['dispatcher-image-pull-policy'] ?? env.EVENTIDE_DISPATCHER_IMAGE_PULL_POLICY;
  if (pullPolicy !== undefined && !['Always', 'IfNotPresent', 'Never'].includes(pullPolicy)) {
    throw new SettingsError(`--dispatcher-image-pull-policy: expected Always, IfNotPresent or Never, got "${pullPolicy}"`);
  }
  const kubeconfig = v.kubeconfig ?? env.KUBECONFIG;
  return {
    ...(kubeconfig ? { kubeconfig } : {}),
    namespace: v.namespace ?? podNamespace(env) ?? DEFAULT_SETTINGS.namespace,
    dispatcherImage: v['dispatcher-image'] ?? env.EVENTIDE_DISPATCHER_IMAGE ?? DEFAULT_SETTINGS.dispatcherImage,
    ...(pullPolicy ? { dispatcherImagePullPolicy: pullPolicy as OperatorSettings['dispatcherImagePullPolicy'] } : {}),
    metricsPort: v['metrics-port'] !== undefined ? integer('metrics-port', v['metrics-port'], -1) : DEFAULT_SETTINGS.metricsPort,
    metricsHost: v['metrics-host'] ?? DEFAULT_SETTINGS.metricsHost,
    leaderElect: v['leader-elect'] ?? DEFAULT_SETTINGS.leaderElect,
    leaseName: v['lease-name'] ?? DEFAULT_SETTINGS.leaseName,
    ...((v['lease-owner'] ?? env.EVENTIDE_LEASE_OWNER) ? { leaseOwner: (v['lease-owner'] ?? env.EVENTIDE_LEASE_OWNER)! } : {}),
    leaseDurationMs: DEFAULT_SETTINGS.leaseDurationMs,
    renewDeadlineMs: DEFAULT_SETTINGS.renewDeadlineMs,
    retryPeriodMs: DEFAULT_SETTINGS.retryPeriodMs,
    identity: v.identity ?? `${env.POD_NAME ?? hostname()}_${randomBytes(4).toString('hex')}`,
    workers: v.workers !== undefined ? integer('workers', v.workers, 1) : DEFAULT_SETTINGS.workers,
    logLevel: v['log-level'] ?? env.LOG_LEVEL ?? DEFAULT_SETTINGS.logLevel,
  };
}

/** Settings for embedding the operator (tests, benchmarks): defaults plus overrides. */
export function settingsWith(overrides: Partial<OperatorSettings>): OperatorSettings {
  return {
    ...DEFAULT_SETTINGS,
    identity: `${hostname()}_${randomBytes(4).toString('hex')}`,
    ...overrides,
  };
}
