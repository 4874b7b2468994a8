/**
 * The machine's one real node: where it lives, who owns it, and who tears it down when the owner dies.
 * The run dir is the claim (made atomically; of two starts at once, one wins) and holds the host record.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './binaries.js';
import { readRecord } from './hostRecord.js';
import { type ProcessRef, processRef, refRunning } from './processes.js';
import { teardownNode } from './teardown.js';

/**
 * Fixed paths, as a machine runs one node (it owns cni0, ports 10250 and 10256, the pod cgroups). The
 * data dir is not under TMPDIR: the test run's last-resort cleanup of that dir is an rm -rf, which must
 * never meet a pod's mounts.
 */
export const DATA_DIR = '/var/tmp/eventide-node';
export const RUN_DIR = '/run/eventide-node';
export const RECORD = join(RUN_DIR, 'record.json');
/** The watchdog's teardown output (only written when an owner died without stop()). */
const CRASH_LOG = '/var/tmp/eventide-realnode-teardown.log';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Makes this process the owner of the machine's node by creating the run dir (atomic: of two starts at
 * once, one wins). While a live process owns the node, waits up to `waitMs` for its stop(); a node whose
 * owner died is left to its watchdog while that is at work, else torn down here from its record.
 */
export async function claimMachine(log: (line: string) => void, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  let waitingFor: number | undefined;
  let noRecordSince: number | undefined;
  for (;;) {
    try {
      mkdirSync(RUN_DIR, { mode: 0o700 });
      if (existsSync(DATA_DIR)) {
        rmdirSync(RUN_DIR);
        throw new Error(`${DATA_DIR} exists without a record of the node that made it; remove it by hand`);
      }
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const record = readRecord(RECORD);
    if (record && !refRunning(record.owner) && !(record.watchdog && refRunning(record.watchdog))) {
      log(`restoring the host after a node of process ${record.owner.pid}, which died without stop()`);
      const problems = await teardownNode(record, (line) => log(`  ${line}`));
      if (problems.length > 0) throw new Error(`could not restore the host after a previous node:\n${problems.join('\n')}`);
      continue;
    }
    // Between another start's mkdir and its first record there is a moment without one.
    noRecordSince = record ? undefined : (noRecordSince ?? Date.now());
    if (noRecordSince !== undefined && Date.now() - noRecordSince > 10_000) {
      throw new Error(`${RUN_DIR} exists without a record of the node that made it; remove it by hand`);
    }
    if (Date.now() > deadline) {
      throw new Error(`the real node of process ${record?.owner.pid} still runs after ${waitMs / 1000}s; one node per machine`);
    }
    if (record && waitingFor !== record.owner.pid) {
      waitingFor = record.owner.pid;
      log(`waiting for the real node of process ${waitingFor} to stop (one node per machine)`);
    }
    await sleep(500);
  }
}

/** A detached shell that runs the teardown once `owner` is gone (SIGKILL, a crash, exit without stop()). */
export function startWatchdog(owner: number): ProcessRef {
  const script = `while kill -0 ${owner} 2>/dev/null; do sleep 1; done; ` + `exec '${process.execPath}' --import tsx test/harness/realNode/teardown.ts '${RECORD}' >'${CRASH_LOG}' 2>&1`;
  // Detached: a session of its own, so a Ctrl-C to our process group does not stop it too.
  const child = spawn('bash', ['-c', script], { stdio: 'ignore', detached: true, cwd: REPO_ROOT });
  child.unref();
  return processRef('watchdog', child.pid ?? -1);
}

/** Ends the watchdog and its `sleep` (its process group: it leads one). */
export function stopWatchdog(watchdog: ProcessRef | undefined): void {
  if (!watchdog || !refRunning(watchdog)) return;
  try {
    process.kill(-watchdog.pid, 'SIGKILL');
  } catch {
    // Gone meanwhile.
  }
}
