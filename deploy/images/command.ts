import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { ImageBuildError } from './errors.js';

/** How one tool invocation runs: `log` receives stdout and stderr as they come (the build log file). */
export interface CommandOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Appends the command line and its output here. */
  logFile?: string;
  /** Passes the output through to this process's stderr too (`--verbose`). */
  echo?: boolean;
}

const TAIL_CHARS = 4000;

/**
 * Runs `command args` to completion and returns its stdout; throws an ImageBuildError naming `what`
 * with the end of its output when it exits non-zero (the start of a build log is rarely the cause).
 */
export async function runCommand(what: string, command: string, args: readonly string[], options: CommandOptions = {}): Promise<string> {
  const log = options.logFile ? createWriteStream(options.logFile, { flags: 'a' }) : undefined;
  log?.write(`$ ${command} ${args.join(' ')}\n`);
  const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString()).slice(-TAIL_CHARS);
    log?.write(chunk);
    if (options.echo) process.stderr.write(chunk);
  };
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    keep(chunk);
  });
  child.stderr.on('data', keep);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', (error) => reject(new ImageBuildError(`${what}: cannot run ${command}: ${error.message}`, { cause: error })));
    child.once('close', resolve);
  }).finally(() => log?.end());
  if (code !== 0) {
    const where = options.logFile ? ` (whole log: ${options.logFile})` : '';
    throw new ImageBuildError(`${what}: ${command} ${args.slice(0, 3).join(' ')}… exited ${code}${where}\n${tail.trimEnd()}`);
  }
  return stdout;
}
