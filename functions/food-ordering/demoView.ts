/**
 * What the demo shows, as text: the progress rows (orders per step, each step's function and its
 * replicas) and the closing summary. Pure, so the live view, the quiet line and the tests agree.
 */

/** Orders that reached each step. */
export interface StageCounts {
  placed: number;
  validated: number;
  paid: number;
  approved: number;
  assigned: number;
}

/** The dispatcher's counters. */
export interface DeliveryCounts {
  deliveries: number;
  retries: number;
  deadLetters: number;
}

/** A Function's replicas as the view shows them. */
export interface ReplicaCounts {
  desired: number;
  ready: number;
  peakReady: number;
}

/** Each step of an order, the column that records it and the Function that does it. */
export const STEPS = [
  { label: 'validated', stage: 'validated', fn: 'validate-order' },
  { label: 'paid', stage: 'paid', fn: 'process-payment' },
  { label: 'approved', stage: 'approved', fn: 'approve-restaurant' },
  { label: 'agent assigned', stage: 'assigned', fn: 'assign-agent' },
] as const;

/** The Functions of the demo, in the order of an order's journey. */
export const FUNCTION_NAMES: readonly string[] = STEPS.map((step) => step.fn);

export function bar(n: number, total: number, width = 24): string {
  const filled = total ? Math.min(width, Math.round((n / total) * width)) : 0;
  return `${'█'.repeat(filled)}${'·'.repeat(width - filled)}`;
}

/** `ready/desired`, as `kubectl get deployment` shows READY. */
export function replicaText(replicas: ReplicaCounts | undefined): string {
  return replicas ? `${replicas.ready}/${replicas.desired} (peak ${replicas.peakReady})` : '-';
}

/** The live view's rows; the quiet line is the same rows on one line. */
export function progressRows(counts: StageCounts, deliveries: DeliveryCounts, replicas: ReadonlyMap<string, ReplicaCounts>, problems: readonly string[] = []): string[] {
  return [
    `orders placed     ${String(counts.placed).padStart(6)}  ${''.padEnd(24)}  replicas ready/desired`,
    ...STEPS.map(
      (step) => `  ${step.label.padEnd(16)}${String(counts[step.stage]).padStart(6)}  ${bar(counts[step.stage], counts.placed)}  ${step.fn.padEnd(19)}${replicaText(replicas.get(step.fn))}`,
    ),
    `deliveries ${deliveries.deliveries}   retries ${deliveries.retries}   dead letters ${deliveries.deadLetters}`,
    ...problems.map((problem) => `! ${problem}`),
  ];
}

/** The rows on one line, for logs: runs of spaces collapsed, rows separated by `|`. */
export function quietLine(rows: readonly string[]): string {
  return rows.map((row) => row.replace(/\s+/g, ' ').trim()).join(' | ');
}

/** The closing lines about replicas: the peak of each Function, and where they ended. */
export function replicaSummary(replicas: ReadonlyMap<string, ReplicaCounts>): string {
  const names = [...replicas.keys()];
  const peaks = names.map((name) => `${name} ${replicas.get(name)!.peakReady}`).join(', ');
  const left = names.filter((name) => replicas.get(name)!.ready > 0 || replicas.get(name)!.desired > 0);
  const now = left.length === 0 ? 'all back to 0' : `still running: ${left.map((name) => `${name} ${replicaText(replicas.get(name))}`).join(', ')}`;
  return `peak replicas: ${peaks}; ${now}`;
}
