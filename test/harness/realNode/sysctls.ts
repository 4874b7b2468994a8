/**
 * Kernel settings (sysctls) a real node changes: kubelet sets vm.overcommit_memory, vm.panic_on_oom,
 * kernel.panic, kernel.panic_on_oops and kernel.keys.*; the CNI bridge turns on net.ipv4.ip_forward;
 * kube-proxy may turn on route_localnet. Rather than trust that list, every writable sysctl is read
 * before the node starts and whatever differs at teardown is written back, so a setting the list does
 * not name is restored too.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { walkTree } from './walkTree.js';

/**
 * Path under /proc/sys (`net/ipv4/ip_forward`: slashes, not sysctl(8)'s dots, as interface names may
 * hold dots) → value as /proc/sys prints it, without the final newline.
 */
export type Sysctls = Record<string, string>;

/** Writable sysctls the kernel changes by itself: never restored, never compared. */
const VOLATILE = [/^kernel\/ns_last_pid$/, /^kernel\/random\//, /^kernel\/perf_event_max_sample_rate$/, /^vm\/stat_refresh$/];

export function isVolatileSysctl(key: string): boolean {
  return VOLATILE.some((pattern) => pattern.test(key));
}

/** Every sysctl root can read and write (read-only ones cannot have been changed by us), volatile ones left out. */
export function readSysctls(root = '/proc/sys'): Sysctls {
  const values: Sysctls = {};
  walkTree(root, (path, entry) => {
    if (entry.isDirectory()) return true;
    const key = path.slice(root.length + 1);
    if (isVolatileSysctl(key)) return false;
    try {
      if ((statSync(path).mode & 0o600) === 0o600) values[key] = readFileSync(path, 'utf8').replace(/\n$/, '');
    } catch {
      // Some entries refuse reads (EIO, EPERM) or vanish with their interface.
    }
    return false;
  });
  return values;
}

export interface SysctlChange {
  key: string;
  before: string;
  now: string;
}

/**
 * The sysctls that differ from `before`. A key `before` had and `now` lacks belonged to something that
 * went away (an interface): there is nothing to restore. A key only `now` has belongs to something new
 * (cni0, a veth) and goes away with it.
 */
export function sysctlChanges(before: Sysctls, now: Sysctls): SysctlChange[] {
  const changes: SysctlChange[] = [];
  for (const [key, value] of Object.entries(before)) {
    const current = now[key];
    if (current !== undefined && current !== value && !isVolatileSysctl(key)) changes.push({ key, before: value, now: current });
  }
  return changes;
}

/** Writes one sysctl. */
export function writeSysctl(key: string, value: string, root = '/proc/sys'): void {
  writeFileSync(join(root, key), value);
}
