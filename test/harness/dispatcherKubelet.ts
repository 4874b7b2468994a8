/**
 * Plays the kubelet for the dispatcher Deployments the operator writes, with real processes: for each
 * Deployment it starts the real `eventide` command with the container's args, its environment with
 * every `secretKeyRef` resolved from the Secret, and the ConfigMap volume written the way kubelet's
 * atomic writer does (a timestamped directory, `..data`, links) and kept in sync with the ConfigMap.
 * A changed pod template (a rotated Secret) is a new pod: the old process gets SIGTERM first (the
 * Deployment's Recreate strategy); a deleted Deployment's process gets SIGTERM.
 *
 * Where a real node differs, the harness stands in: each pod gets its own loopback address
 * (127.0.0.x, passed as --host, as each pod has its own IP), its volume lives under a temp dir (the
 * path in `-f` is that dir, as a bind mount would put it), and cluster DNS names of Services are
 * /etc/hosts entries (see ClusterDns), so the operator and the dispatcher reach each other and the
 * functions by the names they use in a cluster.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1ConfigMap, type V1Deployment } from '@kubernetes/client-node';

const BIN = fileURLToPath(new URL('../../bin/eventide.mjs', import.meta.url));
const HOSTS = '/etc/hosts';

/**
 * Cluster DNS for the test: `<service>.<namespace>.svc.cluster.local` names in /etc/hosts, inside a
 * marked block that is removed when the test ends (and at exit, should it crash).
 */
export class ClusterDns {
  private readonly marker = `# eventide-test ${process.pid}`;
  private readonly original: string;
  private readonly names = new Map<string, string>();

  constructor() {
    this.original = readFileSync(HOSTS, 'utf8');
    process.once('exit', () => this.restore());
  }

  add(name: string, address: string): void {
    if (this.names.get(name) === address) return;
    this.names.set(name, address);
    appendFileSync(HOSTS, `${address} ${name} ${this.marker}\n`);
  }

  restore(): void {
    const current = readFileSync(HOSTS, 'utf8');
    const kept = current
      .split('\n')
      .filter((line) => !line.endsWith(this.marker))
      .join('\n');
    if (kept !== current) writeFileSync(HOSTS, kept.length > 0 ? kept : this.original);
  }
}

/**
 * Writes a ConfigMap's data into `dir` as kubelet's atomic writer does: a new timestamped directory,
 * `..data` swapped to it in one rename, and a link per key through `..data`. Call again to update.
 */
export function writeConfigMapVolume(dir: string, data: Record<string, string>): void {
  const version = `..${new Date().toISOString().replace(/[-:.TZ]/g, '_')}${Math.random().toString(36).slice(2, 8)}`;
  mkdirSync(join(dir, version));
  for (const [key, value] of Object.entries(data)) writeFileSync(join(dir, version, key), value);
  const staging = join(dir, '..data_tmp');
  rmSync(staging, { force: true });
  symlinkSync(version, staging);
  renameSync(staging, join(dir, '..data'));
  for (const key of Object.keys(data)) {
    try {
      symlinkSync(join('..data', key), join(dir, key));
    } catch {
      // already linked
    }
  }
}

/** A dispatcher "pod": the process and what it was started from. */
export interface DispatcherPod {
  name: string;
  address: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

interface Running extends DispatcherPod {
  template: string;
  volumeDir: string;
  configMapVersion: string | undefined;
}

export class DispatcherKubelet {
  private readonly apps: AppsV1Api;
  private readonly core: CoreV1Api;
  private readonly pods = new Map<string, Running>();
  private readonly addresses = new Map<string, string>();
  private readonly root = mkdtempSync(join(tmpdir(), 'eventide-kubelet-'));
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> = Promise.resolve();
  private nextAddress: number;
  /** Every pod ever started, for tests that count restarts. */
  readonly history: DispatcherPod[] = [];

  /**
   * `firstAddress`: the last octet of the first 127.0.0.x handed out (default 10). Test files that run at
   * the same time (vitest runs two at once) each need their own range: every dispatcher listens on :9090.
   */
  constructor(
    kubeConfig: KubeConfig,
    private readonly namespace: string,
    private readonly dns: ClusterDns,
    options: { firstAddress?: number } = {},
  ) {
    this.nextAddress = options.firstAddress ?? 10;
    this.apps = kubeConfig.makeApiClient(AppsV1Api);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
  }

  start(): void {
    const tick = () => {
      this.syncing = this.syncing.then(() => this.sync()).catch(() => undefined);
    };
    this.timer = setInterval(tick, 500);
    tick();
  }

  /** The running pod of a dispatcher Deployment. */
  pod(deployment: string): DispatcherPod | undefined {
    return this.pods.get(deployment);
  }

  /** The loopback address a dispatcher Deployment's pods get (stable per Deployment, like a Service's endpoints would be). */
  addressOf(deployment: string): string {
    let address = this.addresses.get(deployment);
    if (!address) {
      address = `127.0.0.${this.nextAddress++}`;
      this.addresses.set(deployment, address);
    }
    return address;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.syncing;
    await Promise.all([...this.pods.values()].map((pod) => this.terminate(pod)));
    rmSync(this.root, { recursive: true, force: true });
  }

  private async sync(): Promise<void> {
    const { items } = await this.apps.listNamespacedDeployment({ namespace: this.namespace, labelSelector: 'app.kubernetes.io/component=dispatcher' });
    const live = new Set<string>();
    for (const deployment of items) {
      const name = deployment.metadata!.name!;
      live.add(name);
      const template = JSON.stringify(deployment.spec?.template);
      let pod = this.pods.get(name);
      if (pod && pod.template !== template) {
        await this.terminate(pod);
        pod = undefined;
      }
      if (pod && pod.child.exitCode !== null) {
        // Exited by itself: kubelet restarts the container.
        this.pods.delete(name);
        pod = undefined;
      }
      if (!pod) pod = await this.run(deployment, template);
      if (pod) await this.syncVolume(deployment, pod);
    }
    for (const [name, pod] of this.pods) if (!live.has(name)) await this.terminate(pod);
  }

  private async terminate(pod: Running): Promise<void> {
    this.pods.delete(pod.name);
    if (pod.child.exitCode === null && pod.child.signalCode === null) pod.child.kill('SIGTERM');
    const timeout = setTimeout(() => pod.child.kill('SIGKILL'), 60_000);
    await pod.exited;
    clearTimeout(timeout);
  }

  private async configMapOf(deployment: V1Deployment): Promise<V1ConfigMap | undefined> {
    const volume = deployment.spec?.template.spec?.volumes?.find((v) => v.configMap);
    if (!volume?.configMap?.name) return undefined;
    try {
      return await this.core.readNamespacedConfigMap({ name: volume.configMap.name, namespace: this.namespace });
    } catch {
      return undefined;
    }
  }

  private async syncVolume(deployment: V1Deployment, pod: Running): Promise<void> {
    const configMap = await this.configMapOf(deployment);
    if (!configMap || configMap.metadata?.resourceVersion === pod.configMapVersion) return;
    writeConfigMapVolume(pod.volumeDir, configMap.data ?? {});
    pod.configMapVersion = configMap.metadata?.resourceVersion;
  }

  private async env(deployment: V1Deployment): Promise<Record<string, string> | undefined> {
    const container = deployment.spec!.template.spec!.containers[0]!;
    const env: Record<string, string> = {};
    for (const variable of container.env ?? []) {
      const ref = variable.valueFrom?.secretKeyRef;
      if (ref) {
        try {
          const secret = await this.core.readNamespacedSecret({ name: ref.name!, namespace: this.namespace });
          const value = secret.data?.[ref.key];
          // kubelet does not start a container whose Secret key is missing.
          if (value === undefined) return undefined;
          env[variable.name] = Buffer.from(value, 'base64').toString('utf8');
        } catch {
          return undefined;
        }
      } else if (variable.value !== undefined) {
        env[variable.name] = variable.value;
      }
    }
    return env;
  }

  private async run(deployment: V1Deployment, template: string): Promise<Running | undefined> {
    const name = deployment.metadata!.name!;
    const container = deployment.spec!.template.spec!.containers[0]!;
    const env = await this.env(deployment);
    const configMap = await this.configMapOf(deployment);
    if (!env || !configMap) return undefined;
    const mount = container.volumeMounts?.find((m) => deployment.spec!.template.spec!.volumes?.some((v) => v.name === m.name && v.configMap));
    const volumeDir = mkdtempSync(join(this.root, `${name}-`));
    writeConfigMapVolume(volumeDir, configMap.data ?? {});
    const args = (container.args ?? []).map((arg) => (mount && arg === mount.mountPath ? volumeDir : arg));
    const address = this.addressOf(name);
    this.dns.add(`${name}.${this.namespace}.svc.cluster.local`, address);
    const child = spawn(process.execPath, [BIN, ...args, '--host', address], {
      // Only what the container is given: no inherited variables that could hide a missing one.
      env: { PATH: process.env.PATH ?? '', HOME: tmpdir(), ...env, LOG_LEVEL: process.env.EVENTIDE_TEST_LOG_LEVEL ?? 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    process.once('exit', () => child.kill('SIGKILL'));
    const pod: Running = { name, address, child, output: () => log, exited, template, volumeDir, configMapVersion: configMap.metadata?.resourceVersion };
    this.pods.set(name, pod);
    this.history.push(pod);
    return pod;
  }
}
