import { type ResourceLimits, Worker } from 'node:worker_threads';
import { dispatcherHeapLimits } from './heapLimits.js';

/** What the launcher hands a dispatcher worker (read by cli.ts in the worker). */
export interface DispatchWorkerData {
  eventideDispatch: string[];
}

/**
 * Starts `eventide dispatch` in a worker thread with its own, smaller heap (see heapLimits.ts) when
 * nobody sized the heap, so a dispatcher started as `node bin/eventide.mjs` uses about as little memory
 * as one the operator starts with its V8 flags (run as a command, the bin's shell lines pass those flags
 * to node, and no worker is needed). This module is bundled apart from the command (bin/eventide.mjs), so the
 * main thread loads none of the dispatcher's code: it passes signals on and returns the worker's exit
 * code. Undefined: run the command in this thread (another command, a sized heap, or sources run
 * through tsx's loader, which a worker cannot load).
 */
export function launchDispatcher(cliUrl: string, argv: readonly string[]): Promise<number> | undefined {
  if (argv[0] !== 'dispatch' || cliUrl.endsWith('.ts')) return undefined;
  const limits = dispatcherHeapLimits(process.execArgv, process.env.NODE_OPTIONS);
  return limits ? runInWorker(cliUrl, argv.slice(1), limits) : undefined;
}

function runInWorker(cliUrl: string, argv: string[], resourceLimits: ResourceLimits): Promise<number> {
  const worker = new Worker(new URL(cliUrl), { workerData: { eventideDispatch: argv } satisfies DispatchWorkerData, resourceLimits });
  const forward = (signal: NodeJS.Signals) => worker.postMessage({ signal });
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  let exitCode: number | undefined;
  return new Promise((resolve) => {
    worker.on('message', (message: { exitCode?: number }) => (exitCode = message.exitCode));
    worker.on('error', (error) => {
      process.stderr.write(`eventide: the dispatcher failed: ${error.stack ?? error.message}\n`);
      exitCode ??= 1;
    });
    worker.on('exit', (code) => {
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      resolve(exitCode ?? code);
    });
  });
}
