import { describe, expect, it } from 'vitest';
import { type FailureRecord, FailureSummary, type SummaryLine } from './failureSummary.js';

const INTERVAL = 10_000;
const REFUSED = { reason: 'connect ECONNREFUSED 10.0.0.7:8080' };
const UNAVAILABLE = { reason: 'HTTP 503', status: 503 };

type Step = ['at', number] | ['fail', string, Partial<Omit<FailureRecord, 'trigger'>>?, number?] | ['succeed', string] | ['flush'] | ['forget', string];

/** Runs the steps against a summary with a clock at `at`; returns the lines it emitted. */
function run(steps: Step[]): SummaryLine[] {
  let t = 0;
  const lines: SummaryLine[] = [];
  const summary = new FailureSummary({ intervalMs: INTERVAL, now: () => t, emit: (line) => lines.push(line) });
  for (const step of steps) {
    switch (step[0]) {
      case 'at':
        t = step[1];
        break;
      case 'fail':
        for (let i = 0; i < (step[3] ?? 1); i++) summary.failed({ trigger: step[1], ...REFUSED, outcome: 'retry', ...step[2] });
        break;
      case 'succeed':
        summary.succeeded(step[1]);
        break;
      case 'flush':
        summary.flush();
        break;
      case 'forget':
        summary.forget(step[1]);
        break;
    }
  }
  return lines;
}

const firstA: SummaryLine = { kind: 'first-failure', trigger: 'a', ...REFUSED, outcome: 'retry' };
const firstB: SummaryLine = { kind: 'first-failure', trigger: 'b', ...REFUSED, outcome: 'retry' };
const noCounts = { failures: 0, retries: 0, parked: 0, deadLettered: 0 };

const cases: { name: string; given: Step[]; expect: SummaryLine[] }[] = [
  {
    name: 'the first failure is logged at once with its reason, status and outcome',
    given: [['fail', 'a', { ...UNAVAILABLE, outcome: 'dead_letter' }]],
    expect: [{ kind: 'first-failure', trigger: 'a', ...UNAVAILABLE, outcome: 'dead_letter' }],
  },
  {
    name: 'further failures within the interval are only counted, and flush before the interval has passed emits nothing',
    given: [['fail', 'a', {}, 5], ['at', 9_999], ['flush']],
    expect: [firstA],
  },
  {
    name: 'once the interval has passed, flush reports the failures after the first-failure line, by outcome, with the last reason',
    given: [['at', 1_000], ['fail', 'a', {}, 3], ['fail', 'a', { outcome: 'parked' }, 2], ['fail', 'a', { ...UNAVAILABLE, outcome: 'dead_letter' }], ['at', 11_000], ['flush']],
    expect: [firstA, { kind: 'still-failing', trigger: 'a', failures: 5, retries: 2, parked: 2, deadLettered: 1, lastReason: 'HTTP 503', lastStatus: 503, failingForMs: 10_000, intervalMs: 10_000 }],
  },
  {
    name: 'a late flush says how long its counts cover, and the next interval counts from that line',
    given: [['fail', 'a', {}, 2], ['at', 14_000], ['flush'], ['fail', 'a'], ['at', 20_000], ['flush'], ['at', 24_000], ['flush']],
    expect: [
      firstA,
      { kind: 'still-failing', trigger: 'a', ...noCounts, failures: 1, retries: 1, lastReason: REFUSED.reason, failingForMs: 14_000, intervalMs: 14_000 },
      { kind: 'still-failing', trigger: 'a', ...noCounts, failures: 1, retries: 1, lastReason: REFUSED.reason, failingForMs: 24_000, intervalMs: 10_000 },
    ],
  },
  {
    name: 'the last status is that of the last failure: absent when it was a network error',
    given: [['fail', 'a'], ['fail', 'a', UNAVAILABLE], ['fail', 'a', REFUSED], ['at', 10_000], ['flush']],
    expect: [firstA, { kind: 'still-failing', trigger: 'a', ...noCounts, failures: 2, retries: 2, lastReason: REFUSED.reason, failingForMs: 10_000, intervalMs: 10_000 }],
  },
  {
    name: 'a failing trigger with no failures since its last line emits nothing on flush, but is still failing until a success',
    given: [['fail', 'a'], ['at', 30_000], ['flush'], ['fail', 'a'], ['at', 35_000], ['succeed', 'a']],
    expect: [firstA, { kind: 'recovered', trigger: 'a', ...noCounts, failures: 1, retries: 1, failingForMs: 35_000 }],
  },
  {
    name: 'two triggers are summarised independently: one failing produces no lines for the other',
    given: [
      ['fail', 'a', {}, 50],
      ['succeed', 'b'],
      ['at', 3_000],
      ['fail', 'b', UNAVAILABLE],
      ['at', 10_000],
      ['flush'],
      ['fail', 'b', UNAVAILABLE, 4],
      ['succeed', 'a'],
      ['at', 12_999],
      ['flush'],
      ['at', 13_000],
      ['flush'],
    ],
    expect: [
      firstA,
      { kind: 'first-failure', trigger: 'b', ...UNAVAILABLE, outcome: 'retry' },
      { kind: 'still-failing', trigger: 'a', ...noCounts, failures: 49, retries: 49, lastReason: REFUSED.reason, failingForMs: 10_000, intervalMs: 10_000 },
      { kind: 'recovered', trigger: 'a', ...noCounts, failingForMs: 10_000 },
      { kind: 'still-failing', trigger: 'b', ...noCounts, failures: 4, retries: 4, lastReason: 'HTTP 503', lastStatus: 503, failingForMs: 10_000, intervalMs: 10_000 },
    ],
  },
  {
    name: 'recovery is logged once with the counts not yet reported; a failure after it is a first failure again',
    given: [
      ['fail', 'a', {}, 3],
      ['at', 10_000],
      ['flush'],
      ['fail', 'a', { outcome: 'parked' }, 2],
      ['at', 12_000],
      ['succeed', 'a'],
      ['succeed', 'a'],
      ['at', 20_000],
      ['flush'],
      ['fail', 'a', UNAVAILABLE],
      ['fail', 'a'],
      ['at', 25_000],
      ['flush'],
    ],
    expect: [
      firstA,
      { kind: 'still-failing', trigger: 'a', ...noCounts, failures: 2, retries: 2, lastReason: REFUSED.reason, failingForMs: 10_000, intervalMs: 10_000 },
      { kind: 'recovered', trigger: 'a', ...noCounts, failures: 2, parked: 2, failingForMs: 12_000 },
      { kind: 'first-failure', trigger: 'a', ...UNAVAILABLE, outcome: 'retry' },
    ],
  },
  { name: 'a success for a healthy trigger logs nothing', given: [['succeed', 'a'], ['at', 60_000], ['flush']], expect: [] },
  {
    name: 'forget drops a trigger’s state: no summary, no recovery, and its next failure is a first failure',
    given: [['fail', 'a', {}, 5], ['forget', 'a'], ['at', 10_000], ['flush'], ['succeed', 'a'], ['fail', 'a', UNAVAILABLE]],
    expect: [firstA, { kind: 'first-failure', trigger: 'a', ...UNAVAILABLE, outcome: 'retry' }],
  },
  {
    name: 'forget leaves other triggers alone',
    given: [['fail', 'a'], ['fail', 'b'], ['forget', 'a'], ['fail', 'b'], ['at', 10_000], ['flush']],
    expect: [firstA, firstB, { kind: 'still-failing', trigger: 'b', ...noCounts, failures: 1, retries: 1, lastReason: REFUSED.reason, failingForMs: 10_000, intervalMs: 10_000 }],
  },
];

describe('FailureSummary', () => {
  for (const c of cases) it(c.name, () => expect(run(c.given)).toEqual(c.expect));

  it('a flood of failures gives one first-failure line, then one still-failing line per interval however often flush runs', () => {
    let t = 0;
    const lines: SummaryLine[] = [];
    const summary = new FailureSummary({ intervalMs: INTERVAL, now: () => t, emit: (line) => lines.push(line) });
    // 100,000 failures in the first interval and 50,000 in the second, flushed every 100 ms; then quiet.
    for (t = 0; t <= 30_000; t += 100) {
      summary.flush();
      const perTick = t < 10_000 ? 1_000 : t < 20_000 ? 500 : 0;
      for (let j = 0; j < perTick; j++) {
        const outcome = j < perTick * 0.9 ? 'retry' : j < perTick * 0.99 ? 'parked' : 'dead_letter';
        summary.failed({ trigger: 'orders', ...(t < 5_000 ? REFUSED : UNAVAILABLE), outcome });
      }
    }
    t = 30_000;
    summary.succeeded('orders');

    expect(lines).toEqual([
      { kind: 'first-failure', trigger: 'orders', ...REFUSED, outcome: 'retry' },
      // The first failure was reported by the line above.
      {
        kind: 'still-failing',
        trigger: 'orders',
        failures: 99_999,
        retries: 89_999,
        parked: 9_000,
        deadLettered: 1_000,
        lastReason: 'HTTP 503',
        lastStatus: 503,
        failingForMs: 10_000,
        intervalMs: 10_000,
      },
      {
        kind: 'still-failing',
        trigger: 'orders',
        failures: 50_000,
        retries: 45_000,
        parked: 4_500,
        deadLettered: 500,
        lastReason: 'HTTP 503',
        lastStatus: 503,
        failingForMs: 20_000,
        intervalMs: 10_000,
      },
      { kind: 'recovered', trigger: 'orders', failures: 0, retries: 0, parked: 0, deadLettered: 0, failingForMs: 30_000 },
    ]);
  });

  it('refuses an interval that is not a number, which would silence every summary', () => {
    expect(() => new FailureSummary({ intervalMs: Number.NaN, emit: () => undefined })).toThrow(RangeError);
  });
});
