/**
 * Turns a wanted replica count into processes to start and replicas to stop, as a ReplicaSet does. Pure.
 */

/** A replica that counts towards the Function's replicas: starting, or ready and in the Service's rotation. */
export interface ReplicaView {
  id: number;
  ready: boolean;
  /** Requests it is serving now. */
  inflight: number;
}

/** What to do to get from the replicas there are to the count wanted. */
export interface ReplicaPlan {
  /** How many replicas to start. */
  start: number;
  /** Which replicas to stop, by id. */
  stop: number[];
}

/**
 * Starts what is missing; when there are too many, stops first the replicas not yet ready (they serve
 * nothing, as the ReplicaSet controller deletes unready pods first), then those with the fewest requests
 * in flight (less to drain), the newest first among equals (the longest-lived ones are warm).
 */
export function planReplicas(replicas: readonly ReplicaView[], wanted: number): ReplicaPlan {
  const excess = replicas.length - Math.max(0, wanted);
  if (excess <= 0) return { start: Math.max(0, wanted) - replicas.length, stop: [] };
  const order = [...replicas].sort((a, b) => Number(a.ready) - Number(b.ready) || a.inflight - b.inflight || b.id - a.id);
  return { start: 0, stop: order.slice(0, excess).map((replica) => replica.id) };
}
