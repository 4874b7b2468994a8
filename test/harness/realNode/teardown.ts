/**
 * Tears a real node down from its record (hostRecord.ts) and gives the host back as it was: the same
 * code runs in stop(), in the watchdog after the owner died without stop(), and at the next start after
 * both were killed. Every step works from the record and what it finds, so running it twice, or after
 * a teardown that stopped halfway, is harmless.
 *
 *   node --import tsx test/harness/realNode/teardown.ts <record.json>
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { nodeCgroups, pidsInCgroups, removeCgroups } from './cgroups.js';
import { currentMountPoints, HOST_PATHS, isUnder, newMountsUnder, removeCreated, unmount } from './hostPaths.js';
import { type HostRecord, linkNames, readRecord } from './hostRecord.js';
import { undoIptablesChanges } from './iptables.js';
import { killPids, pidsWithCommandLine, refRunning, stopProcess } from './processes.js';
import { readSysctls, sysctlChanges, writeSysctl } from './sysctls.js';

/** Links a node creates: the CNI bridge and the host ends of pod veth pairs. */
const NODE_LINK = /^(cni0|veth[0-9a-f]+)$/;

function deleteLink(name: string): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('ip', ['link', 'delete', name], (error, _out, stderr) => {
      // Gone already: a veth goes with its pod's network namespace.
      if (error && !/Cannot find device/.test(stderr)) reject(new Error(`ip link delete ${name}: ${stderr.trim()}`));
      else resolve();
    }),
  );
}

/**
 * Stops the node's processes and restores the host. Returns what could not be restored (empty when
 * all went back); `log` gets a line per thing it did. Unless `keepClaim`, the run dir (the machine's
 * claim, holding the record) goes last when all went back; with it, the caller calls releaseClaim.
 */
export async function teardownNode(record: HostRecord, log: (line: string) => void, opts: { keepClaim?: boolean } = {}): Promise<string[]> {
  const problems: string[] = [];
  const step = async (what: string, action: () => Promise<void> | void): Promise<void> => {
    try {
      await action();
    } catch (error) {
      problems.push(`${what}: ${(error as Error).message}`);
    }
  };
  const byName = (name: string) => record.processes.filter((p) => p.name === name);
  const podCgroups = () => nodeCgroups().filter((c) => !record.before.cgroups.includes(c));
  const killPodProcesses = async (): Promise<void> => {
    for (let round = 0; round < 3; round++) {
      const pids = pidsInCgroups(podCgroups());
      if (pids.length === 0) return;
      log(`killing ${pids.length} container process(es)`);
      await killPids(pids);
    }
  };

  // 1. Processes. kubelet first, so that nothing restarts the containers killed next.
  await step('stop kubelet/kube-proxy', async () => {
    await Promise.all([...byName('kubelet'), ...byName('kube-proxy')].map((p) => stopProcess(p)));
  });
  await step('kill container processes', killPodProcesses);
  await step('stop containerd', async () => {
    for (const p of byName('containerd')) await stopProcess(p);
  });
  // Shims outlive containerd by design (live restore); ours name our socket on their command line.
  await step('kill containerd shims', async () => {
    const shims = pidsWithCommandLine('containerd-shim', record.containerdSocket);
    if (shims.length > 0) log(`killing ${shims.length} containerd shim(s)`);
    await killPids(shims);
  });
  await step('kill container processes', killPodProcesses);
  await step('stop other processes', async () => {
    for (const p of [...record.processes].reverse()) if (refRunning(p)) await stopProcess(p);
  });

  // 2. Mounts: pod volumes and container root filesystems under our dirs, pod network namespaces.
  await step('unmount', async () => {
    const roots = [record.dataDir, record.runDir, ...HOST_PATHS];
    const mounts = newMountsUnder(roots, record.before.mountPoints);
    for (const m of mounts) await unmount(m);
    if (mounts.length > 0) log(`unmounted ${mounts.length} mount(s)`);
  });

  // 3. Network: links, then rules.
  await step('delete links', async () => {
    const created = (await linkNames()).filter((l) => NODE_LINK.test(l) && !record.before.links.includes(l));
    for (const link of created) await deleteLink(link);
    if (created.length > 0) log(`deleted link(s) ${created.join(', ')}`);
  });
  for (const [command, before] of Object.entries(record.before.iptables)) {
    await step(`restore ${command} rules`, async () => {
      const { script, tablesDeleted } = await undoIptablesChanges(command, before);
      const removed = script.split('\n').filter((l) => /^-[DX] /.test(l)).length;
      if (removed > 0) log(`${command}: removed ${removed} rule(s)/chain(s)`);
      if (tablesDeleted.length > 0) log(`${command}: deleted the empty table(s) ${tablesDeleted.join(', ')}`);
    });
  }

  // 4. Pod cgroups (empty now).
  await step('remove pod cgroups', () => {
    const stuck = removeCgroups(podCgroups());
    if (stuck.length > 0) throw new Error(`cgroups still in use: ${stuck.slice(0, 5).join(', ')}`);
  });

  // 5. Sysctls.
  // Some writes change other keys (turning ip_forward off sets conf/all/accept_redirects back on), so
  // read again after each round until nothing differs.
  await step('restore sysctls', () => {
    for (let round = 0; round < 3; round++) {
      const changes = sysctlChanges(record.before.sysctls, readSysctls());
      if (changes.length === 0) return;
      for (const change of changes) {
        try {
          writeSysctl(change.key, change.before);
          log(`sysctl ${change.key}: ${change.now} -> ${change.before}`);
        } catch {
          // Reported below if it still differs after the last round.
        }
      }
    }
    const left = sysctlChanges(record.before.sysctls, readSysctls());
    for (const change of left) problems.push(`sysctl ${change.key} is ${change.now}, was ${change.before}`);
  });

  // 6. Files: what was created in the host paths, then our own dirs.
  for (const path of HOST_PATHS) {
    await step(`clean ${path}`, () => {
      const removed = removeCreated(path, record.before.hostPaths[path] ?? null);
      if (removed.length > 0) log(`removed ${removed.length} path(s) under ${path}`);
    });
  }
  const removeDir = (dir: string) =>
    step(`remove ${dir}`, () => {
      const mounted = currentMountPoints().find((m) => isUnder(m, dir));
      if (mounted) throw new Error(`${mounted} is still mounted`);
      rmSync(dir, { recursive: true, force: true });
    });
  for (const dir of [record.dataDir, ...record.scratchDirs]) await removeDir(dir);
  if (!opts.keepClaim && problems.length === 0) problems.push(...releaseClaim(record));
  return problems;
}

/**
 * Removes the run dir: the record goes, and another node may start on the machine. Only after a
 * teardown that restored everything; otherwise the record stays so that the next start tries again.
 */
export function releaseClaim(record: HostRecord): string[] {
  const mounted = currentMountPoints().find((m) => isUnder(m, record.runDir));
  if (mounted) return [`remove ${record.runDir}: ${mounted} is still mounted`];
  rmSync(record.runDir, { recursive: true, force: true });
  return [];
}

// CLI: the watchdog's teardown after the owner died.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const recordPath = process.argv[2];
  const record = recordPath ? readRecord(recordPath) : undefined;
  if (!record) {
    console.log(`no real-node record at ${recordPath ?? '(none given)'}: nothing to tear down`);
  } else {
    const started = Date.now();
    const problems = await teardownNode(record, (line) => console.log(`[realnode teardown] ${line}`));
    for (const p of problems) console.log(`[realnode teardown] NOT RESTORED: ${p}`);
    console.log(`[realnode teardown] done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    process.exitCode = problems.length > 0 ? 1 : 0;
  }
}
