/**
 * What a real node must give back: the host as it was before the node started (sysctls, iptables
 * rulesets, network links, mounts, listings of the host paths it writes to, pod cgroups) and the
 * processes it started. Written to a JSON file before anything changes and updated as processes start,
 * so a teardown in another process (the watchdog, after a crash; the next start, after a SIGKILL of
 * both) restores the same as stop() does.
 */
import { execFile } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { nodeCgroups } from './cgroups.js';
import { currentMountPoints, HOST_PATHS, listTree } from './hostPaths.js';
import { iptablesCommands, saveIptables } from './iptables.js';
import type { ProcessRef } from './processes.js';
import { readSysctls, type Sysctls } from './sysctls.js';

export interface HostRecord {
  /** The process that owns the node (its teardown runs when this one is gone). */
  owner: ProcessRef;
  /** The watchdog that tears the node down if the owner dies without stop(). */
  watchdog?: ProcessRef;
  /** The node's own directories, removed entirely: data (containerd root, kubelet root, pod logs) and run (sockets, state). */
  dataDir: string;
  runDir: string;
  containerdSocket: string;
  /** Other dirs of ours to remove (the components' logs, unless kept). */
  scratchDirs: string[];
  /** Processes started for the node, in start order. */
  processes: ProcessRef[];
  before: HostSnapshot;
}

export interface HostSnapshot {
  sysctls: Sysctls;
  /** iptables command (`iptables-nft`, ...) → its `-save` output */
  iptables: Record<string, string>;
  /** network interface names */
  links: string[];
  mountPoints: string[];
  /** HOST_PATHS entry → its listing (null: absent) */
  hostPaths: Record<string, string[] | null>;
  /** top-level pod cgroups (none, unless another kubelet runs here) */
  cgroups: string[];
}

/** Names of the network interfaces (`ip -j link`). */
export function linkNames(): Promise<string[]> {
  return new Promise((resolve, reject) =>
    execFile('ip', ['-j', 'link', 'show'], { encoding: 'utf8' }, (error, stdout) => {
      if (error) return reject(new Error(`ip -j link show failed: ${error.message}`, { cause: error }));
      resolve((JSON.parse(stdout) as { ifname: string }[]).map((l) => l.ifname));
    }),
  );
}

/** Reads everything a real node may change on the host. */
export async function captureHost(): Promise<HostSnapshot> {
  const commands = iptablesCommands();
  const saved = await Promise.all(commands.map((c) => saveIptables(c)));
  const mountPoints = currentMountPoints();
  const mountSet = new Set(mountPoints);
  return {
    sysctls: readSysctls(),
    iptables: Object.fromEntries(commands.map((c, i) => [c, saved[i] ?? ''])),
    links: await linkNames(),
    mountPoints,
    hostPaths: Object.fromEntries(HOST_PATHS.map((p) => [p, listTree(p, mountSet)])),
    cgroups: nodeCgroups(),
  };
}

/** Writes the record atomically (a reader never sees half a file). */
export function writeRecord(path: string, record: HostRecord): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(record));
  renameSync(`${path}.tmp`, path);
}

/** The record at `path`, or undefined when there is none. */
export function readRecord(path: string): HostRecord | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as HostRecord;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
