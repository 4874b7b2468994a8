import { describe, expect, it } from 'vitest';
import { pickReplica } from './replicaChoice.js';

const r = (...inflight: number[]) => inflight.map((n) => ({ inflight: n }));

describe('choosing the replica for a request', () => {
  it.each([
    { name: 'no replica in rotation: none', given: { replicas: r(), turn: 0 }, expect: undefined },
    { name: 'one replica: that one, however busy', given: { replicas: r(7), turn: 3 }, expect: 0 },
    { name: 'the replica with the fewest requests in flight', given: { replicas: r(3, 0, 2), turn: 0 }, expect: 1 },
    { name: 'a replica that just became ready takes the next request', given: { replicas: r(5, 5, 0), turn: 1 }, expect: 2 },
    { name: 'a tie goes to the first tied replica from the turn on', given: { replicas: r(1, 1, 1), turn: 1 }, expect: 1 },
    { name: 'the turn wraps around the replicas', given: { replicas: r(0, 0, 0), turn: 5 }, expect: 2 },
    { name: 'a tied replica before the turn is not preferred', given: { replicas: r(0, 2, 0), turn: 1 }, expect: 2 },
  ])('$name', ({ given, expect: expected }) => {
    expect(pickReplica(given.replicas, given.turn)).toBe(expected);
  });

  it('equally loaded replicas share the requests round-robin', () => {
    const replicas = r(0, 0, 0);
    expect([0, 1, 2, 3, 4, 5].map((turn) => pickReplica(replicas, turn))).toEqual([0, 1, 2, 0, 1, 2]);
  });
});
