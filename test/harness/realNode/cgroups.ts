/**
 * The cgroups of a real node's pods: kubelet (cgroupfs driver) makes `kubepods/...` at the top of every
 * hierarchy and runc puts each container below it. At teardown every process still in them is killed —
 * container processes are children of shims, not ours, and a killed shim leaves them running — and the
 * cgroups are removed, deepest first, as a cgroup can only go once it is empty.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { walkTree } from './walkTree.js';

const CGROUP_ROOT = '/sys/fs/cgroup';
/** Top-level cgroups kubelet and containerd create (containerd's own `k8s.io` for containers made without kubelet). */
const NODE_CGROUP_NAMES = /^(kubepods(\.slice)?|k8s\.io)$/;

/** Roots of the mounted hierarchies: each v1 controller dir, v2's unified one, or the v2 root itself. */
export function cgroupHierarchies(): string[] {
  if (existsSync(join(CGROUP_ROOT, 'cgroup.procs'))) return [CGROUP_ROOT];
  let entries: string[];
  try {
    entries = readdirSync(CGROUP_ROOT);
  } catch {
    return [];
  }
  return entries.map((e) => join(CGROUP_ROOT, e)).filter((dir) => existsSync(join(dir, 'cgroup.procs')));
}

/** The node's top-level cgroups that exist now, in every hierarchy (compare with a list taken before it started). */
export function nodeCgroups(): string[] {
  const found: string[] = [];
  for (const hierarchy of cgroupHierarchies()) {
    try {
      for (const entry of readdirSync(hierarchy, { withFileTypes: true })) {
        if (entry.isDirectory() && NODE_CGROUP_NAMES.test(entry.name)) found.push(join(hierarchy, entry.name));
      }
    } catch {
      // Hierarchy unmounted meanwhile.
    }
  }
  return found;
}

/** Every cgroup dir under (and including) `dir`, deepest first. */
function cgroupTree(dir: string): string[] {
  const dirs: string[] = [];
  walkTree(
    dir,
    (_path, entry) => entry.isDirectory(),
    (d) => dirs.push(d),
  );
  return dirs;
}

/** Pids of the processes in `dirs` or below them. */
export function pidsInCgroups(dirs: readonly string[]): number[] {
  const pids = new Set<number>();
  for (const dir of dirs) {
    for (const d of cgroupTree(dir)) {
      try {
        for (const line of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.add(Number(line));
      } catch {
        // Removed meanwhile.
      }
    }
  }
  return [...pids];
}

/** Removes `dirs` and every cgroup below them (they must be empty of processes); returns those that would not go. */
export function removeCgroups(dirs: readonly string[]): string[] {
  const stuck: string[] = [];
  for (const dir of dirs) {
    for (const d of cgroupTree(dir)) {
      try {
        rmdirSync(d);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') stuck.push(d);
      }
    }
  }
  return stuck;
}
