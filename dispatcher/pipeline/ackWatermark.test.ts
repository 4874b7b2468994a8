import { describe, expect, it } from 'vitest';
import { AckWatermark } from './ackWatermark.js';

type Step = ['begin', string, bigint] | ['add', string, number?] | ['settle', string, number?] | ['seal', string, bigint] | ['idle', bigint];

function run(steps: Step[]): bigint {
  const w = new AckWatermark(10n);
  const txns = new Map<string, ReturnType<AckWatermark['begin']>>();
  for (const step of steps) {
    switch (step[0]) {
      case 'begin':
        txns.set(step[1], w.begin(step[2]));
        break;
      case 'add':
        for (let i = 0; i < (step[2] ?? 1); i++) w.add(txns.get(step[1])!);
        break;
      case 'settle':
        for (let i = 0; i < (step[2] ?? 1); i++) w.settle(txns.get(step[1])!);
        break;
      case 'seal':
        w.seal(txns.get(step[1])!, step[2]);
        break;
      case 'idle':
        w.idle(step[1]);
        break;
    }
  }
  return w.confirmable();
}

const cases: { name: string; given: Step[]; expect: bigint }[] = [
  { name: 'nothing happened: the start position stays', given: [], expect: 10n },
  {
    name: 'a transaction with no matching events confirms at its commit',
    given: [
      ['begin', 'a', 20n],
      ['seal', 'a', 21n],
    ],
    expect: 21n,
  },
  {
    name: 'a transaction waits for its last event',
    given: [
      ['begin', 'a', 20n],
      ['add', 'a', 2],
      ['seal', 'a', 21n],
      ['settle', 'a'],
    ],
    expect: 10n,
  },
  {
    name: 'a transaction is not confirmed before its commit arrived even when its events settled',
    given: [
      ['begin', 'a', 20n],
      ['add', 'a'],
      ['settle', 'a'],
    ],
    expect: 10n,
  },
  {
    name: 'a later transaction that finished first does not move past an earlier unfinished one',
    given: [
      ['begin', 'a', 20n],
      ['add', 'a'],
      ['seal', 'a', 21n],
      ['begin', 'b', 30n],
      ['add', 'b'],
      ['seal', 'b', 31n],
      ['settle', 'b'],
    ],
    expect: 10n,
  },
  {
    name: 'when the earlier one finishes both are confirmed',
    given: [
      ['begin', 'a', 20n],
      ['add', 'a'],
      ['seal', 'a', 21n],
      ['begin', 'b', 30n],
      ['add', 'b'],
      ['seal', 'b', 31n],
      ['settle', 'b'],
      ['settle', 'a'],
    ],
    expect: 31n,
  },
  { name: 'idle keepalives advance the slot when nothing is open', given: [['idle', 50n]], expect: 50n },
  {
    name: 'idle keepalives do not advance past work in flight',
    given: [
      ['begin', 'a', 20n],
      ['add', 'a'],
      ['seal', 'a', 21n],
      ['idle', 50n],
    ],
    expect: 10n,
  },
  {
    name: 'an older keepalive never moves the watermark back',
    given: [
      ['begin', 'a', 20n],
      ['seal', 'a', 21n],
      ['idle', 15n],
    ],
    expect: 21n,
  },
];

describe('AckWatermark', () => {
  for (const c of cases) it(c.name, () => expect(run(c.given)).toBe(c.expect));

  it('crashes loudly on a transaction that ends before the previous one', () => {
    expect(() =>
      run([
        ['begin', 'a', 20n],
        ['seal', 'a', 21n],
        ['begin', 'b', 15n],
      ]),
    ).toThrow(/is not after/);
  });
  it('crashes loudly when more events settle than were added', () => {
    expect(() =>
      run([
        ['begin', 'a', 20n],
        ['settle', 'a'],
      ]),
    ).toThrow(/settled more events/);
  });
});
