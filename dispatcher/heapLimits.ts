import type { ResourceLimits } from 'node:worker_threads';

/**
 * The heap of a dispatcher run as `node bin/eventide.mjs dispatch` with no heap flag (run as a command,
 * the bin's shell lines give node the operator's flags instead): near what the operator's pods get
 * (--max-semi-space-size=4 --max-old-space-size=256), with a smaller young generation to pay for the
 * worker's second isolate. V8's defaults
 * (16 MiB semi-spaces, an old space sized from the machine's memory) cost about 120 MiB more RSS under a
 * backlog for no throughput (npm run bench -- --only rss, 1M-event backlog: 266 MiB with V8's defaults in
 * one thread; 142–149 MiB in a worker with these limits, 137 MiB with the operator's flags: the main
 * thread's own isolate is the difference). A dispatcher's memory is bounded by its window; a much larger
 * window (--max-inflight-bytes) wants NODE_OPTIONS with a larger old space.
 */
const YOUNG_GENERATION_MIB = 4;
const OLD_GENERATION_MIB = 256;

/** V8 flags that size the heap: when any is given, the user (or the operator) chose, and it is left alone. */
const HEAP_FLAGS = /^--(max-semi-space-size|max-old-space-size|max-young-generation-size|semi-space-growth-factor)(=|$)/;

/**
 * The heap limits a dispatcher started by hand should run under, or undefined when the process's V8
 * flags already size the heap. A running process cannot change its own heap's sizes, but a worker
 * thread gets its own heap with the limits given here. Pure.
 */
export function dispatcherHeapLimits(execArgv: readonly string[], nodeOptions: string | undefined): ResourceLimits | undefined {
  const flags = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map((f) => f.replace(/_/g, '-'));
  if (flags.some((flag) => HEAP_FLAGS.test(flag))) return undefined;
  return { maxYoungGenerationSizeMb: YOUNG_GENERATION_MIB, maxOldGenerationSizeMb: OLD_GENERATION_MIB };
}
