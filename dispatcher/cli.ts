import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { EventideError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/logger.js';
import { BACKFILL_USAGE, runBackfillCommand } from './backfill/command.js';
import { EVENTS_USAGE, runEventsCommand, runInvokeCommand } from './backlog/command.js';
import { DEADLETTERS_USAGE, runDeadLettersCommand } from './deadletters/command.js';
import { Dispatcher, StartAbortedError } from './dispatcher.js';
import type { DispatchWorkerData } from './launcher.js';
import { DISPATCH_USAGE, type DispatchSettings, parseDispatchSettings } from './settings.js';

const USAGE = `eventide: functions triggered by database events

Commands:
  dispatch      stream a database's changes to functions
  deadletters   list or replay events that could not be delivered
  events        list the events waiting in trigger backlogs, or redeliver them with fresh retries
  invoke        send a row's current state through a trigger (op "manual")
  backfill      send a table's existing rows through a trigger (op "read"), follow or cancel it

${DISPATCH_USAGE}
${DEADLETTERS_USAGE}
${EVENTS_USAGE}
${BACKFILL_USAGE}`;

/** Errors whose message is the whole story for the user (`common/errors.ts`): printed without a stack. */
function isUserError(error: unknown): error is EventideError {
  return error instanceof EventideError;
}

/**
 * Runs the dispatcher until SIGTERM or SIGINT. When the manifests come to name another slot or
 * publication, the running dispatcher drains and a new one starts on them, in the same process.
 */
async function dispatch(argv: string[]): Promise<number> {
  const settings = parseDispatchSettings(argv);
  const logger = createLogger('eventide-dispatcher');
  const shutdown = new AbortController();
  const onSignal = (signal: string) => {
    logger.info({ signal, drainTimeoutMs: settings.drainTimeoutMs }, 'shutting down: draining deliveries in flight');
    shutdown.abort();
  };
  // In a worker, signals reach the main thread only, which passes them on (see launcher.ts). The
  // listener goes when the dispatcher ends: a port with a listener would keep the worker alive.
  const fromMainThread = (message: { signal?: string }) => onSignal(message.signal ?? 'SIGTERM');
  if (isMainThread) {
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  } else parentPort?.on('message', fromMainThread);
  try {
    return await runDispatchers(settings, logger, shutdown);
  } finally {
    parentPort?.off('message', fromMainThread);
  }
}

/** Runs dispatchers until `shutdown`; a new one whenever the manifests come to name another slot. */
async function runDispatchers(settings: DispatchSettings, logger: Logger, shutdown: AbortController): Promise<number> {
  const stopped = new Promise<'stop'>((resolve) => shutdown.signal.addEventListener('abort', () => resolve('stop'), { once: true }));
  while (!shutdown.signal.aborted) {
    let dispatcher: Dispatcher;
    try {
      dispatcher = await Dispatcher.start(settings, logger, process.env, shutdown.signal);
    } catch (error) {
      if (error instanceof StartAbortedError) return 0;
      throw error;
    }
    const next = await Promise.race([stopped, dispatcher.restartNeeded]);
    await dispatcher.stop();
    if (next !== 'stop') logger.info({ slot: next.slot, publication: next.publication }, 'restarting on the new slot and publication');
  }
  return 0;
}

// In the worker bin/eventide.mjs starts for `dispatch` (see launcher.ts): run it, report the exit code.
if (!isMainThread && (workerData as Partial<DispatchWorkerData> | null)?.eventideDispatch) {
  const { eventideDispatch } = workerData as DispatchWorkerData;
  void main(['dispatch', ...eventideDispatch]).then((exitCode) => parentPort?.postMessage({ exitCode }));
}

/** The `eventide` command; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'dispatch':
        return await dispatch(rest);
      case 'deadletters':
        return await runDeadLettersCommand(rest);
      case 'events':
        return await runEventsCommand(rest);
      case 'invoke':
        return await runInvokeCommand(rest);
      case 'backfill':
        return await runBackfillCommand(rest);
      case undefined:
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        process.stderr.write(`eventide: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (isUserError(error)) {
      process.stderr.write(`eventide: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
