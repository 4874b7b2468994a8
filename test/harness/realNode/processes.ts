/**
 * Processes of a real node: the ones we spawn (containerd, kubelet, kube-proxy), stopped by their PID,
 * and the ones we do not spawn but must stop as well — containerd's shims (daemonized, so no longer our
 * children) and the containers' own processes (found through their cgroups).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';

/** A process we may stop later: its start time tells it from a later process that reused the PID. */
export interface ProcessRef {
  name: string;
  pid: number;
  startTime: string;
}

/** Field 22 of /proc/<pid>/stat (clock ticks after boot), or undefined when the process is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is parenthesised and may contain spaces: split after it.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Whether `pid` runs (a zombie does not: it only waits for its parent to reap it). */
export function isRunning(pid: number): boolean {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== 'Z';
}

function startTimeOf(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

/** Whether the process `ref` names still runs (and is that process, not a later one with its PID). */
export function refRunning(ref: ProcessRef): boolean {
  return isRunning(ref.pid) && startTimeOf(ref.pid) === ref.startTime;
}

/** The ref of a running process (its start time read now). */
export function processRef(name: string, pid: number): ProcessRef {
  return { name, pid, startTime: startTimeOf(pid) ?? '' };
}

/** Spawns `file` with stdout and stderr appended to `logPath`; the child's ref is read at once. */
export function spawnLogged(name: string, file: string, args: string[], logPath: string): { child: ChildProcess; ref: ProcessRef } {
  const fd = openSync(logPath, 'a');
  const child = spawn(file, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  // A spawn failure (ENOENT) surfaces as 'error'; keep it from crashing the process, the caller sees the
  // child exit instead.
  child.on('error', () => {});
  return { child, ref: processRef(name, child.pid ?? -1) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `signal` to the process if it still is the one `ref` names. */
function signalRef(ref: ProcessRef, signal: NodeJS.Signals): void {
  if (!refRunning(ref)) return;
  try {
    process.kill(ref.pid, signal);
  } catch {
    // Exited in between.
  }
}

/** SIGTERM, SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(ref: ProcessRef, graceMs = 5_000): Promise<void> {
  signalRef(ref, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (refRunning(ref) && Date.now() < deadline) await sleep(50);
  if (!refRunning(ref)) return;
  signalRef(ref, 'SIGKILL');
  const killDeadline = Date.now() + 5_000;
  while (refRunning(ref) && Date.now() < killDeadline) await sleep(50);
}

/** SIGKILLs each pid, then waits (up to 5 s) until they are gone. */
export async function killPids(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  const deadline = Date.now() + 5_000;
  while (pids.some(isRunning) && Date.now() < deadline) await sleep(50);
}

/** Pids whose command line contains every one of `needles` (a NUL-separated argv, read from /proc). */
export function pidsWithCommandLine(...needles: string[]): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (needles.every((n) => commandLine.includes(n))) found.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return found.filter(isRunning);
}
