import { ATTEMPT_HEADER, type BatchResponse, type EventAttributes, type EventTriggerSpecT } from '../../api/v1alpha1/index.js';
import type { PendingEvent } from '../pipeline/pendingEvent.js';
import { eventUuid } from './eventIds.js';

/** An HTTP request ready to send. */
export interface OutgoingRequest {
  headers: Record<string, string>;
  body: string;
}

/** The structured CloudEvent JSON of an event, built by concatenation so row values keep their digits. */
export function structuredEventJson(event: PendingEvent): string {
  const a = event.attributes;
  // JSON.stringify(attributes) with its fixed members written out: it ran for every event of every batch.
  return (
    `{"specversion":"1.0","id":${JSON.stringify(a.id)},"source":${JSON.stringify(a.source)},"type":"${a.type}",` +
    `"subject":${JSON.stringify(a.subject)},"time":${JSON.stringify(a.time)},"datacontenttype":"application/json","data":${event.dataJson}}`
  );
}

// Hasura has no op for a backfilled row; MANUAL (its "invoke") is the nearest: the row as it is now, not a change.
const HASURA_OPS = { insert: 'INSERT', update: 'UPDATE', delete: 'DELETE', truncate: 'TRUNCATE', manual: 'MANUAL', read: 'MANUAL' } as const;

/** Hasura's event-trigger payload, so handlers written for Hasura move over unchanged (its id a UUID, as Hasura's). */
export function hasuraEventJson(event: PendingEvent, triggerName: string, maxRetries: number, currentRetry: number): string {
  return (
    `{"event":{"session_variables":null,"op":"${HASURA_OPS[event.op]}","data":{"old":${event.oldJson ?? 'null'},"new":${event.newJson ?? 'null'}},"trace_context":null},` +
    `"created_at":${JSON.stringify(event.attributes.time)},"id":"${eventUuid(event.id)}",` +
    `"delivery_info":{"max_retries":${maxRetries},"current_retry":${currentRetry}},` +
    `"trigger":{"name":${JSON.stringify(triggerName)}},"table":${JSON.stringify(event.table)}}`
  );
}

/** The header numbering delivery attempts from 1, so a function can tell a first delivery from a retry. */

/** Builds the request for one event or a batch, in the trigger's format, with the attempt number. Pure. */
export function buildRequest(spec: Pick<EventTriggerSpecT, 'format' | 'batch' | 'delivery'>, triggerName: string, events: { event: PendingEvent; attempts: number }[]): OutgoingRequest {
  const request = buildBody(spec, triggerName, events);
  let attempts = 0;
  for (const e of events) if (e.attempts > attempts) attempts = e.attempts;
  request.headers[ATTEMPT_HEADER] = String(attempts + 1);
  return request;
}

/**
 * A binary-mode attribute as a header value: space, '"', '%' and everything outside printable ASCII
 * percent-encoded as UTF-8 (CloudEvents HTTP binding §3.1.3.2). A subject carries the primary key,
 * which may hold any text; sent raw, a non-ASCII key made the header invalid and the event undeliverable.
 */
function ceHeader(value: string): string {
  return /^[\x21\x23\x24\x26-\x7e]*$/.test(value) ? value : value.replace(/[^\x21\x23\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
}

function buildBody(spec: Pick<EventTriggerSpecT, 'format' | 'batch' | 'delivery'>, triggerName: string, events: { event: PendingEvent; attempts: number }[]): OutgoingRequest {
  if (spec.batch.maxSize > 1) {
    return {
      headers: { 'content-type': 'application/cloudevents-batch+json; charset=utf-8' },
      body: `[${events.map((e) => structuredEventJson(e.event)).join(',')}]`,
    };
  }
  const { event, attempts } = events[0]!;
  switch (spec.format) {
    case 'hasura':
      return { headers: { 'content-type': 'application/json' }, body: hasuraEventJson(event, triggerName, spec.delivery.retries, attempts) };
    case 'cloudevents-structured':
      return { headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' }, body: structuredEventJson(event) };
    case 'cloudevents':
      return { headers: binaryModeHeaders(event.attributes), body: event.dataJson };
  }
}

/** The headers of a CloudEvents binary-mode request carrying these attributes (the data is the body). */
export function binaryModeHeaders(a: EventAttributes): Record<string, string> {
  return {
    'content-type': 'application/json',
    'ce-specversion': a.specversion,
    'ce-id': ceHeader(a.id),
    'ce-source': ceHeader(a.source),
    'ce-type': a.type, // dev.eventide.row.<op>: nothing to encode
    'ce-subject': ceHeader(a.subject),
    'ce-time': a.time,
  };
}

/**
 * Reads a function's answer to a batch: `{"failures":[{"id":...,"reason":...}]}` names the items to
 * retry (as Lambda's partial batch response), each with the reason the function gave, if any. Any
 * other 2xx body means every item was handled.
 */
export function failedBatchItems(body: string | undefined): Map<string, string | undefined> {
  const failed = new Map<string, string | undefined>();
  if (!body) return failed;
  try {
    const parsed = JSON.parse(body) as Partial<BatchResponse>;
    if (!Array.isArray(parsed.failures)) return failed;
    for (const f of parsed.failures) {
      if (f && typeof f.id === 'string') failed.set(f.id, typeof f.reason === 'string' && f.reason ? f.reason.slice(0, 500) : undefined);
    }
  } catch {
    // not JSON: every item was handled
  }
  return failed;
}

/** The error recorded for a batch item the function named as failed, with the reason it gave. */
export function batchItemFailedError(reason: string | undefined): string {
  return `the function reported this batch item as failed${reason ? `: ${reason}` : ''}`;
}
