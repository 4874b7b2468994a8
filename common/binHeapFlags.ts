import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** bin/eventide.mjs, whose first two lines are the shell script that starts node with heap flags. */
export const EVENTIDE_BIN = fileURLToPath(new URL('../bin/eventide.mjs', import.meta.url));

/**
 * The V8 heap flags `eventide` gives node when run as a command without heap flags in NODE_OPTIONS,
 * read from the bin's own shell line, so what reads them (a test against the operator's flags, the
 * bench when it must start node itself) cannot drift from what the command does.
 */
export function binHeapFlags(source = readFileSync(EVENTIDE_BIN, 'utf8')): string[] {
  const line = source.split('\n')[1] ?? '';
  const flags = /exec node ((?:--[\w-]+=\S+ )+)"\$0"/.exec(line)?.[1];
  if (!flags) throw new Error(`${EVENTIDE_BIN}: its second line does not start node with heap flags`);
  return flags.trim().split(' ');
}
