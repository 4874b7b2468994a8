import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger };

/** Replaces the password in any postgres:// (or other) URL so it can be logged. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@\s]+:)[^@\s]*@/g, '$1***@');
}

/** Creates the JSON logger both programs use; secrets in known fields are redacted. */
export function createLogger(name: string, options: LoggerOptions = {}): Logger {
  return pino({
    name,
    level: process.env.LOG_LEVEL ?? 'info',
    redact: { paths: ['password', '*.password', 'databaseUrl', '*.databaseUrl', 'secret', '*.secret', 'headers.authorization'], censor: '***' },
    ...options,
  });
}

/** A logger that writes nothing, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
