/**
 * A real single-node Kubernetes cluster for tests: pods run real containers (containerd + runc from
 * Debian, kubelet and kube-proxy built from the same Kubernetes module as the control plane, CNI
 * bridge, CoreDNS), from images made or imported locally — no Docker, no registry. The control plane is
 * controlPlane.ts's, started to serve a node (`node` option).
 *
 * The node changes the host (sysctls, iptables, a cni0 bridge, mounts, cgroups, files kubelet and
 * containerd write outside their dirs). All of it is recorded before the node starts and given back by
 * stop(); a watchdog does the same if this process dies without stop(), and the next start does it if
 * both were killed. One node per machine (a second start waits for the first one's stop()); needs root.
 *
 *   const node = await startRealNode();
 *   const image = await node.makeImage(await makeNodeRootfs(dir), 'localhost/echo:test', { cmd: ['node', '/app/server.js'] });
 *   await node.kubectl(['apply', '-f', '-'], manifest);   // pods use `imagePullPolicy: Never`
 *   await node.stop();
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ControlPlane, ensureControlPlaneBinaries, type KubectlResult, startControlPlane } from './controlPlane.js';
import { coreDnsVersion, ensureRealNodeBinaries } from './realNode/binaries.js';
import { cgroupHierarchies } from './realNode/cgroups.js';
import { startContainerd } from './realNode/containerd.js';
import { coreDnsManifests } from './realNode/coredns.js';
import { captureHost, type HostRecord, writeRecord } from './realNode/hostRecord.js';
import { claimMachine, DATA_DIR, RECORD, RUN_DIR, startWatchdog, stopWatchdog } from './realNode/machineClaim.js';
import { startKubelet, startKubeProxy } from './realNode/nodeAgents.js';
import { cniConflist, type NodeNetwork } from './realNode/nodeConfig.js';
import { nodeImages } from './realNode/nodeImages.js';
import type { OciImageConfig } from './realNode/ociImage.js';
import { type ProcessRef, processRef, refRunning } from './realNode/processes.js';
import { releaseClaim, teardownNode } from './realNode/teardown.js';

export { makeNodeRootfs } from './realNode/nodeRootfs.js';
export { type OciImageConfig, readOciArchiveRef, writeOciArchive } from './realNode/ociImage.js';

const NODE_NAME = 'eventide-node';
const SERVICE_CIDR = '10.96.0.0/24';
const PAUSE_IMAGE = 'localhost/pause:3.10';

export interface RealNodeOptions {
  /** Install packages / build binaries when missing (test/realnode/build.sh; default true). */
  build?: boolean;
  /** Address the apiserver, kubelet and kube-proxy bind and advertise (default: the default route's interface address). */
  nodeIp?: string;
  /** Where progress lines go (default stderr). */
  log?: (line: string) => void;
  /** Keep the node components' logs here (default: a temp dir stop() removes). */
  logsDir?: string;
  /** How long each wait (node Ready, CoreDNS Ready, ...) may take (default 120 s). */
  readyTimeoutMs?: number;
  /**
   * How long to wait for another process's node on this machine to stop (default 30 min: test files run
   * in parallel, and another real-node file may hold the machine for its whole run).
   */
  waitForMachineMs?: number;
}

export interface RealNode {
  /** Admin (`system:masters`) kubeconfig. */
  readonly kubeconfigPath: string;
  readonly nodeName: string;
  readonly nodeIp: string;
  readonly network: NodeNetwork & { serviceCidr: string };
  readonly controlPlane: ControlPlane;
  /** The node's own dirs (containerd and kubelet roots; sockets and the host record), gone after stop(). */
  readonly dataDir: string;
  readonly runDir: string;
  /** containerd.log, kubelet.log, kube-proxy.log (the control plane's are in controlPlane.dir). */
  readonly logsDir: string;
  /** Seconds from the start to the end of each phase, in order (also printed as it goes). */
  readonly timings: { phase: string; seconds: number }[];
  /** kubectl as admin; never throws on a non-zero exit: check `code`. */
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  /**
   * Imports an OCI (or docker) image archive into the node's containerd, under the name its index
   * annotation gives (`org.opencontainers.image.ref.name`: a full name, e.g. from
   * `buildah push IMG oci-archive:FILE:localhost/name:tag`). Returns that name.
   */
  importImage(archivePath: string): Promise<string>;
  /** Makes a one-layer image of `rootfsDir` named `ref` (e.g. `localhost/echo:test`) and imports it. Returns `ref`. */
  makeImage(rootfsDir: string, ref: string, config?: OciImageConfig): Promise<string>;
  /**
   * Stops every process and gives the host back as it was; throws listing what it could not restore.
   * `beforeRelease` runs once the host is restored and before another node may start on the machine
   * (checks that nothing was left behind; its error is thrown after the release). Idempotent: a
   * second call returns the first one's promise.
   */
  stop(opts?: { beforeRelease?: () => void | Promise<void> }): Promise<void>;
}

/** Why a real node cannot run on this machine at all, or undefined when it can (a reason to skip, not to fail). */
export function realNodeUnsupportedReason(): string | undefined {
  if (process.platform !== 'linux') return `a real node needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'a real node needs root (containerd, mounts, iptables, cgroups)';
  if (cgroupHierarchies().length === 0) return 'no cgroup filesystem under /sys/fs/cgroup';
  if (!readFileSync('/proc/filesystems', 'utf8').includes('\toverlay')) return 'the kernel has no overlay filesystem';
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${stderr || error.message}`, { cause: error }));
      else resolve(stdout);
    }),
  );
}

/** IPv4 address of the interface the default route leaves through. */
async function primaryIp(): Promise<string> {
  const routes = JSON.parse(await run('ip', ['-j', '-4', 'route', 'show', 'default'])) as { dev?: string }[];
  const dev = routes[0]?.dev;
  if (!dev) throw new Error('no default IPv4 route: pass startRealNode({ nodeIp })');
  const links = JSON.parse(await run('ip', ['-j', '-4', 'addr', 'show', 'dev', dev])) as { addr_info?: { local?: string }[] }[];
  const ip = links[0]?.addr_info?.[0]?.local;
  if (!ip) throw new Error(`interface ${dev} has no IPv4 address: pass startRealNode({ nodeIp })`);
  return ip;
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** kube components and the commands they run (iptables, mount, ip) live in sbin dirs a non-login PATH may lack. */
function ensureSbinOnPath(): void {
  const path = (process.env.PATH ?? '').split(':');
  for (const dir of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!path.includes(dir)) path.push(dir);
  process.env.PATH = path.filter(Boolean).join(':');
}

export async function startRealNode(opts: RealNodeOptions = {}): Promise<RealNode> {
  const unsupported = realNodeUnsupportedReason();
  if (unsupported) throw new Error(unsupported);
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const readyTimeoutMs = opts.readyTimeoutMs ?? 120_000;
  const started = Date.now();
  const timings: { phase: string; seconds: number }[] = [];
  let lastLap = started;
  const lap = (phase: string): void => {
    const now = Date.now();
    const seconds = (now - started) / 1000;
    timings.push({ phase, seconds });
    log(`[realnode ${seconds.toFixed(1).padStart(5)}s] ${phase} (+${((now - lastLap) / 1000).toFixed(1)}s)`);
    lastLap = now;
  };
  ensureSbinOnPath();

  const [cpBinDir, nodeBinDir] = await Promise.all([ensureControlPlaneBinaries({ build: opts.build ?? true }), ensureRealNodeBinaries({ build: opts.build ?? true })]);
  lap('packages and binaries');
  const nodeIp = opts.nodeIp ?? (await primaryIp());
  const network = {
    nodeName: NODE_NAME,
    nodeIp,
    podCidr: '10.244.0.0/24',
    clusterCidr: '10.244.0.0/16',
    clusterDnsIp: '10.96.0.10',
    serviceCidr: SERVICE_CIDR,
  };

  // --- record the host before touching it
  await claimMachine(log, opts.waitForMachineMs ?? 30 * 60_000);
  let record: HostRecord;
  const logsDir = opts.logsDir ?? mkdtempSync(join(tmpdir(), 'eventide-node-logs-'));
  try {
    mkdirSync(DATA_DIR, { recursive: true, mode: 0o700 });
    mkdirSync(logsDir, { recursive: true });
    record = {
      owner: processRef('owner', process.pid),
      dataDir: DATA_DIR,
      runDir: RUN_DIR,
      containerdSocket: join(RUN_DIR, 'containerd.sock'),
      scratchDirs: opts.logsDir ? [] : [logsDir],
      processes: [],
      before: await captureHost(),
    };
    writeRecord(RECORD, record);
  } catch (error) {
    // Nothing changed yet: give the claim back, or the next start would find dirs without a record.
    for (const dir of [DATA_DIR, RUN_DIR, ...(opts.logsDir ? [] : [logsDir])]) rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  record.watchdog = startWatchdog(process.pid);
  writeRecord(RECORD, record);
  const track = (ref: ProcessRef): void => {
    record.processes.push(ref);
    writeRecord(RECORD, record);
  };
  lap('host state recorded');

  let controlPlane: ControlPlane | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (stopOpts: { beforeRelease?: () => void | Promise<void> } = {}): Promise<void> => {
    stopping ??= (async () => {
      const stopStarted = Date.now();
      const problems = await teardownNode(record, (line) => log(`[realnode stop] ${line}`), { keepClaim: true });
      await controlPlane?.stop();
      let checkError: unknown;
      try {
        await stopOpts.beforeRelease?.();
      } catch (error) {
        checkError = error;
      }
      if (problems.length === 0) problems.push(...releaseClaim(record));
      // Last: until here, a death of this process still leaves the teardown to the watchdog.
      stopWatchdog(record.watchdog);
      log(`[realnode stop] done in ${((Date.now() - stopStarted) / 1000).toFixed(1)}s`);
      if (problems.length > 0) throw new Error(`the real node could not restore everything:\n${problems.join('\n')}`);
      if (checkError !== undefined) throw checkError;
    })();
    return stopping;
  };

  const failWith = async (error: unknown, logs: string[]): Promise<never> => {
    const details = logs.map((name) => `--- ${name}.log (tail) ---\n${tail(join(logsDir, `${name}.log`))}`).join('\n');
    // Keep the logs for a look at more than the tails.
    record.scratchDirs = [];
    writeRecord(RECORD, record);
    await stop().catch((stopError: unknown) => log(`[realnode] ${(stopError as Error).message}`));
    throw new Error(`${(error as Error).message} (logs: ${logsDir})\n${details}`, { cause: error });
  };

  const socket = record.containerdSocket;
  const images = nodeImages(socket, join(DATA_DIR, 'images'));

  try {
    // --- containerd + images, and the control plane, side by side
    const cniConfDir = join(DATA_DIR, 'cni', 'net.d');
    mkdirSync(cniConfDir, { recursive: true });
    writeFileSync(join(cniConfDir, '10-eventide-node.conflist'), cniConflist(network, join(DATA_DIR, 'cni', 'ipam')));
    const coreDnsImage = `localhost/coredns:${coreDnsVersion()}`;
    const nodeSide = (async () => {
      await startContainerd(
        {
          root: join(DATA_DIR, 'containerd'),
          state: join(RUN_DIR, 'containerd'),
          socket,
          runcRoot: join(RUN_DIR, 'runc'),
          cniConfDir,
          cniBinDir: '/usr/lib/cni',
          optDir: join(DATA_DIR, 'containerd-opt'),
        },
        PAUSE_IMAGE,
        { config: join(RUN_DIR, 'containerd.toml'), log: join(logsDir, 'containerd.log') },
        track,
      );
      lap('containerd up');
      await images.binaryImage(join(nodeBinDir, 'pause'), PAUSE_IMAGE, { entrypoint: ['/pause'], user: '65535:65535' });
      await images.binaryImage(join(nodeBinDir, 'coredns'), coreDnsImage, { entrypoint: ['/coredns'] });
      lap('pause and coredns images imported');
    })();
    const controlSide = (async () => {
      controlPlane = await startControlPlane({
        binDir: cpBinDir,
        controllerManager: true,
        scheduler: true,
        node: { ip: nodeIp },
        serviceCidr: SERVICE_CIDR,
        readyTimeoutMs,
      });
      lap('control plane up');
    })();
    const sides = await Promise.allSettled([nodeSide, controlSide]);
    for (const side of sides) if (side.status === 'rejected') throw side.reason;
    const cp = controlPlane!;
    // CoreDNS now: kube-controller-manager takes seconds to start its controllers, which then overlaps
    // with kubelet registering the node instead of coming after it.
    const applied = await cp.kubectl(['apply', '-f', '-'], coreDnsManifests(coreDnsImage, network.clusterDnsIp));
    if (applied.code !== 0) throw new Error(`applying CoreDNS failed: ${applied.stderr}`);

    // --- kubelet
    const agentDirs = { binDir: nodeBinDir, dataDir: DATA_DIR, runDir: RUN_DIR, logsDir };
    const kubelet = await startKubelet(cp, network, agentDirs, socket);
    track(kubelet);
    const readyJsonPath = '-o=jsonpath={.status.conditions[?(@.type=="Ready")].status}';
    await waitFor(`node ${NODE_NAME} Ready`, readyTimeoutMs, [kubelet], async () => {
      const result = await cp.kubectl(['get', 'node', NODE_NAME, readyJsonPath]);
      return result.stdout.trim() === 'True';
    });
    lap('node Ready');

    // --- kube-proxy
    const proxy = await startKubeProxy(cp, network, agentDirs);
    track(proxy);
    await waitFor('kube-proxy healthy', readyTimeoutMs, [proxy], async () => {
      const res = await fetch('http://127.0.0.1:10256/healthz', { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      return res?.ok === true;
    });
    lap('kube-proxy up');
    // A packet to a ClusterIP that kube-proxy does not translate — in the instant a Service gets its first
    // endpoint, between its REJECT rule going and its DNAT coming (two tables, two commits) — would leave by
    // the default route. In a cluster it dies at the gateway; here an intercepting HTTP proxy answers it with
    // a 404, which a dispatcher rightly dead-letters. Refuse it on the node instead (forwarded pod traffic
    // only: the host's own ClusterIP traffic never passes FORWARD). The teardown's iptables undo removes it.
    await run('iptables', ['-I', 'FORWARD', '1', '-d', SERVICE_CIDR, '-p', 'tcp', '-m', 'comment', '--comment', 'eventide-node: untranslated ClusterIP', '-j', 'REJECT', '--reject-with', 'tcp-reset']);

    // --- CoreDNS Ready, and the default ServiceAccount pods are admitted with
    const rollout = await cp.kubectl(['-n', 'kube-system', 'rollout', 'status', 'deploy/coredns', `--timeout=${Math.round(readyTimeoutMs / 1000)}s`]);
    if (rollout.code !== 0) {
      const pods = await cp.kubectl(['-n', 'kube-system', 'describe', 'pods', '-l', 'k8s-app=kube-dns']);
      throw new Error(`CoreDNS not Ready: ${rollout.stderr}\n${pods.stdout.split('\n').slice(-25).join('\n')}`);
    }
    await waitFor('ServiceAccount default/default', readyTimeoutMs, [], async () => (await cp.kubectl(['get', 'serviceaccount', 'default'])).code === 0);
    lap('CoreDNS Ready');

    return {
      kubeconfigPath: cp.kubeconfigPath,
      nodeName: NODE_NAME,
      nodeIp,
      network,
      controlPlane: cp,
      dataDir: DATA_DIR,
      runDir: RUN_DIR,
      logsDir,
      timings,
      kubectl: cp.kubectl,
      importImage: images.importImage,
      makeImage: images.makeImage,
      stop,
    };
  } catch (error) {
    return failWith(error, ['containerd', 'kubelet', 'kube-proxy']);
  }
}

/** Polls `check` every 250 ms; fails at the deadline or as soon as one of `processes` has exited. */
async function waitFor(what: string, timeoutMs: number, processes: ProcessRef[], check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    const exited = processes.find((p) => !refRunning(p));
    if (exited) throw new Error(`${exited.name} exited while waiting for ${what}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await sleep(250);
  }
}
