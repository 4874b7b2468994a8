/**
 * Backfills in a source's dispatcher config (what the dispatcher loads from its mounted ConfigMap), and
 * the /state poller waking the Backfills whose entry changed.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type BackfillResource, type EventTriggerResource, parseBackfill, parseEventTrigger, parseManifestText } from '../../api/v1alpha1/index.js';
import type { BackfillStateReport, DispatcherStateReport } from '../../common/dispatcherState.js';
import { createLogger } from '../../common/logger.js';
import { type KnownBackfill, ParsedBackfills } from '../../operator/backfill/parsed.js';
import { backfillsOfSource, dispatcherConfig, makeDispatcherConfigMap } from '../../operator/eventtrigger/dispatcher.js';
import { DispatcherStates } from '../../operator/eventtrigger/dispatcherStates.js';
import type { SourceRef } from '../../operator/eventtrigger/source.js';

const source: SourceRef = { namespace: 'food', secretName: 'orders-db', key: 'url' };

function trigger(name: string): EventTriggerResource {
  const parsed = parseEventTrigger({
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: 'food' },
    spec: { source: { connectionSecretRef: { name: 'orders-db' } }, table: { name: 'orders' }, function: { name: 'validate-order' } },
  });
  parsed.metadata.uid = `uid-${name}`;
  return parsed;
}

function backfill(name: string, triggerName: string, spec: Record<string, unknown> = {}, namespace = 'food'): BackfillResource {
  const parsed = parseBackfill({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Backfill', metadata: { name, namespace }, spec: { trigger: { name: triggerName }, ...spec } });
  parsed.metadata.uid = `uid-${name}`;
  parsed.metadata.generation = 2;
  return parsed;
}

const members = [trigger('new-order'), trigger('paid-order')];

describe('Backfills in the dispatcher config', () => {
  it("carries only the Backfills naming one of the source's triggers, in its namespace, sorted by name", () => {
    const all = [backfill('z-paid', 'paid-order'), backfill('a-new', 'new-order'), backfill('orphan', 'no-such-trigger'), backfill('elsewhere', 'new-order', {}, 'billing')];
    expect(backfillsOfSource(source, members, all).map((b) => b.metadata.name)).toEqual(['a-new', 'z-paid']);
  });

  it('writes each as {apiVersion, kind, metadata: {name, namespace, uid, generation}, spec} after the triggers, defaults filled in', () => {
    const text = dispatcherConfig(source, members, [], [backfill('all-orders', 'new-order', { filter: "new.status == 'open'", rowsPerSecond: 50 })]);
    const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, unknown>);
    expect(docs.map((d) => d.kind)).toEqual(['EventTrigger', 'EventTrigger', 'Backfill']);
    expect(docs[2]).toEqual({
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'Backfill',
      metadata: { name: 'all-orders', namespace: 'food', uid: 'uid-all-orders', generation: 2 },
      spec: { trigger: { name: 'new-order' }, filter: "new.status == 'open'", batchSize: 1000, rowsPerSecond: 50 },
    });
  });

  it('loads back as the dispatcher loads its files: the Backfills with their uid, beside the triggers', () => {
    const cm = makeDispatcherConfigMap(source, members, [], [backfill('b', 'paid-order'), backfill('a', 'new-order')]);
    const loaded = parseManifestText(cm.data!['triggers.yaml']!, 'triggers.yaml');
    expect(loaded.triggers.map((t) => t.metadata.name)).toEqual(['new-order', 'paid-order']);
    expect(loaded.backfills.map((b) => [b.metadata.name, b.metadata.uid, b.spec.trigger.name])).toEqual([
      ['a', 'uid-a', 'new-order'],
      ['b', 'uid-b', 'paid-order'],
    ]);
  });

  it('is byte-for-byte stable whatever order the Backfills come in, and unchanged without any', () => {
    const [a, b] = [backfill('a', 'new-order'), backfill('b', 'new-order')];
    expect(dispatcherConfig(source, members, [], [a, b])).toBe(dispatcherConfig(source, members, [], [b, a]));
    expect(dispatcherConfig(source, members, [], [backfill('orphan', 'gone')])).toBe(dispatcherConfig(source, members));
  });
});

describe('ParsedBackfills', () => {
  const stored = (spec: Record<string, unknown>, generation: number, extra: Record<string, unknown> = {}): KnownBackfill =>
    ({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Backfill', metadata: { name: 'b', namespace: 'food', uid: 'u', generation, ...extra }, spec }) as KnownBackfill;

  it('leaves out of the config a Backfill with an invalid spec or being deleted', () => {
    const parsed = new ParsedBackfills();
    const ok = stored({ trigger: { name: 't' } }, 1);
    const badFilter = { ...stored({ trigger: { name: 't' }, filter: 'new.x ==' }, 1), metadata: { name: 'bad', namespace: 'food', uid: 'u2', generation: 1 } } as KnownBackfill;
    const deleting = { ...ok, metadata: { ...ok.metadata, name: 'gone', uid: 'u3', deletionTimestamp: new Date() } } as KnownBackfill;
    expect(parsed.valid([ok, badFilter, deleting]).map((b) => b.metadata.name)).toEqual(['b']);
  });

  it('parses a spec once per generation (status writes do not re-parse), and again when it changes', () => {
    const parsed = new ParsedBackfills();
    const first = parsed.parse(stored({ trigger: { name: 't' } }, 1));
    // Same generation, another resourceVersion (a status write): the cached spec, the fresh metadata.
    const second = parsed.parse(stored({ trigger: { name: 'ignored until the generation moves' } }, 1, { resourceVersion: '9' }));
    expect([first, second].map((b) => !(b instanceof Error) && b.spec.trigger.name)).toEqual(['t', 't']);
    expect(!(second instanceof Error) && second.metadata.resourceVersion).toBe('9');
    const third = parsed.parse(stored({ trigger: { name: 'u' }, batchSize: 0 }, 2));
    expect(third).toBeInstanceOf(Error);
  });
});

describe('DispatcherStates and Backfills', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  it('wakes a Backfill when its entry appears, changes or goes, and every one it knew when the dispatcher cannot be read', async () => {
    let backfills: Record<string, BackfillStateReport> = {};
    let up = true;
    server = createServer((_req, res) => {
      if (!up) {
        res.writeHead(503).end();
        return;
      }
      const state: DispatcherStateReport = {
        source: { slot: 's', publication: 's', phase: 'streaming', connected: true, lagBytes: 0 },
        configFingerprint: 'f',
        triggers: {},
        functions: {},
        backfills,
      };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(state));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/state`;
    const woken: string[][] = [];
    const states = new DispatcherStates({
      endpoints: () => [{ namespace: 'food', name: 'd', url }],
      changed: () => undefined,
      backfillsChanged: (keys) => woken.push([...keys].sort()),
      intervalMs: 1000,
      timeoutMs: 1000,
      lagThresholdBytes: 1024,
      logger: createLogger('test', { level: 'silent' }),
    });
    const entry = (rowsRead: number): BackfillStateReport => ({ trigger: 'food/t', uid: 'u', phase: 'Running', rowsRead, rowsSent: rowsRead });
    const poll = async () => {
      woken.length = 0;
      await states.pollOnce();
      return woken.flat();
    };

    expect(await poll()).toEqual([]);
    backfills = { 'food/a': entry(1), 'food/b': entry(1) };
    expect(await poll()).toEqual(['food/a', 'food/b']);
    expect(await poll()).toEqual([]);
    backfills = { 'food/a': entry(2), 'food/b': entry(1) };
    expect(await poll()).toEqual(['food/a']);
    backfills = { 'food/a': entry(2) };
    expect(await poll()).toEqual(['food/b']);
    up = false;
    expect(await poll()).toEqual(['food/a']);
    up = true;
    expect(await poll()).toEqual(['food/a']);
  });
});
