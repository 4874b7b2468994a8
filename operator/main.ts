/**
 * The operator's entry point: `node --import tsx operator/main.ts [flags]` (see --help).
 * Parses settings once, starts everything, and on SIGTERM/SIGINT stops reconciling, releases the
 * Lease and exits 0; exits 1 if it loses the Lease (the pod restarts as a standby).
 */

import { pathToFileURL } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '../common/logger.js';
import { startOperator } from './manager.js';
import { type OperatorSettings, parseSettings, SettingsError } from './settings.js';

/** A KubeConfig from --kubeconfig / $KUBECONFIG, else the pod's in-cluster ServiceAccount. */
export function loadKubeConfig(settings: Pick<OperatorSettings, 'kubeconfig'>, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const config = new KubeConfig();
  if (settings.kubeconfig) config.loadFromFile(settings.kubeconfig);
  // Outside a pod loadFromCluster() yields a config without a server, and every list/watch would retry "Invalid URL" forever.
  else if (!env.KUBERNETES_SERVICE_HOST) throw new SettingsError('no cluster to connect to: pass --kubeconfig <file>, set KUBECONFIG, or run in a pod (KUBERNETES_SERVICE_HOST is not set)');
  else config.loadFromCluster();
  return config;
}

export async function main(argv: string[]): Promise<number> {
  let settings: OperatorSettings;
  let kubeConfig: KubeConfig;
  try {
    settings = parseSettings(argv);
    kubeConfig = loadKubeConfig(settings);
  } catch (error) {
    if (error instanceof SettingsError) {
      process.stderr.write(`${error.message}\n`);
      return argv.includes('--help') || argv.includes('-h') ? 0 : 2;
    }
    throw error;
  }
  const logger = createLogger('eventide-operator', { level: settings.logLevel });
  const operator = await startOperator({ kubeConfig, settings, logger });
  logger.info({ identity: settings.identity, leaderElect: settings.leaderElect, namespace: settings.namespace, ops: operator.opsUrl, dispatcherImage: settings.dispatcherImage }, 'operator started');
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const outcome = await Promise.race([signalled, operator.done]);
  if (outcome === 'lost') {
    logger.error('lost leadership; exiting so the pod restarts as a standby');
    await operator.stop();
    return 1;
  }
  logger.info({ signal: outcome }, 'shutting down');
  await operator.stop();
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`eventide-operator: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
