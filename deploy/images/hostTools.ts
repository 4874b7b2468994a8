import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { runCommand } from './command.js';
import { ImageBuildError } from './errors.js';

/** The full path of `command` on PATH, or undefined. */
export function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * Installs with apt the Debian packages of the commands in `needed` (command → package) that are not
 * on PATH. Another process may hold the dpkg lock (a concurrent install), so apt waits for it rather than
 * failing; stale package lists are refreshed once.
 */
export async function ensureCommands(needed: Record<string, string>, logFile?: string): Promise<void> {
  const packages = [
    ...new Set(
      Object.entries(needed)
        .filter(([command]) => !which(command))
        .map(([, pkg]) => pkg),
    ),
  ];
  if (packages.length === 0) return;
  if (process.getuid?.() !== 0 || !which('apt-get')) {
    throw new ImageBuildError(`missing ${packages.join(', ')}: install ${packages.length > 1 ? 'them' : 'it'} (Debian: apt-get install ${packages.join(' ')}) and run again`);
  }
  const aptGet = (what: string, args: string[]): Promise<string> =>
    runCommand(what, 'apt-get', ['-o', 'DPkg::Lock::Timeout=600', ...args], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, ...(logFile ? { logFile } : {}) });
  const install = ['install', '-y', '--no-install-recommends', ...packages];
  try {
    await aptGet(`install ${packages.join(', ')}`, install);
  } catch {
    await aptGet('refresh the package lists', ['update']);
    await aptGet(`install ${packages.join(', ')}`, install);
  }
}
