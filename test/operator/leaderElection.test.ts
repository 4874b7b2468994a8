import { describe, expect, it } from 'vitest';
import { decideLease, nextLeaseSpec, type LeaseDecision, type LeaseRecord } from '../../operator/leaderElection.js';

const ME = 'op-a';
const NOW = 1_000_000;

describe('decideLease', () => {
  const cases: { name: string; given: { record: LeaseRecord | undefined; observedAtMs: number }; expect: LeaseDecision }[] = [
    { name: 'no Lease yet: create it', given: { record: undefined, observedAtMs: 0 }, expect: { action: 'create' } },
    { name: 'we hold it: renew', given: { record: { holderIdentity: ME, leaseDurationSeconds: 15 }, observedAtMs: NOW }, expect: { action: 'renew' } },
    {
      name: 'another holder renewed within the lease duration (by our clock): wait',
      given: { record: { holderIdentity: 'op-b', leaseDurationSeconds: 15 }, observedAtMs: NOW - 14_000 },
      expect: { action: 'wait', holder: 'op-b', remainingMs: 1_000 },
    },
    {
      name: 'another holder has not renewed for the lease duration: take over',
      given: { record: { holderIdentity: 'op-b', leaseDurationSeconds: 15 }, observedAtMs: NOW - 15_000 },
      expect: { action: 'takeOver', previousHolder: 'op-b' },
    },
    {
      name: 'a released Lease (holder cleared) is free at once',
      given: { record: { holderIdentity: '', leaseDurationSeconds: 1 }, observedAtMs: NOW },
      expect: { action: 'takeOver', previousHolder: undefined },
    },
  ];
  it.each(cases)('$name', ({ given, expect: want }) => {
    expect(decideLease(given.record, given.observedAtMs, NOW, ME)).toEqual(want);
  });

  it('judges expiry by when we saw the record change, not by the holder\'s renewTime (clock skew)', () => {
    const record = { holderIdentity: 'op-b', leaseDurationSeconds: 15, renewTime: new Date(NOW - 3_600_000) };
    expect(decideLease(record, NOW, NOW, ME).action).toBe('wait');
  });
});

describe('nextLeaseSpec', () => {
  const now = new Date(NOW);
  it('taking over counts a transition and sets acquireTime', () => {
    const spec = nextLeaseSpec({ holderIdentity: 'op-b', leaseTransitions: 4, acquireTime: new Date(0) }, ME, now, 15_000);
    expect(spec).toMatchObject({ holderIdentity: ME, leaseDurationSeconds: 15, leaseTransitions: 5 });
    expect(new Date(spec.acquireTime!).getTime()).toBe(NOW);
    expect(new Date(spec.renewTime!).getTime()).toBe(NOW);
  });
  it('renewing keeps acquireTime and the transition count', () => {
    const acquired = new Date(NOW - 60_000);
    const spec = nextLeaseSpec({ holderIdentity: ME, leaseTransitions: 2, acquireTime: acquired }, ME, now, 15_000);
    expect(spec.leaseTransitions).toBe(2);
    expect(new Date(spec.acquireTime!).getTime()).toBe(acquired.getTime());
  });
  it('a new Lease starts at zero transitions', () => {
    expect(nextLeaseSpec(undefined, ME, now, 15_000).leaseTransitions).toBe(0);
  });
  it('writes times as MicroTime (microsecond precision, as the API requires)', () => {
    expect(JSON.stringify(nextLeaseSpec(undefined, ME, now, 15_000).renewTime)).toMatch(/\.\d{6}Z"$/);
  });
});
