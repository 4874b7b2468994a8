import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../common/loopback.js';

const BIN = fileURLToPath(new URL('../../bin/eventide.mjs', import.meta.url));

/** The real `eventide dispatch` command running as a child process. */
export interface DispatcherProcess {
  readonly port: number;
  readonly child: ChildProcess;
  /** Everything it printed (pino JSON lines). */
  output(): string;
  /** Resolves when /readyz answers 200. */
  ready(timeoutMs?: number): Promise<void>;
  metrics(): Promise<string>;
  /** Sends a signal and resolves with the exit code once it exited. */
  kill(signal: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code (for runs expected to fail). */
  exited(): Promise<number | null>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts `eventide dispatch` with the given arguments plus a free --port: `node bin/eventide.mjs`, or with
 * `asCommand` the bin run as a command, as npx runs it (its shell lines start node).
 */
export async function startDispatcherProcess(args: string[], env: NodeJS.ProcessEnv = {}, options: { asCommand?: boolean } = {}): Promise<DispatcherProcess> {
  const port = await freePort();
  const commandArgs = ['dispatch', '--port', String(port), '--host', '127.0.0.1', ...args];
  const child = spawn(options.asCommand ? BIN : process.execPath, options.asCommand ? commandArgs : [BIN, ...commandArgs], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  return {
    port,
    child,
    output: () => log,
    async ready(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`dispatcher exited with ${child.exitCode}:\n${log}`);
        try {
          const res = await fetch(`http://127.0.0.1:${port}/readyz`);
          if (res.status === 200) return;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) throw new Error(`dispatcher not ready in ${timeoutMs}ms:\n${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async metrics() {
      return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    },
    async kill(signal) {
      if (child.exitCode === null) child.kill(signal);
      return exit;
    },
    exited: () => exit,
  };
}
