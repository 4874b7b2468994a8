/**
 * containerd for a real node (Debian's 1.6, started by hand: no systemd), on its own socket and dirs,
 * and `ctr` against it. Images live in the `k8s.io` namespace, the one the CRI plugin serves kubelet.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { type ContainerdPaths, containerdConfig } from './nodeConfig.js';
import { type ProcessRef, refRunning, spawnLogged } from './processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `ctr -a <socket> <args>`; rejects with its stderr on failure. */
export function ctr(socket: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('ctr', ['-a', socket, ...args], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`ctr ${args.join(' ')} failed: ${stderr.trim() || error.message}`, { cause: error }));
      else resolve(stdout);
    }),
  );
}

/** Writes the config, starts containerd and waits until it answers on its socket. */
export async function startContainerd(paths: ContainerdPaths, sandboxImage: string, files: { config: string; log: string }, onStarted: (ref: ProcessRef) => void): Promise<ProcessRef> {
  writeFileSync(files.config, containerdConfig(paths, sandboxImage));
  const { ref } = spawnLogged('containerd', 'containerd', ['--config', files.config], files.log);
  onStarted(ref);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (
      await ctr(paths.socket, ['version']).then(
        () => true,
        () => false,
      )
    )
      return ref;
    if (!refRunning(ref) || Date.now() > deadline) throw new Error(`containerd did not come up on ${paths.socket} (log: ${files.log})`);
    await sleep(100);
  }
}

/** Imports an OCI/Docker image archive into the k8s.io namespace (unpacked for the overlayfs snapshotter). */
export async function importArchive(socket: string, archivePath: string): Promise<void> {
  await ctr(socket, ['-n', 'k8s.io', 'images', 'import', archivePath]);
}
