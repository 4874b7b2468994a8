import { describe, expect, it } from 'vitest';
import { planReplicas, type ReplicaView } from './replicaPlan.js';

const ready = (id: number, inflight = 0): ReplicaView => ({ id, ready: true, inflight });
const starting = (id: number): ReplicaView => ({ id, ready: false, inflight: 0 });

describe('turning a wanted replica count into processes to start and stop', () => {
  it.each([
    { name: 'from zero: start them all', given: { replicas: [], wanted: 3 }, expect: { start: 3, stop: [] } },
    { name: 'starting replicas count: only the rest is started', given: { replicas: [ready(1), starting(2)], wanted: 3 }, expect: { start: 1, stop: [] } },
    { name: 'as many as wanted: nothing to do', given: { replicas: [ready(1), ready(2)], wanted: 2 }, expect: { start: 0, stop: [] } },
    { name: 'to zero: stop every replica', given: { replicas: [ready(1), ready(2)], wanted: 0 }, expect: { start: 0, stop: [2, 1] } },
    { name: 'a replica not yet ready goes first', given: { replicas: [ready(1), starting(3), ready(2)], wanted: 2 }, expect: { start: 0, stop: [3] } },
    { name: 'then the one with the fewest requests in flight', given: { replicas: [ready(1, 0), ready(2, 4), ready(3, 1)], wanted: 1 }, expect: { start: 0, stop: [1, 3] } },
    { name: 'among equals the newest', given: { replicas: [ready(1), ready(5), ready(3)], wanted: 2 }, expect: { start: 0, stop: [5] } },
    { name: 'a negative count is zero', given: { replicas: [ready(1)], wanted: -1 }, expect: { start: 0, stop: [1] } },
  ])('$name', ({ given, expect: expected }) => {
    expect(planReplicas(given.replicas, given.wanted)).toEqual(expected);
  });
});
