/**
 * A real Kubernetes control plane for tests, without Docker (the envtest pattern): etcd +
 * kube-apiserver (+ optionally kube-controller-manager and kube-scheduler) built from source by
 * test/controlplane/build.sh into .cache/k8s/<version>/bin, started on loopback with throwaway
 * certificates. RBAC is enforced; the admin kubeconfig is `system:masters`.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../common/loopback.js';
import { delayedReadyPodStages } from './kwokPodStages.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILD_SCRIPT = join(REPO_ROOT, 'test', 'controlplane', 'build.sh');
const REQUIRED_BINARIES = ['etcd', 'kube-apiserver'] as const;
const DEFAULT_SERVICE_CIDR = '10.0.0.0/24';

export interface ControlPlaneOptions {
  /** Start kube-controller-manager (Deployment → ReplicaSet → Pod, garbage collector, namespace deletion, SA tokens). */
  controllerManager?: boolean;
  /** Start kube-scheduler (binds pods; only useful with nodes, e.g. fake ones). */
  scheduler?: boolean;
  /**
   * Run kwok, which plays the kubelet of fake nodes (`addFakeNodes`): pods bound to them turn Running
   * and Ready (no container runs), so Deployments become available. Implies the scheduler; use it
   * with controllerManager (Deployment → ReplicaSet → Pod).
   */
  kwok?: boolean;
  /**
   * With kwok: pods on fake nodes turn Running at once but Ready only this many ms later (default:
   * Ready at once), as a real image start takes time; tests of scale-up latency need it. Done with
   * kwok's own Stages (see kwokPodStages.ts); deletion and Job completion work as with the defaults.
   */
  podReadyDelayMs?: number;
  /**
   * Run test/controlplane/build.sh when the binaries are missing or stale (default true; a warm run is
   * instant, a cold one takes many minutes — do it in a vitest globalSetup). When false, a missing
   * binary is an error that says how to build it.
   */
  build?: boolean;
  /** Use binaries from this directory instead of the cache. */
  binDir?: string;
  /** Extra kube-apiserver flags (`--name=value`). */
  apiServerArgs?: string[];
  /** Extra kube-controller-manager flags. */
  controllerManagerArgs?: string[];
  /** How long to wait for the apiserver to become ready (default 90s). */
  readyTimeoutMs?: number;
  /** Keep the temp dir (certs, kubeconfigs, component logs) after stop, for debugging. Also EVENTIDE_CONTROLPLANE_KEEP=1. */
  keepDir?: boolean;
  /**
   * Serve a real node (realNode.ts) rather than loopback clients only: the apiserver binds and advertises
   * `node.ip`, so pods reach it through the `kubernetes` Service; it authorizes Node,RBAC with
   * NodeRestriction (the kubelet acts as `system:node:<name>`), admits pods with their ServiceAccount
   * tokens, and reaches kubelets with a client certificate of its own (logs, exec).
   */
  node?: { ip: string };
  /** Service ClusterIP range (default 10.0.0.0/24); its first address is the `kubernetes` Service. */
  serviceCidr?: string;
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ControlPlane {
  /** Admin (`system:masters`) kubeconfig, self-contained (certificates embedded). */
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:<port> (https://<node.ip>:<port> with `node`) */
  readonly server: string;
  readonly binDir: string;
  /** Temp dir with certificates, kubeconfigs and `<component>.log` files. */
  readonly dir: string;
  /** CA that signed the serving certificate (PEM file). */
  readonly caCertPath: string;
  /** The kubectl binary used by `kubectl()`. */
  readonly kubectlPath: string;
  /**
   * Runs kubectl as admin (KUBECONFIG is set; pass `--kubeconfig=<file>` to act as someone else).
   * Never throws on a non-zero exit: check `code`.
   */
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  /**
   * Kubeconfig for ServiceAccount `namespace/name` (the account is created if absent; the namespace
   * must exist), with a token from the TokenRequest API (`kubectl create token`). Returns its path.
   */
  makeServiceAccountKubeconfig(namespace: string, name: string): Promise<string>;
  /**
   * Kubeconfig with a client certificate for `cn` (in group `org`) from the cluster CA, for components
   * that authenticate as themselves (kubelet: `system:node:<name>` in `system:nodes`; kube-proxy:
   * `system:kube-proxy`). Returns its path.
   */
  issueKubeconfig(name: string, identity: { cn: string; org?: string }): Promise<string>;
  /** Registers `count` fake nodes for kwok (needs `kwok: true`) and waits until they are Ready; returns their names. */
  addFakeNodes(count: number): Promise<string[]>;
  /** Kills every process and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// binaries

/** Directory the build script writes to (.cache/k8s/<version>/bin). */
export function controlPlaneBinDir(): string {
  const goMod = readFileSync(join(REPO_ROOT, 'test', 'controlplane', 'go.mod'), 'utf8');
  const version = /^\s*k8s\.io\/kubernetes\s+(v\S+)/m.exec(goMod)?.[1];
  if (!version) throw new Error('test/controlplane/go.mod does not pin k8s.io/kubernetes');
  const root = process.env.EVENTIDE_K8S_CACHE ?? join(REPO_ROOT, '.cache', 'k8s');
  return join(root, version, 'bin');
}

/**
 * Makes sure the control-plane binaries are built (runs test/controlplane/build.sh, which exits at
 * once when they are). Build output goes to stderr. Returns the bin directory.
 */
export async function ensureControlPlaneBinaries(opts: { build?: boolean } = {}): Promise<string> {
  const binDir = controlPlaneBinDir();
  if (opts.build === false) {
    const missing = REQUIRED_BINARIES.filter((b) => !existsSync(join(binDir, b)));
    if (missing.length > 0) {
      throw new Error(
        `Kubernetes test binaries missing in ${binDir} (${missing.join(', ')}). Build them once with ` +
          `\`test/controlplane/build.sh\` (needs Go; a cold build takes ~15-30 min on 2 cores, later runs are instant).`,
      );
    }
    return binDir;
  }
  await new Promise<void>((resolvePromise, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`test/controlplane/build.sh failed (${signal ?? `exit ${code}`}); see its output above`));
    });
  });
  return binDir;
}

// ---------------------------------------------------------------------------------------------
// process bookkeeping: children die with us

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  });
  // SIGTERM/SIGINT skip 'exit' handlers; when nobody else handles them, clean up and re-raise.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    if (process.listenerCount(signal) > 0) continue;
    process.once(signal, () => {
      for (const child of liveChildren) child.kill('SIGKILL');
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/**
 * A watchdog shell that SIGKILLs the control plane (and removes its dir) if this Node process is
 * SIGKILLed, which no in-process hook can catch. It reads the pids to kill from `pidFile`.
 */
function startWatchdog(dir: string, pidFile: string, keepDir: boolean): ChildProcess {
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; for p in $(cat '${pidFile}' 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; ${keepDir ? '' : `rm -rf '${dir}'`}`;
  const child = spawn('bash', ['-c', script], { stdio: 'ignore', detached: true });
  child.unref();
  return child;
}

// ---------------------------------------------------------------------------------------------
// helpers

async function run(file: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<KubectlResult> {
  return new Promise((resolveRun, reject) => {
    const child = execFile(file, args, { env: options.env ?? process.env, cwd: options.cwd, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        // spawn failure (ENOENT...), not a non-zero exit
        if (typeof error.code === 'string') return reject(error);
      }
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolveRun({ stdout, stderr, code });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const result = await run('openssl', args, { cwd: dir });
  if (result.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`);
}

async function newKey(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  await openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
  return path;
}

interface CertSpec {
  name: string;
  cn: string;
  org?: string;
  usage: 'server' | 'client';
  sans?: string[];
}

/** Creates a self-signed CA `<name>.crt`/`<name>.key`. */
async function newCA(dir: string, name: string, cn: string): Promise<{ cert: string; key: string }> {
  const key = await newKey(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  await openssl(dir, [
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-subj',
    `/CN=${cn}`,
    '-days',
    '7',
    '-sha256',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
    '-out',
    cert,
  ]);
  return { cert, key };
}

/** Issues `<name>.crt`/`<name>.key` signed by the CA (default ca.crt/ca.key). */
async function issueCert(dir: string, spec: CertSpec, ca = 'ca'): Promise<{ cert: string; key: string }> {
  const key = await newKey(dir, `${spec.name}.key`);
  const cfg = join(dir, `${spec.name}.cnf`);
  const csr = join(dir, `${spec.name}.csr`);
  const cert = join(dir, `${spec.name}.crt`);
  writeFileSync(
    cfg,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      ...(spec.org ? [`O = ${spec.org}`] : []),
      `CN = ${spec.cn}`,
      '[ext]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage = ${spec.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
      ...(spec.sans ? [`subjectAltName = ${spec.sans.join(',')}`] : []),
      '',
    ].join('\n'),
  );
  await openssl(dir, ['req', '-new', '-key', key, '-out', csr, '-config', cfg]);
  await openssl(dir, ['x509', '-req', '-in', csr, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '7', '-sha256', '-extfile', cfg, '-extensions', 'ext', '-out', cert]);
  return { cert, key };
}

function b64(path: string): string {
  return readFileSync(path).toString('base64');
}

function kubeconfig(server: string, caPath: string, user: { cert?: string; key?: string; token?: string }): string {
  const userFields = user.token ? `    token: ${user.token}` : `    client-certificate-data: ${b64(user.cert!)}\n    client-key-data: ${b64(user.key!)}`;
  return `apiVersion: v1
kind: Config
clusters:
- name: eventide-test
  cluster:
    server: ${server}
    certificate-authority-data: ${b64(caPath)}
users:
- name: user
  user:
${userFields}
contexts:
- name: eventide-test
  context:
    cluster: eventide-test
    user: user
    namespace: default
current-context: eventide-test
`;
}

function tail(path: string, lines = 40): string {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => !line.includes('] FLAG: '))
      .slice(-lines)
      .join('\n');
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GET an https path with the admin client certificate; resolves with the status (0 when unreachable). */
function httpsStatus(url: string, tls: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<{ status: number; body: string }> {
  return new Promise((resolveStatus) => {
    const req = request(url, { ...tls, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolveStatus({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolveStatus({ status: 0, body: '' }));
    req.end();
  });
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return res.ok;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------

const FAKE_NODE_ANNOTATION = 'kwok.x-k8s.io/node';

/** The first address of an IPv4 CIDR: the ClusterIP kube-apiserver gives the `kubernetes` Service. */
function firstServiceIp(cidr: string): string {
  const [address = '', bits = ''] = cidr.split('/');
  const octets = address.split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255)) || !/^\d+$/.test(bits)) {
    throw new Error(`serviceCidr ${cidr} is not an IPv4 CIDR`);
  }
  const value = (octets.reduce((n, o) => n * 256 + o, 0) + 1) >>> 0;
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join('.');
}

/** A Node for kwok to play: room for many pods, no taints. */
function fakeNode(name: string): Record<string, unknown> {
  const resources = { cpu: '32', memory: '256Gi', pods: '250' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, annotations: { [FAKE_NODE_ANNOTATION]: 'fake' }, labels: { 'kubernetes.io/hostname': name, type: 'kwok' } },
    status: { allocatable: resources, capacity: resources },
  };
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  if (opts.podReadyDelayMs !== undefined && !opts.kwok) throw new Error('podReadyDelayMs needs startControlPlane({ kwok: true })');
  const binDir = opts.binDir ?? (await ensureControlPlaneBinaries({ build: opts.build ?? true }));
  const scheduler = opts.scheduler || opts.kwok === true;
  const serviceCidr = opts.serviceCidr ?? DEFAULT_SERVICE_CIDR;
  const serviceIp = firstServiceIp(serviceCidr);
  const hostIp = opts.node?.ip ?? '127.0.0.1';
  for (const b of [...REQUIRED_BINARIES, ...(opts.controllerManager ? ['kube-controller-manager'] : []), ...(scheduler ? ['kube-scheduler'] : []), ...(opts.kwok ? ['kwok'] : [])]) {
    if (!existsSync(join(binDir, b))) throw new Error(`${join(binDir, b)} is missing; run test/controlplane/build.sh`);
  }
  const kubectlPath = existsSync(join(binDir, 'kubectl')) ? join(binDir, 'kubectl') : 'kubectl';
  const keepDir = opts.keepDir ?? process.env.EVENTIDE_CONTROLPLANE_KEEP === '1';
  installExitHook();

  const dir = mkdtempSync(join(tmpdir(), 'eventide-cp-'));
  liveDirs.add(dir);
  const pidFile = join(dir, 'pids');
  writeFileSync(pidFile, '');
  const watchdog = startWatchdog(dir, pidFile, keepDir);
  const children: { name: string; child: ChildProcess }[] = [];
  let stopped = false;

  const spawnComponent = (name: string, args: string[]): ChildProcess => {
    const logPath = join(dir, `${name}.log`);
    const fd = openSync(logPath, 'a');
    const child = spawn(join(binDir, name), args, { stdio: ['ignore', fd, fd], detached: false, cwd: dir });
    closeSync(fd);
    liveChildren.add(child);
    children.push({ name, child });
    if (child.pid) writeFileSync(pidFile, `${child.pid}\n`, { flag: 'a' });
    child.once('exit', () => liveChildren.delete(child));
    child.once('error', () => liveChildren.delete(child));
    return child;
  };

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Dependents first, etcd last.
    for (const { child } of [...children].reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      liveChildren.delete(child);
    }
    try {
      if (watchdog.pid) process.kill(watchdog.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    liveDirs.delete(dir);
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };

  const failWith = async (message: string, logs: string[]): Promise<never> => {
    const details = logs.map((n) => `--- ${n}.log (tail) ---\n${tail(join(dir, `${n}.log`))}`).join('\n');
    await stop();
    throw new Error(`${message}\n${details}`);
  };

  try {
    // --- certificates
    const caCertPath = (await newCA(dir, 'ca', 'eventide-test-ca')).cert;
    // Front proxy (aggregation layer / request-header auth), as kubeadm sets it up; without it
    // controller-manager and scheduler log errors about the missing requestheader CA.
    const frontProxyCa = await newCA(dir, 'front-proxy-ca', 'eventide-test-front-proxy-ca');
    const frontProxy = await issueCert(dir, { name: 'front-proxy-client', cn: 'front-proxy-client', usage: 'client' }, 'front-proxy-ca');
    const serving = await issueCert(dir, {
      name: 'apiserver',
      cn: 'kube-apiserver',
      usage: 'server',
      sans: [
        'DNS:localhost',
        'DNS:kubernetes',
        'DNS:kubernetes.default',
        'DNS:kubernetes.default.svc',
        'DNS:kubernetes.default.svc.cluster.local',
        'IP:127.0.0.1',
        `IP:${serviceIp}`,
        ...(opts.node ? [`IP:${opts.node.ip}`] : []),
      ],
    });
    const admin = await issueCert(dir, { name: 'admin', cn: 'eventide-admin', org: 'system:masters', usage: 'client' });
    const saKey = await newKey(dir, 'sa.key');
    // kube-apiserver reads verification keys as PUBLIC KEY / RSA / EC PEM, not PKCS#8 private keys.
    const saPub = join(dir, 'sa.pub');
    await openssl(dir, ['pkey', '-in', saKey, '-pubout', '-out', saPub]);

    // --- etcd
    const [etcdClientPort, etcdPeerPort, apiPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const etcd = spawnComponent('etcd', [
      `--name=eventide-test`,
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=eventide-test=http://127.0.0.1:${etcdPeerPort}`,
      '--unsafe-no-fsync',
      '--quota-backend-bytes=1073741824',
      '--log-level=warn',
    ]);
    const etcdDeadline = Date.now() + 30_000;
    while (!(await httpOk(`${etcdUrl}/health`))) {
      if (etcd.exitCode !== null || Date.now() > etcdDeadline) await failWith('etcd did not start', ['etcd']);
      await sleep(100);
    }

    // --- kube-apiserver
    const server = `https://${hostIp}:${apiPort}`;
    // A real node's pods need what loopback-only tests leave out: the `kubernetes` Service's endpoint
    // (the node IP), Node authorization for kubelets, ServiceAccount tokens in pods, and the
    // apiserver's own identity towards kubelets.
    const kubeletClient = opts.node ? await issueCert(dir, { name: 'apiserver-kubelet-client', cn: 'kube-apiserver-kubelet-client', org: 'system:masters', usage: 'client' }) : undefined;
    const accessArgs = kubeletClient
      ? [
          '--authorization-mode=Node,RBAC',
          '--enable-admission-plugins=NodeRestriction',
          `--kubelet-client-certificate=${kubeletClient.cert}`,
          `--kubelet-client-key=${kubeletClient.key}`,
          '--kubelet-preferred-address-types=InternalIP',
        ]
      : [
          // The `kubernetes` Service cannot have a loopback endpoint (the reconciler logs an error every
          // 10s); nothing in-cluster needs it here.
          '--endpoint-reconciler-type=none',
          '--authorization-mode=RBAC',
          '--disable-admission-plugins=ServiceAccount',
        ];
    const apiserver = spawnComponent('kube-apiserver', [
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${serving.cert}`,
      `--tls-private-key-file=${serving.key}`,
      `--client-ca-file=${caCertPath}`,
      `--secure-port=${apiPort}`,
      `--bind-address=${hostIp}`,
      `--advertise-address=${hostIp}`,
      `--service-cluster-ip-range=${serviceCidr}`,
      ...accessArgs,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      `--requestheader-client-ca-file=${frontProxyCa.cert}`,
      '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      `--proxy-client-cert-file=${frontProxy.cert}`,
      `--proxy-client-key-file=${frontProxy.key}`,
      '--allow-privileged=true',
      '--profiling=false',
      '--v=0',
      ...(opts.apiServerArgs ?? []),
    ]);
    const tls = { ca: readFileSync(caCertPath), cert: readFileSync(admin.cert), key: readFileSync(admin.key) };
    const readyDeadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
    for (;;) {
      const { status } = await httpsStatus(`${server}/readyz`, tls);
      if (status === 200) break;
      if (apiserver.exitCode !== null || apiserver.signalCode !== null) {
        await failWith(`kube-apiserver exited (${apiserver.exitCode ?? apiserver.signalCode})`, ['kube-apiserver', 'etcd']);
      }
      if (Date.now() > readyDeadline) await failWith(`kube-apiserver not ready at ${server}/readyz`, ['kube-apiserver', 'etcd']);
      await sleep(200);
    }

    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfig(server, caCertPath, admin), { mode: 0o600 });

    // --- kube-controller-manager / kube-scheduler: their own identities, bound by RBAC bootstrap policy
    if (opts.controllerManager) {
      const cm = await issueCert(dir, { name: 'controller-manager', cn: 'system:kube-controller-manager', usage: 'client' });
      const cmKubeconfig = join(dir, 'controller-manager.kubeconfig');
      writeFileSync(cmKubeconfig, kubeconfig(server, caCertPath, cm), { mode: 0o600 });
      spawnComponent('kube-controller-manager', [
        `--kubeconfig=${cmKubeconfig}`,
        `--authentication-kubeconfig=${cmKubeconfig}`,
        `--authorization-kubeconfig=${cmKubeconfig}`,
        // Each controller acts as its own kube-system ServiceAccount (as kubeadm does), so RBAC
        // bootstrap roles apply.
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${saKey}`,
        `--root-ca-file=${caCertPath}`,
        `--cluster-signing-cert-file=${caCertPath}`,
        `--cluster-signing-key-file=${join(dir, 'ca.key')}`,
        // Every default controller: deployment, replicaset, garbage collector (owner-reference
        // cascades), namespace, serviceaccount(-token), root-ca publisher, job, ...
        '--controllers=*',
        `--service-cluster-ip-range=${serviceCidr}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${await freePort()}`,
        '--v=0',
        ...(opts.controllerManagerArgs ?? []),
      ]);
    }
    if (scheduler) {
      const sc = await issueCert(dir, { name: 'scheduler', cn: 'system:kube-scheduler', usage: 'client' });
      const scKubeconfig = join(dir, 'scheduler.kubeconfig');
      writeFileSync(scKubeconfig, kubeconfig(server, caCertPath, sc), { mode: 0o600 });
      spawnComponent('kube-scheduler', [
        `--kubeconfig=${scKubeconfig}`,
        `--authentication-kubeconfig=${scKubeconfig}`,
        `--authorization-kubeconfig=${scKubeconfig}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${await freePort()}`,
        '--v=0',
      ]);
    }

    // Discovery cache in our dir, not ~/.kube/cache, where every test's apiserver port left a folder.
    const kubectlEnv = { ...process.env, KUBECONFIG: kubeconfigPath, KUBECACHEDIR: join(dir, 'kubectl-cache') };
    const kubectl = (args: string[], input?: string): Promise<KubectlResult> => run(kubectlPath, args, input === undefined ? { env: kubectlEnv } : { env: kubectlEnv, input });

    // --- kwok: fake kubelets for fake nodes (its default stages: nodes Ready, pods Running and Ready;
    // with podReadyDelayMs, our pod stages replace the default ones)
    if (opts.kwok) {
      const stageArgs: string[] = [];
      if (opts.podReadyDelayMs !== undefined) {
        const stagesPath = join(dir, 'kwok-pod-stages.yaml');
        writeFileSync(stagesPath, delayedReadyPodStages(opts.podReadyDelayMs));
        stageArgs.push(`--config=${stagesPath}`);
      }
      spawnComponent('kwok', [
        `--kubeconfig=${kubeconfigPath}`,
        `--manage-nodes-with-annotation-selector=${FAKE_NODE_ANNOTATION}=fake`,
        '--cidr=10.244.0.1/16',
        '--node-ip=127.0.0.1',
        // Without node Leases the controller-manager judges a fake node by its status, which kwok refreshes
        // too rarely: about once a minute the node turned Unknown and its pods NotReady for a moment.
        '--node-lease-duration-seconds=40',
        ...stageArgs,
      ]);
    }
    let fakeNodeCount = 0;
    const addFakeNodes = async (count: number): Promise<string[]> => {
      if (!opts.kwok) throw new Error('addFakeNodes needs startControlPlane({ kwok: true })');
      const names = Array.from({ length: count }, () => `kwok-node-${fakeNodeCount++}`);
      const applied = await kubectl(['apply', '-f', '-'], names.map((name) => JSON.stringify(fakeNode(name))).join('\n'));
      if (applied.code !== 0) throw new Error(`creating fake nodes failed: ${applied.stderr}`);
      const deadline = Date.now() + 60_000;
      for (;;) {
        const ready = await kubectl(['wait', '--for=condition=Ready', '--timeout=5s', ...names.map((n) => `node/${n}`)]);
        if (ready.code === 0) return names;
        if (Date.now() > deadline) throw new Error(`fake nodes not Ready within 60s (kwok log: ${join(dir, 'kwok.log')}): ${ready.stderr}`);
      }
    };

    const makeServiceAccountKubeconfig = async (namespace: string, name: string): Promise<string> => {
      const created = await kubectl(['create', 'serviceaccount', name, '-n', namespace]);
      if (created.code !== 0 && !/AlreadyExists|already exists/.test(created.stderr)) {
        throw new Error(`kubectl create serviceaccount ${namespace}/${name} failed: ${created.stderr}`);
      }
      const token = await kubectl(['create', 'token', name, '-n', namespace, '--duration=24h']);
      if (token.code !== 0) throw new Error(`kubectl create token ${namespace}/${name} failed: ${token.stderr}`);
      const path = join(dir, `sa-${namespace}-${name}.kubeconfig`);
      writeFileSync(path, kubeconfig(server, caCertPath, { token: token.stdout.trim() }).replace('namespace: default', `namespace: ${namespace}`), {
        mode: 0o600,
      });
      return path;
    };

    const issueKubeconfig = async (name: string, identity: { cn: string; org?: string }): Promise<string> => {
      const cert = await issueCert(dir, { name, cn: identity.cn, ...(identity.org ? { org: identity.org } : {}), usage: 'client' });
      const path = join(dir, `${name}.kubeconfig`);
      writeFileSync(path, kubeconfig(server, caCertPath, cert), { mode: 0o600 });
      return path;
    };

    return {
      kubeconfigPath,
      server,
      binDir,
      dir,
      caCertPath,
      kubectlPath,
      kubectl,
      makeServiceAccountKubeconfig,
      issueKubeconfig,
      addFakeNodes,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
