import { describe, expect, it } from 'vitest';
import type { BackfillStatusT } from '../../api/v1alpha1/index.js';
import type { BackfillStateReport, DispatcherStateReport } from '../../common/dispatcherState.js';
import type { DispatcherReading } from '../eventtrigger/serving.js';
import { type BackfillStatusInput, backfillEvent, decideBackfillStatus, progressOf } from './status.js';

const KEY = 'shop/orders-2024';
const UID = 'uid-1';
const NOW = '2026-12-02T10:00:00Z';
const EARLIER = '2026-12-02T09:00:00Z';
const DISPATCHER = 'eventide-dispatcher-orders-db-1234abcd';

function reading(backfills: Record<string, BackfillStateReport> | undefined): DispatcherReading {
  const report: DispatcherStateReport = {
    source: { slot: 's', publication: 's', phase: 'streaming', connected: true, lagBytes: 0 },
    configFingerprint: 'f',
    triggers: {},
    functions: {},
    ...(backfills ? { backfills } : {}),
  };
  return { report, at: 0 };
}

const entry = (fields: Partial<BackfillStateReport> = {}): BackfillStateReport => ({ trigger: 'shop/new-order', uid: UID, phase: 'Running', rowsRead: 0, rowsSent: 0, ...fields });
const running = (fields: Partial<BackfillStateReport> = {}) => reading({ [KEY]: entry(fields) });
const found = { dispatcher: DISPATCHER };
const missing = { problem: { reason: 'TriggerNotFound', message: 'EventTrigger "new-order" not found in namespace "shop"' } };

function decide(input: Partial<BackfillStatusInput>): BackfillStatusT {
  return decideBackfillStatus({ key: KEY, uid: UID, generation: 3, now: NOW, ...input });
}

const condition = (status: BackfillStatusT, type: string) => status.conditions?.find((c) => c.type === type);

describe("a Backfill's status from its trigger and its dispatcher's /state", () => {
  const cases: { name: string; given: Partial<BackfillStatusInput>; expect: { fields: Partial<BackfillStatusT>; accepted: object; complete: object } }[] = [
    {
      name: 'a trigger that does not exist: Accepted=False TriggerNotFound naming it, phase Pending, no dispatcher',
      given: { trigger: missing },
      expect: {
        fields: { phase: 'Pending', message: 'EventTrigger "new-order" not found in namespace "shop"', dispatcher: undefined, progress: undefined },
        accepted: { status: 'False', reason: 'TriggerNotFound', message: 'EventTrigger "new-order" not found in namespace "shop"' },
        complete: { status: 'False', reason: 'Pending' },
      },
    },
    {
      name: 'a dispatcher not read yet: Accepted=Unknown DispatcherPending, phase Pending, the dispatcher named',
      given: { trigger: found },
      expect: {
        fields: { phase: 'Pending', dispatcher: DISPATCHER },
        accepted: { status: 'Unknown', reason: 'DispatcherPending', message: `waiting for dispatcher ${DISPATCHER} to report this backfill` },
        complete: { status: 'False', reason: 'Pending' },
      },
    },
    {
      name: 'a dispatcher that has not loaded it yet: DispatcherPending, Pending',
      given: { trigger: found, reading: reading({}) },
      expect: { fields: { phase: 'Pending' }, accepted: { status: 'Unknown', reason: 'DispatcherPending' }, complete: { status: 'False', reason: 'Pending' } },
    },
    {
      name: 'an entry of an older Backfill with the same name (another uid) is not trusted',
      given: { trigger: found, reading: reading({ [KEY]: entry({ uid: 'uid-0', phase: 'Complete', rowsRead: 10 }) }) },
      expect: {
        fields: { phase: 'Pending', rowsRead: undefined, progress: undefined },
        accepted: { status: 'Unknown', reason: 'DispatcherPending', message: `dispatcher ${DISPATCHER} reports an older Backfill of this name; waiting for it to load this one` },
        complete: { status: 'False', reason: 'Pending' },
      },
    },
    {
      name: "an entry without a uid (started by the CLI) is not this resource's",
      given: { trigger: found, reading: reading({ [KEY]: { trigger: 'shop/new-order', phase: 'Running', rowsRead: 5, rowsSent: 5 } }) },
      expect: { fields: { phase: 'Pending', rowsRead: undefined }, accepted: { status: 'Unknown', reason: 'DispatcherPending' }, complete: { status: 'False', reason: 'Pending' } },
    },
    {
      name: "running: mirrors the counts, the cursor and the dispatcher's message; progress rounded down",
      given: { trigger: found, reading: running({ rowsRead: 419, rowsSent: 400, rowsEstimate: 1000, cursor: '419', startTime: EARLIER, message: 'reading chunk 5' }) },
      expect: {
        fields: {
          phase: 'Running',
          rowsRead: 419,
          rowsSent: 400,
          rowsEstimate: 1000,
          progress: '41%',
          cursor: '419',
          startTime: EARLIER,
          message: 'reading chunk 5',
          dispatcher: DISPATCHER,
          observedGeneration: 3,
        },
        accepted: { status: 'True', reason: 'Accepted', message: `dispatcher ${DISPATCHER} runs this backfill` },
        complete: { status: 'False', reason: 'Running', message: 'reading chunk 5' },
      },
    },
    {
      name: 'more rows read than the planner estimated: progress capped at 100%',
      given: { trigger: found, reading: running({ rowsRead: 1500, rowsEstimate: 1000 }) },
      expect: { fields: { phase: 'Running', progress: '100%' }, accepted: { status: 'True' }, complete: { status: 'False', reason: 'Running', message: 'reading the table' } },
    },
    {
      name: 'complete: Complete=True, 100% whatever the estimate said',
      given: { trigger: found, reading: running({ phase: 'Complete', rowsRead: 990, rowsSent: 12, rowsEstimate: 1000, completionTime: NOW }) },
      expect: {
        fields: { phase: 'Complete', progress: '100%', completionTime: NOW },
        accepted: { status: 'True', reason: 'Accepted' },
        complete: { status: 'True', reason: 'Complete', message: 'every row was read and settled (990 read, 12 sent)' },
      },
    },
    {
      name: "failed: Complete=False reason Failed with the dispatcher's message",
      given: { trigger: found, reading: running({ phase: 'Failed', rowsRead: 10, message: 'table public.orders has no primary key' }) },
      expect: {
        fields: { phase: 'Failed', message: 'table public.orders has no primary key' },
        accepted: { status: 'True' },
        complete: { status: 'False', reason: 'Failed', message: 'table public.orders has no primary key' },
      },
    },
    {
      name: 'cancelled: Complete=False reason Cancelled',
      given: { trigger: found, reading: running({ phase: 'Cancelled', rowsRead: 10 }) },
      expect: { fields: { phase: 'Cancelled' }, accepted: { status: 'True' }, complete: { status: 'False', reason: 'Cancelled', message: 'the backfill was cancelled' } },
    },
    {
      name: 'no estimate: no progress while it runs',
      given: { trigger: found, reading: running({ rowsRead: 10 }) },
      expect: { fields: { phase: 'Running', progress: undefined }, accepted: { status: 'True' }, complete: { status: 'False', reason: 'Running' } },
    },
    {
      name: 'an invalid spec: Accepted=False InvalidSpec with the problems, Pending',
      given: { invalidSpec: 'spec.filter: unexpected end of input', trigger: found, reading: running({ rowsRead: 10 }) },
      expect: {
        fields: { phase: 'Pending', dispatcher: undefined, rowsRead: undefined, message: 'spec.filter: unexpected end of input' },
        accepted: { status: 'False', reason: 'InvalidSpec', message: 'spec.filter: unexpected end of input' },
        complete: { status: 'False', reason: 'Pending' },
      },
    },
  ];

  it.each(cases)('$name', ({ given, expect: expected }) => {
    const status = decide(given);
    for (const [field, value] of Object.entries(expected.fields)) expect(status[field as keyof BackfillStatusT], field).toEqual(value);
    expect(condition(status, 'Accepted')).toMatchObject({ ...expected.accepted, observedGeneration: 3, lastTransitionTime: NOW });
    expect(condition(status, 'Complete')).toMatchObject(expected.complete);
    expect(status.conditions?.map((c) => c.type)).toEqual(['Accepted', 'Complete']);
  });
});

describe('when the dispatcher says nothing new', () => {
  const wasRunning = decide({ trigger: found, reading: running({ rowsRead: 500, rowsSent: 500, rowsEstimate: 1000, cursor: '500', message: 'reading' }), now: EARLIER });

  it('an unreachable dispatcher keeps the last progress and says why it is not current', () => {
    const status = decide({ previous: wasRunning, trigger: found, reading: { error: 'ECONNREFUSED', at: 0 } });
    expect(status).toMatchObject({ phase: 'Running', rowsRead: 500, progress: '50%', cursor: '500', message: 'reading', dispatcher: DISPATCHER });
    expect(condition(status, 'Accepted')).toMatchObject({
      status: 'Unknown',
      reason: 'DispatcherPending',
      message: `cannot read the state of dispatcher ${DISPATCHER}: ECONNREFUSED`,
      lastTransitionTime: NOW,
    });
    // Complete did not flip: its transition time stays.
    expect(condition(status, 'Complete')).toMatchObject({ status: 'False', reason: 'Running', lastTransitionTime: EARLIER });
  });

  it('a trigger deleted under a running backfill: Pending again (its dispatcher cancels it), the rows read so far kept', () => {
    const status = decide({ previous: wasRunning, trigger: missing });
    expect(status).toMatchObject({ phase: 'Pending', rowsRead: 500, message: 'EventTrigger "new-order" not found in namespace "shop"' });
    expect(status.dispatcher).toBeUndefined();
    expect(condition(status, 'Complete')).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('a complete backfill stays Complete when its trigger goes later', () => {
    const complete = decide({ trigger: found, reading: running({ phase: 'Complete', rowsRead: 7, rowsSent: 7 }), now: EARLIER });
    const status = decide({ previous: complete, trigger: missing });
    expect(status).toMatchObject({ phase: 'Complete', progress: '100%', rowsRead: 7 });
    expect(condition(status, 'Accepted')).toMatchObject({ status: 'False', reason: 'TriggerNotFound' });
    expect(condition(status, 'Complete')).toMatchObject({ status: 'True', lastTransitionTime: EARLIER });
  });

  it('the same report twice gives the same status (nothing to write)', () => {
    const input = { trigger: found, reading: running({ rowsRead: 5, rowsEstimate: 10 }) };
    const first = decide({ ...input, now: EARLIER });
    expect(decide({ ...input, previous: first })).toEqual(first);
  });
});

describe('progress', () => {
  it.each([
    ['nothing read of 1000', 'Running', 0, 1000, '0%'],
    ['42.9% rounds down', 'Running', 429, 1000, '42%'],
    ['999 of 1000 is not yet 100%', 'Running', 999, 1000, '99%'],
    ['past the estimate, capped', 'Running', 2000, 1000, '100%'],
    ['an empty table, complete', 'Complete', 0, 0, '100%'],
    ['an empty table estimate while running: unknown', 'Running', 0, 0, undefined],
    ['no estimate yet', 'Pending', undefined, undefined, undefined],
  ] as const)('%s', (_name, phase, read, estimate, expected) => {
    expect(progressOf(phase, read, estimate)).toBe(expected);
  });
});

describe('Events on a Backfill', () => {
  it.each([
    ['completing: Normal Completed with the counts', 'Running', { phase: 'Complete', rowsRead: 10, rowsSent: 4 }, { type: 'Normal', reason: 'Completed', message: 'read 10 rows, sent 4 as events' }],
    ["failing: Warning Failed with the dispatcher's message", 'Running', { phase: 'Failed', message: 'boom' }, { type: 'Warning', reason: 'Failed', message: 'boom' }],
    ['complete from the start (a fast backfill never seen running)', undefined, { phase: 'Complete', rowsRead: 0, rowsSent: 0 }, { type: 'Normal', reason: 'Completed' }],
    ['still complete: nothing', 'Complete', { phase: 'Complete' }, undefined],
    ['running: nothing', 'Pending', { phase: 'Running' }, undefined],
    ['cancelled: nothing', 'Running', { phase: 'Cancelled' }, undefined],
  ] as const)('%s', (_name, previous, next, expected) => {
    const event = backfillEvent(previous, next as BackfillStatusT);
    if (expected === undefined) expect(event).toBeUndefined();
    else expect(event).toMatchObject(expected);
  });
});
