import type { HttpSender } from '../delivery/httpSender.js';
import { batchItemFailedError, buildRequest, failedBatchItems } from '../delivery/requestBody.js';
import { signPayload } from '../delivery/signing.js';
import type { TriggerDelivery } from '../pipeline/deliveryAttempt.js';
import type { PendingEvent } from '../pipeline/pendingEvent.js';
import { eventFromStored } from '../pipeline/storedEvent.js';
import type { DeadLetterStore, StoredDeadLetter } from './store.js';

/** What a replay did, item by item. */
export interface ReplayReport {
  replayed: { id: number; eventId: string; trigger: string }[];
  failed: { id: number; eventId: string; trigger: string; reason: string }[];
}

/** A dead letter as the event it was: the letter's id is its own, so ordering by key does not apply to replays. */
function storedEvent(letter: StoredDeadLetter): PendingEvent {
  return eventFromStored({ trigger: letter.trigger, attributesJson: letter.attributesJson, dataJson: letter.dataJson, oldJson: letter.oldJson, newJson: letter.newJson });
}

/**
 * Replays dead letters once each, in id order, to their trigger's current destination. Successes
 * are marked replayed (the row stays as a record); failures stay pending with the reason reported.
 */
export async function replayDeadLetters(store: DeadLetterStore, letters: StoredDeadLetter[], targets: ReadonlyMap<string, TriggerDelivery>, sender: HttpSender): Promise<ReplayReport> {
  const report: ReplayReport = { replayed: [], failed: [] };
  for (const letter of letters) {
    const item = { id: letter.id, eventId: letter.eventId, trigger: letter.trigger };
    const target = targets.get(letter.trigger);
    if (!target) {
      report.failed.push({ ...item, reason: `EventTrigger ${letter.trigger} is not in the given manifests` });
      continue;
    }
    const event = storedEvent(letter);
    const request = buildRequest(target.trigger.spec, target.trigger.metadata.name, [{ event, attempts: letter.attempts }]);
    if (target.signingSecret) Object.assign(request.headers, signPayload(target.signingSecret, event.id, request.body));
    const result = await sender.send(target.url, request, target.retry.timeoutMs);
    // A batch trigger sends a batch of one: a 2xx that names the item as failed is no acceptance.
    const itemFailure = !result.error && target.trigger.spec.batch.maxSize > 1 ? failedBatchItems(result.body) : undefined;
    if (result.error) report.failed.push({ ...item, reason: result.error });
    else if (itemFailure?.has(event.id)) report.failed.push({ ...item, reason: batchItemFailedError(itemFailure.get(event.id)) });
    else {
      await store.markReplayed([letter.id]);
      report.replayed.push(item);
    }
  }
  return report;
}
