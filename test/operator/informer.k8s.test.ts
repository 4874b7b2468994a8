import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { CoreV1Api, KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenOnLoopback } from '../../common/loopback.js';
import { ResilientInformer } from '../../operator/informer.js';
import { createOperatorMetrics } from '../../operator/metrics.js';
import { type ControlPlane, startControlPlane } from '../harness/controlPlane.js';
import { createNamespace, eventually, kubeConfigFrom, kubectlOk, testLogger } from './support.js';

const NS = 'relist';

/** A TCP proxy to the apiserver that can drop every connection and refuse new ones (a network partition). */
interface Partition {
  url: string;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

async function partitionableProxy(target: URL): Promise<Partition> {
  const sockets = new Set<Socket>();
  let cut = false;
  const server: Server = createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  const port = await listenOnLoopback(server);
  return {
    url: `https://127.0.0.1:${port}`,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    heal() {
      cut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** The admin kubeconfig pointed at another server URL (the proxy). */
function viaServer(admin: KubeConfig, server: string): KubeConfig {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: admin.clusters.map((c) => ({ ...c, server })),
    users: admin.users,
    contexts: admin.contexts,
    currentContext: admin.currentContext,
  });
  return config;
}

describe('informer across a partition longer than etcd keeps history', () => {
  let cp: ControlPlane;
  let proxy: Partition;
  let informer: ResilientInformer<V1ConfigMap>;

  beforeAll(async () => {
    // No watch cache, and etcd compacted every second: a watch resumed from an old resourceVersion gets
    // 410 Gone quickly, as it would in a busy cluster after a long disconnection.
    cp = await startControlPlane({ apiServerArgs: ['--watch-cache=false', '--etcd-compaction-interval=1s'] });
    await createNamespace(cp, NS);
    proxy = await partitionableProxy(new URL(cp.server));
  }, 180_000);

  afterAll(async () => {
    await informer?.stop();
    await proxy?.close();
    await cp?.stop();
  });

  it('relists on 410 Gone: objects deleted, added and changed while it was cut off are all seen', async () => {
    const admin = kubeConfigFrom(cp.kubeconfigPath);
    const core = viaServer(admin, proxy.url).makeApiClient(CoreV1Api);
    await kubectlOk(cp, ['create', 'configmap', 'kept', '-n', NS, '--from-literal=v=1']);
    await kubectlOk(cp, ['create', 'configmap', 'doomed', '-n', NS, '--from-literal=v=1']);

    let lists = 0;
    const events: string[] = [];
    const metrics = createOperatorMetrics();
    informer = new ResilientInformer<V1ConfigMap>(
      viaServer(admin, proxy.url),
      {
        resource: 'configmaps',
        path: `/api/v1/namespaces/${NS}/configmaps`,
        list: () => {
          lists += 1;
          return core.listNamespacedConfigMap({ namespace: NS });
        },
      },
      { logger: testLogger('informer-test'), metrics },
    );
    informer.on((event, cm) => events.push(`${event} ${cm.metadata?.name}`));
    informer.start();
    await informer.waitForSync();
    expect(lists).toBe(1);
    const names = () =>
      informer
        .list()
        .map((cm) => `${cm.metadata?.name}=${cm.data?.v}`)
        .sort();
    expect(names()).toContain('kept=1');

    proxy.cut();
    await kubectlOk(cp, ['delete', 'configmap', 'doomed', '-n', NS]);
    await kubectlOk(cp, ['create', 'configmap', 'born', '-n', NS, '--from-literal=v=1']);
    await kubectlOk(cp, ['patch', 'configmap', 'kept', '-n', NS, '-p', '{"data":{"v":"2"}}']);
    // Churn elsewhere and let compaction pass the informer's resourceVersion.
    for (let i = 0; i < 5; i++) {
      await kubectlOk(cp, ['create', 'configmap', `churn-${i}`, '-n', 'default', '--from-literal=v=1']);
      await new Promise((r) => setTimeout(r, 1000));
    }
    proxy.heal();

    await eventually('the cache to match the cluster', async () => names().join() === 'born=1,kept=2' || undefined, 60_000);
    expect(lists).toBeGreaterThanOrEqual(2); // the watch could not resume: it relisted
    expect(events).toContain('delete doomed');
    expect(events).toContain('add born');
    expect(events).toContain('update kept');
    expect((await metrics.informerRestarts.get()).values.reduce((n, v) => n + v.value, 0)).toBeGreaterThan(0);
  }, 120_000);
});
