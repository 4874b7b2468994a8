/**
 * The demo's child processes (the dispatcher, each function replica): started from the repository root
 * with the same Node, remembered so that nothing outlives the demo, and stopped as Kubernetes stops a
 * pod: SIGTERM, time to drain, then SIGKILL.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** How long a process may drain after SIGTERM before it is killed (the runtime's own deadline is 25 s). */
const STOP_GRACE_MS = 30_000;

/** Starts child processes and stops them, every one, before the demo ends. */
export class LocalProcesses {
  private readonly running = new Set<ChildProcess>();
  /** Processes being stopped on purpose: their exit is not news. */
  private readonly stopped = new WeakSet<ChildProcess>();
  private readonly logs = new Map<ChildProcess, string>();
  private stoppingAll = false;

  /** `logDir`: when set, each process's output is appended to `<logDir>/<name>.log`. */
  constructor(private readonly logDir: string | undefined) {}

  /** Runs `node <args>`; an exit nobody asked for is reported on stderr with the end of its output. */
  start(name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.running.add(child);
    this.logs.set(child, '');
    // One append stream per process: a synchronous write per output chunk would stall the demo's loop.
    const logFile = this.logDir ? createWriteStream(`${this.logDir}/${name}.log`, { flags: 'a' }) : undefined;
    logFile?.on('error', () => undefined);
    child.once('close', () => logFile?.end());
    const keep = (chunk: Buffer) => {
      this.logs.set(child, ((this.logs.get(child) ?? '') + chunk.toString()).slice(-4000));
      logFile?.write(chunk);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    // A spawn failure (no such executable, too many processes) arrives here, then as an exit.
    child.on('error', (error) => keep(Buffer.from(`${error.message}\n`)));
    child.once('exit', (code) => {
      this.running.delete(child);
      const expected = this.stoppingAll || this.stopped.has(child);
      if (code && !expected) process.stderr.write(`${name} exited with ${code}:\n${this.logs.get(child)}\n`);
      this.logs.delete(child);
    });
    return child;
  }

  /** From now on exits are expected (Ctrl-C reaches the children too): none is reported. */
  expectExits(): void {
    this.stoppingAll = true;
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace period; resolves once it has exited. */
  stop(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
    this.stopped.add(child);
    return new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }

  /** Stops every process still running, at once. */
  async stopAll(graceMs = 5000): Promise<void> {
    this.stoppingAll = true;
    await Promise.all([...this.running].map((child) => this.stop(child, graceMs)));
  }
}

/** Resolves when `url` answers 200; rejects when the process exits first or `timeoutMs` passes. */
export async function waitReady(url: string, what: string, child: ChildProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited with ${child.exitCode ?? child.signalCode} before it was ready`);
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(1000) })).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${what} was not ready within ${timeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
