/**
 * vitest globalSetup: gives the test run one temp directory of its own (TMPDIR for every worker,
 * so Postgres data dirs, manifest files and sockets all land under it) and, at teardown, stops any
 * process still running from it and removes it. Tests clean up after themselves; this is the net for a
 * test that fails halfway or a worker that is killed before its exit hooks run, which would otherwise
 * leave a postmaster and a dispatcher running and temp dirs piling up run after run.
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'eventide-test-'));
  // Postgres runs as another user when the tests run as root; it must reach its data dir below.
  chmodSync(root, 0o755);
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = root;
  return async () => {
    const leftovers = processesUsing(root);
    for (const { pid, commandLine } of leftovers) {
      try {
        // SIGQUIT is Postgres's immediate shutdown: the postmaster takes its backends down with it.
        process.kill(pid, /(^|\/)postgres\0/.test(commandLine) ? 'SIGQUIT' : 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (leftovers.length > 0) {
      console.error(`[globalSetup] stopped ${leftovers.length} process(es) a test left running under ${root}`);
      for (let waited = 0; waited < 5000 && processesUsing(root).length > 0; waited += 100) await new Promise((r) => setTimeout(r, 100));
    }
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    rmSync(root, { recursive: true, force: true });
  };
}

/** Pids whose command line names a path under root (Linux /proc; elsewhere none are found). */
function processesUsing(root: string): { pid: number; commandLine: string }[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const found: { pid: number; commandLine: string }[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (commandLine.includes(`${root}/`)) found.push({ pid: Number(entry), commandLine });
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}
