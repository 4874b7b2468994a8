/**
 * Files and mounts a real node leaves outside the directories it is given: kubelet hard-codes
 * /var/lib/kubelet (device-plugin socket) and /var/log/containers (symlinks into its pod log dir);
 * containerd 1.6 puts shim sockets and fifos under /run/containerd whatever its state dir; libcni caches
 * results in /var/lib/cni; each pod's network namespace is a bind mount in /run/netns. Each such path is
 * listed before the node starts; at teardown what was mounted under it is unmounted and what was
 * created in it is removed, and nothing else.
 */
import { execFile } from 'node:child_process';
import { lstatSync, readFileSync, rmSync } from 'node:fs';
import { walkTree } from './walkTree.js';

/** Paths outside the node's own directories that kubelet, containerd or CNI write to. */
export const HOST_PATHS = ['/var/lib/kubelet', '/var/log/containers', '/var/log/pods', '/var/lib/cni', '/run/containerd', '/run/netns'] as const;

/** Every path under `root` (itself excluded), not descending into mount points; null when `root` is absent. */
export function listTree(root: string, mountPoints: ReadonlySet<string> = new Set(currentMountPoints())): string[] | null {
  try {
    lstatSync(root);
  } catch {
    return null;
  }
  const found: string[] = [];
  walkTree(root, (path, entry) => {
    found.push(path);
    return entry.isDirectory() && !mountPoints.has(path);
  });
  return found;
}

/** Mount points of this mount namespace, from /proc/self/mountinfo (octal escapes decoded). */
export function currentMountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
}

export function isUnder(path: string, root: string): boolean {
  return path === root || path.startsWith(`${root}/`);
}

/** Mount points under any of `roots` that `before` did not have, deepest first (the order to unmount them). */
export function newMountsUnder(roots: readonly string[], before: readonly string[], now = currentMountPoints()): string[] {
  const old = new Set(before);
  return [...new Set(now)].filter((m) => !old.has(m) && roots.some((r) => isUnder(m, r))).sort((a, b) => b.length - a.length);
}

/** Unmounts `path`; lazily when it is busy (a process still holding it open dies with the node). */
export async function unmount(path: string): Promise<void> {
  const umount = (args: string[]) => new Promise<string | undefined>((resolve) => execFile('umount', args, (error, _out, stderr) => resolve(error ? stderr || error.message : undefined)));
  const failed = await umount([path]);
  if (failed === undefined) return;
  const lazyFailed = await umount(['-l', path]);
  if (lazyFailed !== undefined) throw new Error(`umount ${path}: ${lazyFailed.trim()}`);
}

/**
 * Removes from `root` what was created since `before` (its listing; null: `root` itself was absent and
 * goes entirely). Refuses to remove across a mount point, which could delete another filesystem's files.
 * Returns the paths it removed (top-most ones).
 */
export function removeCreated(root: string, before: readonly string[] | null): string[] {
  const mounts = currentMountPoints();
  const guard = (path: string): void => {
    const inside = mounts.find((m) => isUnder(m, path));
    if (inside) throw new Error(`not removing ${path}: ${inside} is still mounted`);
  };
  if (before === null) {
    if (listTree(root) === null) return [];
    guard(root);
    rmSync(root, { recursive: true, force: true });
    return [root];
  }
  const old = new Set(before);
  const removed: string[] = [];
  for (const path of listTree(root) ?? []) {
    if (old.has(path) || removed.some((r) => isUnder(path, r))) continue;
    guard(path);
    rmSync(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}
