import type { EventTriggerResource } from '../../api/v1alpha1/index.js';
import type { Logger } from '../../common/logger.js';
import type { DeadLetter, DeadLetterStore } from '../deadletters/store.js';
import type { FailureSummary } from '../delivery/failureSummary.js';
import type { HttpSender, SendResult } from '../delivery/httpSender.js';
import { batchItemFailedError, buildRequest, failedBatchItems, structuredEventJson } from '../delivery/requestBody.js';
import { decideAfterFailure, type RetryConfig } from '../delivery/retryRules.js';
import { signPayload, webhookMessageId } from '../delivery/signing.js';
import type { DispatcherMetrics } from '../metrics.js';
import { type FunctionActivations, HOLD_RETRY_MS } from './functionActivation.js';
import type { PendingEvent } from './pendingEvent.js';
import type { AttemptOutcome, LaneEntry } from './triggerLane.js';

/** Everything one trigger's deliveries need, resolved at (re)load. */
export interface TriggerDelivery {
  key: string;
  trigger: EventTriggerResource;
  url: string;
  /** The Function (`namespace/name`) the events go to; none for a sink. */
  functionKey?: string;
  retry: RetryConfig;
  signingSecret?: string;
  deadLetterSinkUrl?: string;
}

export interface DeliveryDeps {
  sender: HttpSender;
  deadLetters: DeadLetterStore;
  metrics: DispatcherMetrics;
  logger: Logger;
  /** Turns failures into a few log lines per trigger; without it nothing is logged per failed attempt. */
  failures?: FailureSummary;
  now?: () => number;
  /** Aborted when the dispatcher stops: dead-letter sink notifications still running give up. */
  notifySignal?: AbortSignal;
  /** Functions that refuse connections: their events wait for a ready pod instead of spending retries. */
  activations?: FunctionActivations;
}

const HELD_REASON = 'the function has no ready endpoints (connection refused): waiting for a pod to become ready';

const DELIVERED: AttemptOutcome = { kind: 'settled' };
const DEAD_LETTERED: AttemptOutcome = { kind: 'settled', deadLettered: true };

/**
 * Makes one attempt at a batch for a trigger and turns the answer into per-event outcomes: settled
 * (delivered, or recorded as a dead letter), or retry after a delay.
 */
export async function attemptDelivery(target: TriggerDelivery, entries: LaneEntry<PendingEvent>[], signal: AbortSignal, deps: DeliveryDeps): Promise<Map<string, AttemptOutcome>> {
  const now = deps.now ?? Date.now;
  const outcomes = new Map<string, AttemptOutcome>();
  // Per-attempt detail is a debug line (an outage at info level is a few summary lines, see FailureSummary);
  // a child logger costs more than a delivery, so it is made only when such a line is written.
  const detail = deps.logger.isLevelEnabled('debug');
  let log: Logger | undefined;

  // Events whose filter could not be evaluated are never sent: they go to the dead letters with the reason.
  let sendable = entries;
  if (entries.some((e) => e.event.filterError)) {
    const unfiltered = entries.filter((e) => e.event.filterError);
    await deadLetter(
      target,
      unfiltered.map((entry) => ({ entry, result: { error: entry.event.filterError!, durationMs: 0 }, reason: 'filter-error' })),
      deps,
    );
    for (const e of unfiltered) outcomes.set(e.event.id, DEAD_LETTERED);
    sendable = entries.filter((e) => !e.event.filterError);
    if (sendable.length === 0) return outcomes;
  }

  const outgoing = buildRequest(target.trigger.spec, target.trigger.metadata.name, sendable);
  if (target.signingSecret) Object.assign(outgoing.headers, signPayload(target.signingSecret, webhookMessageId(sendable.map((e) => e.event.id)), outgoing.body, now()));
  const result = await deps.sender.send(target.url, outgoing, target.retry.timeoutMs, signal);
  const ok = result.status !== undefined && result.status >= 200 && result.status < 300;
  // An attempt cut off by the dispatcher's own shutdown says nothing about the function: it counts
  // against neither retries nor maxEventAge, is never dead-lettered, and is sent again after the restart.
  if (signal.aborted && !ok) {
    for (const e of sendable) outcomes.set(e.event.id, { kind: 'retry', delayMs: 0 });
    return outcomes;
  }
  // A Function that refuses connections has no ready pod (scaled to zero, a rollout): its events wait
  // for one, uncounted, until its activation timeout; any HTTP answer means it has endpoints again.
  if (target.functionKey !== undefined && deps.activations) {
    if (result.refused && deps.activations.refused(target.functionKey) === 'hold') {
      deps.metrics.deliveries.inc({ trigger: target.key, outcome: 'held' }, sendable.length);
      for (const e of sendable) outcomes.set(e.event.id, { kind: 'retry', delayMs: HOLD_RETRY_MS, reason: HELD_REASON, held: true });
      return outcomes;
    }
    if (result.status !== undefined) deps.activations.answered(target.functionKey);
  }
  deps.metrics.attemptDuration.observe({ trigger: target.key }, result.durationMs / 1000);

  const failedIds = ok && target.trigger.spec.batch.maxSize > 1 ? failedBatchItems(result.body) : new Map<string, string | undefined>();
  const toDeadLetter: { entry: LaneEntry<PendingEvent>; result: SendResult; reason: string }[] = [];
  let delivered = 0;
  const deliveredAt = now();
  const latency = deps.metrics.endToEndLatency.labels({ trigger: target.key });
  for (const entry of sendable) {
    const attempts = entry.attempts + 1;
    if (ok && !failedIds.has(entry.event.id)) {
      outcomes.set(entry.event.id, DELIVERED);
      delivered += 1;
      latency.observe(Math.max(0, deliveredAt - entry.event.commitTimeMs) / 1000);
      continue;
    }
    const itemReason = failedIds.get(entry.event.id);
    const itemResult: SendResult = ok ? { ...result, error: batchItemFailedError(itemReason) } : result;
    const decision = decideAfterFailure(target.retry, {
      attempts,
      ...(ok ? {} : result.status !== undefined ? { status: result.status } : {}),
      ...(result.retryAfter ? { retryAfter: result.retryAfter } : {}),
      commitTimeMs: entry.event.commitTimeMs,
      now: now(),
    });
    if (detail) {
      log ??= deps.logger.child({ trigger: target.key });
      log.debug(
        { eventId: entry.event.id, attempt: attempts, status: itemResult.status, reason: itemResult.error, next: decision.action === 'retry' ? `retry in ${decision.delayMs}ms` : decision.reason },
        'delivery attempt failed',
      );
    }
    if (decision.action === 'retry') {
      deps.metrics.deliveries.inc({ trigger: target.key, outcome: 'retry' });
      deps.metrics.retries.inc({ trigger: target.key });
      outcomes.set(entry.event.id, {
        kind: 'retry',
        delayMs: decision.delayMs,
        reason: itemResult.error ?? 'unknown error',
        ...(itemResult.status !== undefined ? { status: itemResult.status } : {}),
      });
    } else {
      toDeadLetter.push({ entry, result: itemResult, reason: decision.reason });
    }
  }
  if (delivered) {
    deps.metrics.deliveries.inc({ trigger: target.key, outcome: 'success' }, delivered);
    deps.failures?.succeeded(target.key);
  }
  if (toDeadLetter.length) {
    await deadLetter(target, toDeadLetter, deps);
    for (const { entry } of toDeadLetter) outcomes.set(entry.event.id, DEAD_LETTERED);
  }
  return outcomes;
}

/** Records dead letters (the table first: it is the record users rely on), then tells the dead-letter sink. */
async function deadLetter(target: TriggerDelivery, items: { entry: LaneEntry<PendingEvent>; result: SendResult; reason: string }[], deps: DeliveryDeps): Promise<void> {
  const letters: DeadLetter[] = items.map(({ entry, result, reason }) => ({
    trigger: target.key,
    eventId: entry.event.id,
    eventJson: structuredEventJson(entry.event),
    attempts: reason === 'filter-error' ? 0 : entry.attempts + 1,
    lastStatus: result.status ?? null,
    lastError: result.error ?? 'unknown error',
    reason,
    firstAttemptAt: new Date(entry.firstAttemptAt ?? Date.now()),
  }));
  await deps.deadLetters.record(letters);
  for (const letter of letters) {
    deps.metrics.deliveries.inc({ trigger: target.key, outcome: 'dead_letter' });
    deps.metrics.deadLetters.inc({ trigger: target.key, reason: letter.reason });
    deps.failures?.failed({ trigger: target.key, reason: `${letter.reason}: ${letter.lastError}`, ...(letter.lastStatus !== null ? { status: letter.lastStatus } : {}), outcome: 'dead_letter' });
    deps.logger.debug({ trigger: target.key, eventId: letter.eventId, attempts: letter.attempts, reason: letter.reason, lastError: letter.lastError }, 'event dead-lettered');
  }
  if (target.deadLetterSinkUrl) notifyInBackground(target.deadLetterSinkUrl, letters, deps, target.signingSecret);
}

/** Dead letters whose sink notification is still under way (in this process), and the most there may be. */
let pendingNotifications = 0;
const MAX_PENDING_NOTIFICATIONS = 1000;

/**
 * The dead-letter sink is told in the background: the event is settled once the table holds it, so a
 * slow or hung sink holds back neither the event's key nor the dispatcher's shutdown. Past
 * MAX_PENDING_NOTIFICATIONS (a sink that stopped answering) further notifications are skipped, with a warning.
 */
function notifyInBackground(url: string, letters: DeadLetter[], deps: DeliveryDeps, signingSecret: string | undefined): void {
  if (pendingNotifications + letters.length > MAX_PENDING_NOTIFICATIONS) {
    deps.logger.warn(
      { url: withoutCredentials(url), eventIds: letters.map((l) => l.eventId), pending: pendingNotifications },
      'dead-letter sink is behind; not notified of these dead letters (the table has them)',
    );
    return;
  }
  pendingNotifications += letters.length;
  notifyDeadLetterSink(url, letters, deps, signingSecret)
    .catch((error: unknown) => deps.logger.warn({ url: withoutCredentials(url), err: (error as Error).message }, 'dead-letter sink notification failed'))
    .finally(() => (pendingNotifications -= letters.length));
}

/**
 * Best effort: the table already holds the dead letter, so a sink outage costs nothing but the
 * notification. Signed like the trigger's events when the trigger has a signing secret.
 */
async function notifyDeadLetterSink(url: string, letters: DeadLetter[], deps: DeliveryDeps, signingSecret: string | undefined): Promise<void> {
  for (const letter of letters) {
    if (deps.notifySignal?.aborted) return;
    const body =
      `{"specversion":"1.0","id":${JSON.stringify(`dl-${letter.eventId}`)},"source":${JSON.stringify(`/eventide/${letter.trigger}`)},` +
      `"type":"dev.eventide.deadletter","time":${JSON.stringify(new Date().toISOString())},"datacontenttype":"application/json",` +
      `"data":{"trigger":${JSON.stringify(letter.trigger)},"attempts":${letter.attempts},"lastStatus":${letter.lastStatus ?? 'null'},` +
      `"lastError":${JSON.stringify(letter.lastError)},"reason":${JSON.stringify(letter.reason)},"event":${letter.eventJson}}}`;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const headers: Record<string, string> = { 'content-type': 'application/cloudevents+json; charset=utf-8' };
      if (signingSecret) Object.assign(headers, signPayload(signingSecret, `dl-${letter.eventId}`, body));
      const result = await deps.sender.send(url, { headers, body }, 10_000, deps.notifySignal);
      if (!result.error || deps.notifySignal?.aborted) break;
      deps.logger.warn({ url: withoutCredentials(url), eventId: letter.eventId, attempt, reason: result.error }, 'dead-letter sink did not accept the dead letter');
      if (attempt < 3) await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/** A URL for logs: credentials in it (sent as Basic authorization) are not printed. */
function withoutCredentials(url: string): string {
  return url.replace(/^(https?:\/\/)[^/@]*@/i, '$1***@');
}
