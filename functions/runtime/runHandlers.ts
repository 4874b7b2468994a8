import type { EventideEvent } from '../../api/v1alpha1/event.js';
import type { Logger } from '../../common/logger.js';
import { answerForBatch, answerForEvent, type EventOutcome, type HttpAnswer, outcomeOf } from './outcome.js';
import type { BatchHandler, EventHandler } from './settings.js';

/** What running handlers needs besides the events. */
export interface RunContext {
  handler: EventHandler;
  batchHandler: BatchHandler | undefined;
  logger: Logger;
  signal: AbortSignal;
  attempt: number | undefined;
}

function eventLogger(logger: Logger, event: EventideEvent, attempt: number | undefined): Logger {
  const bindings: Record<string, unknown> = { eventId: event.id, type: event.type, subject: event.subject };
  if (attempt !== undefined) bindings.attempt = attempt;
  return logger.child(bindings);
}

/** The one line per event: never the body, which may hold personal data. */
function logOutcome(logger: Logger, outcome: EventOutcome, durationMs: number, error?: unknown): void {
  const fields = { outcome: outcome.kind, durationMs };
  switch (outcome.kind) {
    case 'ok':
      logger.info(fields, 'event handled');
      return;
    case 'error':
      logger.error({ ...fields, err: error ?? outcome.reason }, 'event failed');
      return;
    case 'permanent':
      logger.warn({ ...fields, reason: outcome.reason }, 'event failed permanently');
      return;
    case 'retry_later':
      logger.warn({ ...fields, reason: outcome.reason, retryAfterSeconds: outcome.retryAfterSeconds }, 'event to be retried later');
  }
}

async function runOne(event: EventideEvent, run: RunContext): Promise<EventOutcome> {
  const logger = eventLogger(run.logger, event, run.attempt);
  const started = performance.now();
  let outcome: EventOutcome;
  let thrown: unknown;
  try {
    await run.handler(event, run.attempt === undefined ? { logger, signal: run.signal } : { logger, signal: run.signal, attempt: run.attempt });
    outcome = { kind: 'ok' };
  } catch (error) {
    thrown = error;
    outcome = outcomeOf(error);
  }
  logOutcome(logger, outcome, Math.round(performance.now() - started), thrown);
  return outcome;
}

/** Runs the handler on one event and says how to answer. */
export async function runEvent(event: EventideEvent, run: RunContext): Promise<HttpAnswer> {
  return answerForEvent(await runOne(event, run));
}

/**
 * Runs a batch, with the batch handler when there is one, else the handler on each event in order.
 * Per event, once an event fails the later events with the same subject (the same row) are not
 * attempted but reported failed, so the retry cannot apply that row's changes out of commit order.
 */
export async function runBatch(events: EventideEvent[], run: RunContext): Promise<HttpAnswer> {
  if (run.batchHandler) return runWithBatchHandler(events, run.batchHandler, run);
  const results: { id: string; outcome: EventOutcome }[] = [];
  const failedSubjects = new Set<string>();
  for (const event of events) {
    let outcome: EventOutcome;
    if (run.signal.aborted) {
      outcome = { kind: 'error', reason: 'not attempted: the request was aborted' };
    } else if (failedSubjects.has(event.subject)) {
      outcome = { kind: 'error', reason: 'not attempted: an earlier event for the same subject failed in this batch' };
      eventLogger(run.logger, event, run.attempt).warn({ outcome: outcome.kind, durationMs: 0, reason: outcome.reason }, 'event skipped');
    } else {
      outcome = await runOne(event, run);
    }
    if (outcome.kind !== 'ok') failedSubjects.add(event.subject);
    results.push({ id: event.id, outcome });
  }
  return answerForBatch(results);
}

async function runWithBatchHandler(events: EventideEvent[], batchHandler: BatchHandler, run: RunContext): Promise<HttpAnswer> {
  const logger = run.logger.child(run.attempt === undefined ? { batchSize: events.length } : { batchSize: events.length, attempt: run.attempt });
  const started = performance.now();
  let outcomes: Map<string, EventOutcome>;
  let thrown: unknown;
  try {
    const response = await batchHandler(events, run.attempt === undefined ? { logger, signal: run.signal } : { logger, signal: run.signal, attempt: run.attempt });
    outcomes = new Map(events.map((e) => [e.id, { kind: 'ok' }]));
    for (const failure of response?.failures ?? []) {
      if (!outcomes.has(failure.id)) {
        logger.warn({ failedId: failure.id }, 'batch handler reported a failure for an id not in the batch; ignored');
        continue;
      }
      outcomes.set(failure.id, { kind: 'error', reason: failure.reason ?? 'reported failed by the batch handler' });
    }
  } catch (error) {
    thrown = error;
    const outcome = outcomeOf(error);
    outcomes = new Map(events.map((e) => [e.id, outcome]));
  }
  const durationMs = Math.round(performance.now() - started);
  const results = events.map((event) => {
    const outcome = outcomes.get(event.id) ?? { kind: 'ok' };
    logOutcome(eventLogger(run.logger, event, run.attempt), outcome, durationMs, thrown);
    return { id: event.id, outcome };
  });
  return answerForBatch(results);
}
