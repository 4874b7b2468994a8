import { describe, expect, it } from 'vitest';
import { progressRows, quietLine, replicaSummary, replicaText } from './demoView.js';

const counts = { placed: 10, validated: 10, paid: 8, approved: 4, assigned: 0 };
const deliveries = { deliveries: 22, retries: 3, deadLetters: 0 };

describe("the demo's view", () => {
  it.each([
    { name: 'ready/desired as kubectl shows READY, with the peak', given: { desired: 3, ready: 1, peakReady: 2 }, expect: '1/3 (peak 2)' },
    { name: 'at zero', given: { desired: 0, ready: 0, peakReady: 4 }, expect: '0/0 (peak 4)' },
    { name: 'a function the demo does not run', given: undefined, expect: '-' },
  ])('replicas: $name', ({ given, expect: expected }) => {
    expect(replicaText(given)).toBe(expected);
  });

  it("each step's row names its function and its replicas; problems follow", () => {
    const replicas = new Map([
      ['validate-order', { desired: 1, ready: 1, peakReady: 2 }],
      ['process-payment', { desired: 3, ready: 2, peakReady: 2 }],
      ['approve-restaurant', { desired: 1, ready: 0, peakReady: 0 }],
      ['assign-agent', { desired: 0, ready: 0, peakReady: 0 }],
    ]);
    const rows = progressRows(counts, deliveries, replicas, ["cannot read the dispatcher's state: ECONNREFUSED"]);
    expect(quietLine(rows)).toBe(
      'orders placed 10 replicas ready/desired | validated 10 ████████████████████████ validate-order 1/1 (peak 2) | ' +
        'paid 8 ███████████████████····· process-payment 2/3 (peak 2) | approved 4 ██████████·············· approve-restaurant 0/1 (peak 0) | ' +
        "agent assigned 0 ························ assign-agent 0/0 (peak 0) | deliveries 22 retries 3 dead letters 0 | ! cannot read the dispatcher's state: ECONNREFUSED",
    );
  });

  it.each([
    {
      name: 'all back to zero',
      given: new Map([
        ['validate-order', { desired: 0, ready: 0, peakReady: 2 }],
        ['assign-agent', { desired: 0, ready: 0, peakReady: 1 }],
      ]),
      expect: 'peak replicas: validate-order 2, assign-agent 1; all back to 0',
    },
    {
      name: 'some still running',
      given: new Map([
        ['validate-order', { desired: 1, ready: 1, peakReady: 2 }],
        ['assign-agent', { desired: 0, ready: 0, peakReady: 1 }],
      ]),
      expect: 'peak replicas: validate-order 2, assign-agent 1; still running: validate-order 1/1 (peak 2)',
    },
  ])('summary: $name', ({ given, expect: expected }) => {
    expect(replicaSummary(given)).toBe(expected);
  });
});
