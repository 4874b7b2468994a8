import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { EventideEvent } from '../../api/v1alpha1/event.js';
import { parseCloudEventRequest } from './cloudEvent.js';
import { MalformedEventError } from './errors.js';

const data = {
  op: 'insert',
  table: { schema: 'public', name: 'orders' },
  old: null,
  new: { id: 7, is_paid: true, placed_at: '2026-01-02T03:04:05.000Z', meta: { tip: 2.5 } },
  lsn: '0/16B3748',
  xid: 742,
  commitTime: '2026-01-02T03:04:05.123Z',
};

const event: EventideEvent = {
  specversion: '1.0',
  id: 'evt-1',
  source: '/eventide/food/new-order',
  type: 'dev.eventide.row.insert',
  subject: 'public.orders/7',
  time: '2026-01-02T03:04:05.123Z',
  datacontenttype: 'application/json',
  data: data as EventideEvent['data'],
};

const binaryHeaders: IncomingHttpHeaders = {
  'content-type': 'application/json; charset=utf-8',
  'ce-specversion': '1.0',
  'ce-id': event.id,
  'ce-source': event.source,
  'ce-type': event.type,
  'ce-subject': event.subject,
  'ce-time': event.time,
};

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const without = <T extends object>(value: T, key: string): T => Object.fromEntries(Object.entries(value).filter(([k]) => k !== key)) as T;

const accepted: { name: string; given: { headers: IncomingHttpHeaders; body: Buffer }; expect: ReturnType<typeof parseCloudEventRequest> }[] = [
  {
    name: 'binary mode: attributes from ce-* headers, data from the JSON body, extensions dropped',
    given: { headers: { ...binaryHeaders, 'ce-traceparent': '00-abc', 'ce-attempt': '2' }, body: json(data) },
    expect: { mode: 'binary', event },
  },
  {
    name: 'binary mode: percent-encoded header values are decoded',
    given: { headers: { ...binaryHeaders, 'ce-subject': 'public.orders/caf%C3%A9' }, body: json(data) },
    expect: { mode: 'binary', event: { ...event, subject: 'public.orders/café' } },
  },
  {
    name: 'structured mode: the whole event in the body',
    given: { headers: { 'content-type': 'application/cloudevents+json' }, body: json({ ...event, partitionkey: 'x' }) },
    expect: { mode: 'structured', event },
  },
  {
    name: 'structured mode: datacontenttype may be left out',
    given: { headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' }, body: json(without(event, 'datacontenttype')) },
    expect: { mode: 'structured', event },
  },
  {
    name: 'batch mode: an array of structured events, in order',
    given: { headers: { 'content-type': 'application/cloudevents-batch+json' }, body: json([event, { ...event, id: 'evt-2' }]) },
    expect: { mode: 'batch', events: [event, { ...event, id: 'evt-2' }] },
  },
  {
    name: 'batch mode: an empty batch is valid',
    given: { headers: { 'content-type': 'application/cloudevents-batch+json' }, body: json([]) },
    expect: { mode: 'batch', events: [] },
  },
];

const rejected: { name: string; given: { headers: IncomingHttpHeaders; body: Buffer }; expect: { status: number; attributes: string[]; message: RegExp } }[] = [
  {
    name: 'binary mode without ce-id names ce-id',
    given: { headers: without(binaryHeaders, 'ce-id'), body: json(data) },
    expect: { status: 400, attributes: ['ce-id'], message: /missing required attribute ce-id/ },
  },
  {
    name: 'a plain JSON POST names every missing attribute',
    given: { headers: { 'content-type': 'application/json' }, body: json(data) },
    expect: { status: 400, attributes: ['ce-specversion', 'ce-id', 'ce-source', 'ce-type', 'ce-subject', 'ce-time'], message: /ce-specversion, ce-id, ce-source/ },
  },
  {
    name: 'a specversion other than 1.0',
    given: { headers: { ...binaryHeaders, 'ce-specversion': '0.3' }, body: json(data) },
    expect: { status: 400, attributes: ['ce-specversion'], message: /must be "1.0"/ },
  },
  {
    name: 'a type that is not an eventide row change',
    given: { headers: { ...binaryHeaders, 'ce-type': 'com.example.thing' }, body: json(data) },
    expect: { status: 400, attributes: ['ce-type'], message: /dev\.eventide\.row\./ },
  },
  {
    name: 'a time that is not a timestamp',
    given: { headers: { ...binaryHeaders, 'ce-time': 'yesterday' }, body: json(data) },
    expect: { status: 400, attributes: ['ce-time'], message: /RFC 3339/ },
  },
  {
    name: 'invalid JSON',
    given: { headers: binaryHeaders, body: Buffer.from('{"op":') },
    expect: { status: 400, attributes: ['body'], message: /not valid JSON/ },
  },
  {
    name: 'an empty body',
    given: { headers: binaryHeaders, body: Buffer.alloc(0) },
    expect: { status: 400, attributes: ['body'], message: /empty/ },
  },
  {
    name: 'a body that is not a row change names the wrong fields',
    given: { headers: binaryHeaders, body: json({ ...data, op: 'delete', lsn: 5 }) },
    expect: { status: 400, attributes: ['body.op', 'body.lsn'], message: /op must be "insert"/ },
  },
  {
    name: 'binary mode with a non-JSON content type',
    given: { headers: { ...binaryHeaders, 'content-type': 'text/plain' }, body: Buffer.from('hi') },
    expect: { status: 415, attributes: ['content-type'], message: /application\/json/ },
  },
  {
    name: 'structured mode without source names source',
    given: { headers: { 'content-type': 'application/cloudevents+json' }, body: json(without(event, 'source')) },
    expect: { status: 400, attributes: ['source'], message: /missing required attribute source/ },
  },
  {
    name: 'structured mode without data',
    given: { headers: { 'content-type': 'application/cloudevents+json' }, body: json(without(event, 'data')) },
    expect: { status: 400, attributes: ['data'], message: /data/ },
  },
  {
    name: 'a batch that is not an array',
    given: { headers: { 'content-type': 'application/cloudevents-batch+json' }, body: json(event) },
    expect: { status: 400, attributes: ['[]'], message: /JSON array/ },
  },
  {
    name: 'a batch item without an id names its index',
    given: { headers: { 'content-type': 'application/cloudevents-batch+json' }, body: json([event, without(event, 'id')]) },
    expect: { status: 400, attributes: ['[1].id'], message: /\[1\]\.id/ },
  },
];

describe('parseCloudEventRequest', () => {
  for (const c of accepted) {
    it(c.name, () => {
      expect(parseCloudEventRequest(c.given.headers, c.given.body)).toStrictEqual(c.expect);
    });
  }
  for (const c of rejected) {
    it(`rejects ${c.name}`, () => {
      let error: unknown;
      try {
        parseCloudEventRequest(c.given.headers, c.given.body);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(MalformedEventError);
      const malformed = error as MalformedEventError;
      expect({ status: malformed.status, attributes: malformed.attributes }).toStrictEqual({ status: c.expect.status, attributes: c.expect.attributes });
      expect(malformed.message).toMatch(c.expect.message);
    });
  }
});
