/**
 * The helm binary for chart tests: the one test/controlplane/build.sh builds next to kube-apiserver,
 * else one installed with `GOBIN=.cache/bin go install helm.sh/helm/v3/cmd/helm@v3.19.x`, else `helm`
 * on PATH.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { controlPlaneBinDir } from '../harness/controlPlane.js';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
export const CHART_DIR = join(REPO_ROOT, 'charts', 'eventide');

/** Path of a usable helm binary; throws saying how to get one. */
export function helmPath(): string {
  const candidates = [join(controlPlaneBinDir(), 'helm'), join(REPO_ROOT, '.cache', 'bin', 'helm')];
  const found = candidates.find((p) => existsSync(p));
  if (found) return found;
  try {
    execFileSync('helm', ['version', '--short'], { stdio: 'ignore' });
    return 'helm';
  } catch {
    throw new Error(`no helm binary: run test/controlplane/build.sh (builds ${candidates[0]}) or put helm on PATH`);
  }
}

export interface HelmResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs helm; never throws on a non-zero exit (check `code`). */
export function helm(args: string[], env: NodeJS.ProcessEnv = {}): Promise<HelmResult> {
  return new Promise((resolveRun, reject) => {
    execFile(helmPath(), args, { env: { ...process.env, ...env }, maxBuffer: 32 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error && typeof error.code === 'string') return reject(error);
      resolveRun({ stdout, stderr, code: error ? (typeof error.code === 'number' ? error.code : 1) : 0 });
    });
  });
}
