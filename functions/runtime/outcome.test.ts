import { describe, expect, it } from 'vitest';
import { PermanentError, RetryLaterError } from './errors.js';
import { answerForBatch, answerForEvent, type EventOutcome, type HttpAnswer, outcomeOf } from './outcome.js';

const ok: EventOutcome = { kind: 'ok' };
const failed: EventOutcome = { kind: 'error', reason: 'db down' };
const permanent: EventOutcome = { kind: 'permanent', reason: 'no such order' };
const later = (s: number): EventOutcome => ({ kind: 'retry_later', reason: 'busy', retryAfterSeconds: s });

describe('outcomeOf', () => {
  const cases: { name: string; given: unknown; expect: EventOutcome }[] = [
    { name: 'a plain error is retried', given: new Error('boom'), expect: { kind: 'error', reason: 'boom' } },
    { name: 'a thrown string is retried', given: 'boom', expect: { kind: 'error', reason: 'boom' } },
    { name: 'a PermanentError is permanent', given: new PermanentError('bad'), expect: { kind: 'permanent', reason: 'bad' } },
    { name: 'a RetryLaterError keeps its delay, rounded up', given: new RetryLaterError(2.2), expect: { kind: 'retry_later', reason: 'retry after 2.2s', retryAfterSeconds: 3 } },
    { name: 'a PermanentError from another copy of the module counts by its code', given: Object.assign(new Error('x'), { code: 'EVENTIDE_PERMANENT' }), expect: { kind: 'permanent', reason: 'x' } },
  ];
  for (const c of cases) it(c.name, () => expect(outcomeOf(c.given)).toStrictEqual(c.expect));
});

describe('answerForEvent', () => {
  const cases: { name: string; given: EventOutcome; expect: HttpAnswer }[] = [
    { name: 'success is 200 with no body', given: ok, expect: { status: 200 } },
    { name: 'a failure is 500, retried', given: failed, expect: { status: 500, body: { error: { code: 'EVENTIDE_HANDLER_FAILED', message: 'db down' } } } },
    { name: 'a permanent failure is 422, not retried', given: permanent, expect: { status: 422, body: { error: { code: 'EVENTIDE_PERMANENT', message: 'no such order' } } } },
    { name: 'retry later is 503 with Retry-After', given: later(30), expect: { status: 503, retryAfterSeconds: 30, body: { error: { code: 'EVENTIDE_RETRY_LATER', message: 'busy' } } } },
  ];
  for (const c of cases) it(c.name, () => expect(answerForEvent(c.given)).toStrictEqual(c.expect));
});

describe('answerForBatch', () => {
  const cases: { name: string; given: EventOutcome[]; expect: { status: number; retryAfterSeconds?: number; failed: string[] } }[] = [
    { name: 'an empty batch is 200 with no failures', given: [], expect: { status: 200, failed: [] } },
    { name: 'all delivered is 200 with no failures', given: [ok, ok], expect: { status: 200, failed: [] } },
    { name: 'a partial failure is 200 listing only the failed ids', given: [ok, failed, ok], expect: { status: 200, failed: ['e1'] } },
    { name: 'a permanent item among successes is listed, so its retry alone answers 422', given: [permanent, ok], expect: { status: 200, failed: ['e0'] } },
    { name: 'Retry-After is advisory on a partial failure', given: [ok, later(5)], expect: { status: 200, retryAfterSeconds: 5, failed: ['e1'] } },
    { name: 'all failed with any plain failure is 500', given: [permanent, failed, later(5)], expect: { status: 500, failed: ['e0', 'e1', 'e2'] } },
    {
      name: 'all failed, some asking to retry later, is 503 with the largest delay',
      given: [later(5), permanent, later(9)],
      expect: { status: 503, retryAfterSeconds: 9, failed: ['e0', 'e1', 'e2'] },
    },
    { name: 'all permanent is 422, so none is retried', given: [permanent, permanent], expect: { status: 422, failed: ['e0', 'e1'] } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const answer = answerForBatch(c.given.map((outcome, i) => ({ id: `e${i}`, outcome })));
      const failures = (answer.body as { failures: { id: string }[] }).failures.map((f) => f.id);
      const got: { status: number; retryAfterSeconds?: number; failed: string[] } = { status: answer.status, failed: failures };
      if (answer.retryAfterSeconds !== undefined) got.retryAfterSeconds = answer.retryAfterSeconds;
      expect(got).toStrictEqual(c.expect);
    });
  }
});
