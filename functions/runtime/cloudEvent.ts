import type { IncomingHttpHeaders } from 'node:http';
import { EVENT_TYPE_PREFIX, type EventideEvent, type Row, type RowChange, type RowOperation } from '../../api/v1alpha1/event.js';
import { MalformedEventError } from './errors.js';

/** A request body read as CloudEvents over HTTP: one event (binary or structured mode) or a batch. */
export type ParsedRequest = { mode: 'binary' | 'structured'; event: EventideEvent } | { mode: 'batch'; events: EventideEvent[] };

const STRUCTURED = 'application/cloudevents+json';
const BATCH = 'application/cloudevents-batch+json';
const JSON_TYPE = 'application/json';
const OPERATIONS: readonly RowOperation[] = ['insert', 'update', 'delete', 'truncate'];
/** Attributes CloudEvents 1.0 requires, then those eventide always sets, in the order errors name them. */
const REQUIRED = ['specversion', 'id', 'source', 'type', 'subject', 'time'] as const;
type Required = (typeof REQUIRED)[number];

/** The media type of a Content-Type header, lower-cased and without parameters. */
function mediaType(header: string | undefined): string | undefined {
  const type = header?.split(';')[0]?.trim().toLowerCase();
  return type ? type : undefined;
}

/**
 * Reads a request as an eventide CloudEvent. Binary mode is chosen by any Content-Type other than the
 * structured and batch ones, so a plain JSON POST without `ce-*` headers is answered "missing ce-specversion…".
 * Throws MalformedEventError naming every attribute that is missing or wrong.
 */
export function parseCloudEventRequest(headers: IncomingHttpHeaders, body: Buffer): ParsedRequest {
  const contentType = mediaType(headerValue(headers, 'content-type'));
  if (contentType === STRUCTURED) {
    return { mode: 'structured', event: eventFromStructured(parseJson(body), '') };
  }
  if (contentType === BATCH) {
    const value = parseJson(body);
    if (!Array.isArray(value)) throw new MalformedEventError('a batch must be a JSON array of structured CloudEvents', ['[]']);
    return { mode: 'batch', events: value.map((item, index) => eventFromStructured(item, `[${index}].`)) };
  }
  return { mode: 'binary', event: eventFromBinary(headers, contentType, body) };
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw new MalformedEventError('the request body is empty; expected JSON', ['body']);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (error) {
    throw new MalformedEventError(`the request body is not valid JSON: ${(error as Error).message}`, ['body']);
  }
}

/**
 * Binary-mode header values are percent-encoded where they hold characters outside printable ASCII
 * (CloudEvents HTTP binding §3.1.3.2), which a primary key in ce-subject may well do.
 */
function decodeHeader(name: string, value: string): string {
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    throw new MalformedEventError(`header ${name} has an invalid percent-encoding`, [name]);
  }
}

function eventFromBinary(headers: IncomingHttpHeaders, contentType: string | undefined, body: Buffer): EventideEvent {
  const attributes: Partial<Record<Required, unknown>> = {};
  for (const name of REQUIRED) {
    const raw = headerValue(headers, `ce-${name}`);
    if (raw !== undefined) attributes[name] = decodeHeader(`ce-${name}`, raw);
  }
  const checked = checkAttributes(attributes, (name) => `ce-${name}`);
  if (contentType !== JSON_TYPE) {
    throw new MalformedEventError(`binary-mode events must have Content-Type ${JSON_TYPE} (got ${contentType ?? 'none'})`, ['content-type'], 415);
  }
  return buildEvent(checked, parseJson(body), 'body');
}

function eventFromStructured(value: unknown, at: string): EventideEvent {
  if (!isObject(value)) throw new MalformedEventError(`${at ? `batch item ${at.slice(0, -1)}` : 'a structured event'} must be a JSON object`, [at ? at.slice(0, -1) : 'body']);
  const checked = checkAttributes(value, (name) => `${at}${name}`);
  if (value.datacontenttype !== undefined && mediaType(String(value.datacontenttype)) !== JSON_TYPE) {
    throw new MalformedEventError(`${at}datacontenttype must be ${JSON_TYPE}`, [`${at}datacontenttype`]);
  }
  if (value.data_base64 !== undefined) throw new MalformedEventError(`${at}data_base64 is not supported; eventide sends JSON data`, [`${at}data_base64`]);
  if (!('data' in value)) throw new MalformedEventError(`missing required attribute ${at}data`, [`${at}data`]);
  return buildEvent(checked, value.data, `${at}data`);
}

type CheckedAttributes = Record<Required, string> & { operation: RowOperation };

/** Checks the required attributes all at once, so one 400 names every problem. */
function checkAttributes(source: Partial<Record<Required, unknown>>, label: (name: Required) => string): CheckedAttributes {
  const missing = REQUIRED.filter((name) => typeof source[name] !== 'string' || source[name] === '');
  if (missing.length > 0) {
    const names = missing.map(label);
    throw new MalformedEventError(`missing required attribute${names.length > 1 ? 's' : ''} ${names.join(', ')}`, names);
  }
  const attrs = source as Record<Required, string>;
  if (attrs.specversion !== '1.0') {
    throw new MalformedEventError(`${label('specversion')} must be "1.0" (got "${attrs.specversion}")`, [label('specversion')]);
  }
  const operation = attrs.type.startsWith(EVENT_TYPE_PREFIX) ? attrs.type.slice(EVENT_TYPE_PREFIX.length) : undefined;
  if (!OPERATIONS.includes(operation as RowOperation)) {
    throw new MalformedEventError(`${label('type')} must be ${EVENT_TYPE_PREFIX}{${OPERATIONS.join('|')}} (got "${attrs.type}")`, [label('type')]);
  }
  if (Number.isNaN(Date.parse(attrs.time))) {
    throw new MalformedEventError(`${label('time')} must be an RFC 3339 timestamp (got "${attrs.time}")`, [label('time')]);
  }
  return { ...attrs, operation: operation as RowOperation };
}

/** Builds the event with exactly the EventideEvent fields: unknown extension attributes are dropped. */
function buildEvent(attrs: CheckedAttributes, data: unknown, at: string): EventideEvent {
  return {
    specversion: '1.0',
    id: attrs.id,
    source: attrs.source,
    type: `${EVENT_TYPE_PREFIX}${attrs.operation}` as EventideEvent['type'],
    subject: attrs.subject,
    time: attrs.time,
    datacontenttype: 'application/json',
    data: checkRowChange(data, at, attrs.operation),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRow(value: unknown): value is Row | null {
  return value === null || isObject(value);
}

/** Checks the body has the RowChange shape the handler's types promise. Extra fields pass through. */
function checkRowChange(data: unknown, at: string, operation: RowOperation): RowChange {
  if (!isObject(data)) throw new MalformedEventError(`${at} must be a JSON object (a row change)`, [at]);
  const wrong: string[] = [];
  if (data.op !== operation) wrong.push('op');
  const table = data.table;
  if (!isObject(table) || typeof table.schema !== 'string' || typeof table.name !== 'string') wrong.push('table');
  if (!isRow(data.old)) wrong.push('old');
  if (!isRow(data.new)) wrong.push('new');
  if (data.unchangedToastColumns !== undefined && !(Array.isArray(data.unchangedToastColumns) && data.unchangedToastColumns.every((c) => typeof c === 'string'))) {
    wrong.push('unchangedToastColumns');
  }
  if (typeof data.lsn !== 'string') wrong.push('lsn');
  if (typeof data.xid !== 'number') wrong.push('xid');
  if (typeof data.commitTime !== 'string') wrong.push('commitTime');
  if (wrong.length > 0) {
    const paths = wrong.map((field) => `${at}.${field}`);
    const opNote = wrong.includes('op') ? ` (op must be "${operation}", as the event type says)` : '';
    throw new MalformedEventError(`${at} is not a row change: missing or wrong ${paths.join(', ')}${opNote}`, paths);
  }
  // Parsed JSON, so every value is already a JsonValue; the checks above pinned the typed fields.
  return data as unknown as RowChange;
}
