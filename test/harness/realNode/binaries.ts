/**
 * What a real node runs besides the control plane: containerd, runc, the CNI plugins and iptables
 * from Debian's packages, and kubelet, kube-proxy, CoreDNS and pause built by test/realnode/build.sh into
 * .cache/k8s/<version>/node-bin (beside the control plane's bin/, same Kubernetes version).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlPlaneBinDir } from '../controlPlane.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BUILD_SCRIPT = join(REPO_ROOT, 'test', 'realnode', 'build.sh');
export const NODE_BINARIES = ['kubelet', 'kube-proxy', 'coredns', 'pause'] as const;

/** Directory test/realnode/build.sh writes to. */
export function realNodeBinDir(): string {
  return join(dirname(controlPlaneBinDir()), 'node-bin');
}

/** The CoreDNS version test/realnode/coredns/go.mod pins (its image is tagged with it). */
export function coreDnsVersion(): string {
  const goMod = readFileSync(join(REPO_ROOT, 'test', 'realnode', 'coredns', 'go.mod'), 'utf8');
  const version = /^\s*github\.com\/coredns\/coredns\s+v(\S+)/m.exec(goMod)?.[1];
  if (!version) throw new Error('test/realnode/coredns/go.mod does not pin github.com/coredns/coredns');
  return version;
}

/**
 * Installs the packages and builds the binaries when missing (test/realnode/build.sh: instant when
 * done, many minutes cold; its output goes to stderr). With build false, a missing binary is an error
 * saying how to build it. Returns the bin directory.
 */
export async function ensureRealNodeBinaries(opts: { build?: boolean } = {}): Promise<string> {
  const binDir = realNodeBinDir();
  if (opts.build === false) {
    const missing = NODE_BINARIES.filter((b) => !existsSync(join(binDir, b)));
    if (missing.length > 0) {
      throw new Error(`real-node binaries missing in ${binDir} (${missing.join(', ')}); build them with test/realnode/build.sh`);
    }
    return binDir;
  }
  await new Promise<void>((resolveBuild, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolveBuild();
      else reject(new Error(`test/realnode/build.sh failed (${signal ?? `exit ${code}`}); see its output above`));
    });
  });
  return binDir;
}
