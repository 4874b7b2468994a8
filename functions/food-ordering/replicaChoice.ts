/**
 * Which replica the local Service sends a request to. Pure.
 *
 * Least in flight rather than plain round-robin: a replica that has just become ready has nothing in
 * flight and takes the next requests at once, which is the point of scaling up under a backlog, and
 * a replica slowed by a long request is passed over. Ties go round-robin from `turn`, so equally
 * loaded replicas share the work instead of the first one taking it all.
 */
export function pickReplica(replicas: readonly { inflight: number }[], turn: number): number | undefined {
  const n = replicas.length;
  if (n === 0) return undefined;
  const start = ((turn % n) + n) % n;
  let best = start;
  for (let k = 1; k < n; k++) {
    const i = (start + k) % n;
    if (replicas[i]!.inflight < replicas[best]!.inflight) best = i;
  }
  return best;
}
