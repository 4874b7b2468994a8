import { InvalidResourceError, ManifestError } from '../api/v1alpha1/index.js';
import { createLogger } from '../common/logger.js';
import { Dispatcher } from './dispatcher.js';
import { DISPATCH_USAGE, SettingsError, parseDispatchSettings } from './settings.js';
import { SourceProblemError } from './source/sourceSetup.js';
import { UnresolvedTargetError } from './targets.js';
import { runDeadLettersCommand, DEADLETTERS_USAGE } from './deadletters/command.js';
import { EVENTS_USAGE, runEventsCommand, runInvokeCommand } from './backlog/command.js';

const USAGE = `eventide: functions triggered by database events

Commands:
  dispatch      stream a database's changes to functions
  deadletters   list or replay events that could not be delivered
  events        list the events waiting in trigger backlogs, or redeliver them with fresh retries
  invoke        send a row's current state through a trigger (op "manual")

${DISPATCH_USAGE}
${DEADLETTERS_USAGE}
${EVENTS_USAGE}`;

/** Errors whose message is the whole story for the user: printed without a stack. */
function isUserError(error: unknown): error is Error {
  return (
    error instanceof SettingsError ||
    error instanceof InvalidResourceError ||
    error instanceof ManifestError ||
    error instanceof SourceProblemError ||
    error instanceof UnresolvedTargetError ||
    (error instanceof Error && /^EventTrigger |invalid YAML|ENOENT/.test(error.message))
  );
}

async function dispatch(argv: string[]): Promise<number> {
  const settings = parseDispatchSettings(argv);
  const logger = createLogger('eventide-dispatcher');
  const dispatcher = await Dispatcher.start(settings, logger);
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal, drainTimeoutMs: settings.drainTimeoutMs }, 'shutting down: draining deliveries in flight');
      resolve();
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
  await dispatcher.stop();
  return 0;
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
