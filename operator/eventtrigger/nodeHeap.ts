import type { V1ResourceRequirements } from '@kubernetes/client-node';

const SUFFIXES: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** Bytes of a Kubernetes memory quantity ("512Mi", "1G", "268435456", "1.5Gi", "5e8"); undefined when it is none. */
export function quantityBytes(quantity: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(?:(Ki|Mi|Gi|Ti|k|M|G|T)|[eE](\d+))?$/.exec(quantity.trim());
  if (!match) return undefined;
  return Number(match[1]) * (match[3] !== undefined ? 10 ** Number(match[3]) : SUFFIXES[match[2] ?? '']!);
}

/** The young generation's semi-space: V8's default (16 MiB ×3) is a third of a small dispatcher's memory. */
const SEMI_SPACE_MIB = 4;
/** Node itself, the modules, socket and protocol buffers: what the old-space cap leaves room for. */
const MIN_OLD_SPACE_MIB = 64;

/**
 * NODE_OPTIONS for a dispatcher container. V8's default heap limit leaves no room under the pod's
 * memory limit (it is sized to about all of it, or to the host's memory), and V8 grows the heap
 * lazily under load: a dispatcher draining a backlog would be OOM-killed with mostly garbage in its
 * heap. Capping old space at half the limit makes V8 collect first; the other half is Node itself,
 * buffers outside the heap and the young generation.
 */
export function dispatcherNodeOptions(resources: V1ResourceRequirements): string {
  const options = [`--max-semi-space-size=${SEMI_SPACE_MIB}`];
  const limit = resources.limits?.memory;
  const bytes = limit === undefined ? undefined : quantityBytes(limit);
  if (bytes !== undefined) options.push(`--max-old-space-size=${Math.max(MIN_OLD_SPACE_MIB, Math.floor(bytes / 2 ** 20 / 2))}`);
  return options.join(' ');
}
