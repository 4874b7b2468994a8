/**
 * EventTrigger reconciliation against a real kube-apiserver + etcd + kube-controller-manager, with the
 * operator in-process and a real PostgreSQL for the slot it drops on deletion.
 */

import type { V1ConfigMap, V1Deployment } from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { dispatcherName } from '../../operator/eventtrigger/source.js';
import { type Operator, startOperator } from '../../operator/manager.js';
import { settingsWith } from '../../operator/settings.js';
import type { ControlPlane } from '../harness/controlPlane.js';
import { conditionOf, createNamespace, eventually, getJson, kubeConfigFrom, kubectlOk, type StoredCondition, startClusterWithCrds, testLogger } from './support.js';

const NS = 'shop';
const DISPATCHER_IMAGE = 'ghcr.io/eventide-dev/eventide:test';
const ordersDispatcher = dispatcherName({ namespace: NS, secretName: 'orders-db', key: 'url' });

interface TriggerJson {
  metadata: { uid: string; finalizers?: string[]; generation: number };
  status?: { conditions?: StoredCondition[]; sinkUrl?: string; dispatcher?: string; observedGeneration?: number };
}

let cp: ControlPlane;
let operator: Operator;
let postgres: EmbeddedPostgres;

function triggerYaml(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: NS },
    spec: { source: { connectionSecretRef: { name: 'orders-db', key: 'url' } }, table: { name: 'orders' }, function: { name: 'validate-order' }, ...spec },
  });
}

const getTrigger = (name: string) => getJson<TriggerJson>(cp, ['eventtrigger', name, '-n', NS]);

async function waitForCondition(name: string, type: string, match: Partial<StoredCondition>): Promise<TriggerJson> {
  return eventually(`${name} ${type} ${JSON.stringify(match)}`, async () => {
    const t = await getTrigger(name);
    const c = conditionOf(t, type);
    return c && Object.entries(match).every(([k, v]) => c[k as keyof StoredCondition] === v) ? t : undefined;
  });
}

async function configuredTriggers(name = ordersDispatcher): Promise<{ names: string[]; docs: Record<string, unknown>[] } | undefined> {
  const cm = await getJson<V1ConfigMap>(cp, ['configmap', name, '-n', NS]);
  const text = cm?.data?.['triggers.yaml'];
  if (text === undefined) return undefined;
  const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, unknown>);
  return { names: docs.map((d) => (d.metadata as { name: string }).name), docs };
}

beforeAll(async () => {
  [cp, postgres] = await Promise.all([startClusterWithCrds({ controllerManager: true, kwok: true }), startEmbeddedPostgres()]);
  await createNamespace(cp, NS);
  operator = await startOperator({
    kubeConfig: kubeConfigFrom(cp.kubeconfigPath),
    settings: settingsWith({ metricsPort: 0, metricsHost: '127.0.0.1', workers: 2, dispatcherImage: DISPATCHER_IMAGE }),
    logger: testLogger(),
  });
  await operator.synced;
}, 240_000);

afterAll(async () => {
  await operator?.stop();
  await Promise.all([cp?.stop(), postgres?.destroy()]);
});

describe('EventTrigger', () => {
  it('says which Function and which Secret are missing', async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], triggerYaml('new-order', {}));
    const t = await waitForCondition('new-order', 'FunctionResolved', { status: 'False', reason: 'FunctionNotFound' });
    expect(conditionOf(t, 'FunctionResolved')?.message).toBe(`Function "validate-order" not found in namespace "${NS}"`);
    const s = await waitForCondition('new-order', 'SourceReady', { status: 'False', reason: 'SecretNotFound' });
    expect(conditionOf(s, 'SourceReady')?.message).toBe(`connection Secret "orders-db" not found in namespace "${NS}"`);
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False' });
    expect(s.metadata.finalizers).toContain('eventide.dev/dispatcher');
  });

  it('says which key is missing from the Secret, and turns SourceReady once it is there', async () => {
    await kubectlOk(cp, ['create', 'secret', 'generic', 'orders-db', '-n', NS, '--from-literal=other=x']);
    const t = await waitForCondition('new-order', 'SourceReady', { status: 'False', reason: 'SecretKeyMissing' });
    expect(conditionOf(t, 'SourceReady')?.message).toBe('connection Secret "orders-db" has no key "url"');
    await kubectlOk(cp, ['patch', 'secret', 'orders-db', '-n', NS, '--type=merge', '-p', JSON.stringify({ stringData: { url: postgres.url } })]);
    await waitForCondition('new-order', 'SourceReady', { status: 'True' });
  });

  it('resolves the Function once it exists, publishing the sink URL', async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: 'validate-order', namespace: NS }, spec: { image: 'img:1' } }));
    const t = await waitForCondition('new-order', 'FunctionResolved', { status: 'True' });
    expect(t.status?.sinkUrl).toBe(`http://validate-order.${NS}.svc.cluster.local`);
  });

  it('runs a dispatcher for its source: a Deployment reading the Secret and a ConfigMap with the trigger', async () => {
    const d = await eventually('the dispatcher Deployment', () => getJson<V1Deployment>(cp, ['deployment', ordersDispatcher, '-n', NS]));
    const container = d.spec?.template.spec?.containers[0];
    expect(container?.image).toBe(DISPATCHER_IMAGE);
    expect(container?.env).toContainEqual({ name: 'EVENTIDE_DATABASE_URL', valueFrom: { secretKeyRef: { name: 'orders-db', key: 'url' } } });
    expect(d.spec?.strategy?.type).toBe('Recreate');
    expect(d.spec?.replicas).toBe(1);
    const t = await getTrigger('new-order');
    expect(d.metadata?.ownerReferences).toEqual([{ apiVersion: 'eventide.dev/v1alpha1', kind: 'EventTrigger', name: 'new-order', uid: t?.metadata.uid }]);
    const config = await eventually('the dispatcher config', () => configuredTriggers());
    expect(config.names).toEqual(['new-order']);
    expect(JSON.stringify(config.docs)).not.toContain(postgres.url);
    // No node runs the dispatcher pod yet, and the trigger says so.
    const ready = await waitForCondition('new-order', 'DispatcherReady', { status: 'False', reason: 'MinimumReplicasUnavailable' });
    expect(ready.status?.dispatcher).toBe(ordersDispatcher);
  });

  it('is DispatcherReady once a node runs the dispatcher pod (kwok plays the kubelet), but not Ready until the dispatcher itself reports serving it', async () => {
    await cp.addFakeNodes(1);
    const t = await waitForCondition('new-order', 'DispatcherReady', { status: 'True' });
    for (const type of ['FunctionResolved', 'SourceReady', 'DispatcherReady']) expect(conditionOf(t, type), type).toMatchObject({ status: 'True' });
    // kwok runs no process, so nothing answers on the dispatcher's /state: Ready says so instead of True
    // (the real dispatcher's report turning it True is test/system/operatorDispatcher.test.ts).
    expect(conditionOf(t, 'Serving')).toMatchObject({ status: 'Unknown', reason: 'DispatcherNotReporting' });
    expect(conditionOf(t, 'Ready')).toMatchObject({ status: 'Unknown', reason: 'DispatcherNotReporting' });
    const d = await getJson<V1Deployment>(cp, ['deployment', ordersDispatcher, '-n', NS]);
    expect(d?.status?.availableReplicas).toBe(1);
  });

  it('restarts the dispatcher when its connection Secret changes (a rotated password): the env is read at pod start', async () => {
    const before = await getJson<V1Deployment>(cp, ['deployment', ordersDispatcher, '-n', NS]);
    const digest = before?.spec?.template.metadata?.annotations?.['eventide.dev/secrets-hash'];
    expect(digest).toMatch(/^[0-9a-f]{16}$/);
    const selector = Object.entries(before?.spec?.selector.matchLabels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const podsNow = async () =>
      (JSON.parse(await kubectlOk(cp, ['get', 'pods', '-n', NS, '-l', selector, '-o', 'json'])) as { items: { metadata: { name: string }; status?: { phase?: string } }[] }).items;
    const oldPods = (await podsNow()).map((p) => p.metadata.name);
    expect(oldPods).toHaveLength(1);

    const rotated = Buffer.from(`${postgres.url}?application_name=rotated`).toString('base64');
    await kubectlOk(cp, ['patch', 'secret', 'orders-db', '-n', NS, '-p', JSON.stringify({ data: { url: rotated } })]);
    const after = await eventually('a new digest in the pod template', async () => {
      const d = await getJson<V1Deployment>(cp, ['deployment', ordersDispatcher, '-n', NS]);
      const now = d?.spec?.template.metadata?.annotations?.['eventide.dev/secrets-hash'];
      return now && now !== digest ? now : undefined;
    });
    expect(after).toMatch(/^[0-9a-f]{16}$/);
    await eventually(
      'a new dispatcher pod running in place of the old one',
      async () => {
        const pods = await podsNow();
        return pods.length === 1 && !oldPods.includes(pods[0]!.metadata.name) && pods[0]!.status?.phase === 'Running';
      },
      60_000,
    );
    await waitForCondition('new-order', 'DispatcherReady', { status: 'True' });
  });

  it('shares that dispatcher with a second trigger on the same Secret key', async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], triggerYaml('paid-order', { operations: ['update'], columns: ['is_paid'] }));
    await eventually('both triggers in the config', async () => (await configuredTriggers())?.names.join(',') === 'new-order,paid-order');
    const deployments = JSON.parse(await kubectlOk(cp, ['get', 'deployments', '-n', NS, '-l', 'app.kubernetes.io/component=dispatcher', '-o', 'json'])) as { items: V1Deployment[] };
    expect(deployments.items.map((i) => i.metadata?.name)).toEqual([ordersDispatcher]);
    await eventually('both triggers owning the Deployment', async () => {
      const d = await getJson<V1Deployment>(cp, ['deployment', ordersDispatcher, '-n', NS]);
      return d?.metadata?.ownerReferences?.map((r) => r.name).join(',') === 'new-order,paid-order';
    });
    const t = await waitForCondition('paid-order', 'FunctionResolved', { status: 'True' });
    expect(t.status?.dispatcher).toBe(ordersDispatcher);
  });

  it("updates the ConfigMap when a trigger changes, without touching the dispatcher's pod template", async () => {
    const before = await getJson<V1Deployment>(cp, ['deployment', ordersDispatcher, '-n', NS]);
    await kubectlOk(cp, ['patch', 'eventtrigger', 'paid-order', '-n', NS, '--type=merge', '-p', '{"spec":{"filter":"new.total > 100"}}']);
    await eventually('the new filter in the config', async () => {
      const config = await configuredTriggers();
      const doc = config?.docs.find((d) => (d.metadata as { name: string }).name === 'paid-order');
      return (doc?.spec as { filter?: string } | undefined)?.filter === 'new.total > 100';
    });
    const after = await getJson<V1Deployment>(cp, ['deployment', ordersDispatcher, '-n', NS]);
    expect(after?.metadata?.generation).toBe(before?.metadata?.generation);
    expect(after?.spec?.template).toEqual(before?.spec?.template);
  });

  it('gives another Secret key its own dispatcher', async () => {
    await kubectlOk(cp, ['patch', 'secret', 'orders-db', '-n', NS, '--type=merge', '-p', JSON.stringify({ stringData: { replica: 'postgres://eventide@127.0.0.1:1/postgres' } })]);
    await kubectlOk(
      cp,
      ['apply', '-f', '-'],
      triggerYaml('audit', { source: { connectionSecretRef: { name: 'orders-db', key: 'replica' }, dropSlotOnDelete: true }, function: undefined, sink: { url: 'https://audit.example.com/events' } }),
    );
    const replicaDispatcher = dispatcherName({ namespace: NS, secretName: 'orders-db', key: 'replica' });
    expect(replicaDispatcher).not.toBe(ordersDispatcher);
    await eventually('the second dispatcher', () => getJson<V1Deployment>(cp, ['deployment', replicaDispatcher, '-n', NS]));
    expect((await configuredTriggers(replicaDispatcher))?.names).toEqual(['audit']);
    expect((await configuredTriggers())?.names).toEqual(['new-order', 'paid-order']);
    const t = await waitForCondition('audit', 'FunctionResolved', { status: 'True', reason: 'SinkURL' });
    expect(t.status?.sinkUrl).toBe('https://audit.example.com/events');
  });

  it("moves a trigger whose source changes to the new source's dispatcher, removing the old one it alone used", async () => {
    await kubectlOk(cp, ['create', 'secret', 'generic', 'legacy-db', '-n', NS, '--from-literal=url=postgres://legacy@db/legacy', '--from-literal=v2=postgres://legacy@db2/legacy']);
    await kubectlOk(cp, ['apply', '-f', '-'], triggerYaml('legacy', { source: { connectionSecretRef: { name: 'legacy-db', key: 'url' } } }));
    const oldName = dispatcherName({ namespace: NS, secretName: 'legacy-db', key: 'url' });
    const newName = dispatcherName({ namespace: NS, secretName: 'legacy-db', key: 'v2' });
    await eventually('the old dispatcher', () => getJson<V1Deployment>(cp, ['deployment', oldName, '-n', NS]));
    await kubectlOk(cp, ['patch', 'eventtrigger', 'legacy', '-n', NS, '--type=merge', '-p', '{"spec":{"source":{"connectionSecretRef":{"name":"legacy-db","key":"v2"}}}}']);
    await eventually('the new dispatcher', () => getJson<V1Deployment>(cp, ['deployment', newName, '-n', NS]));
    await eventually(
      'the old dispatcher to be gone',
      async () => (await getJson(cp, ['deployment', oldName, '-n', NS])) === undefined && (await getJson(cp, ['configmap', oldName, '-n', NS])) === undefined,
    );
    const t = await eventually('status naming the new dispatcher', async () => ((await getTrigger('legacy'))?.status?.dispatcher === newName ? true : undefined));
    expect(t).toBe(true);
    await kubectlOk(cp, ['delete', 'eventtrigger', 'legacy', '-n', NS]);
  });

  it('marks a filter that is not valid CEL InvalidSpec, keeps it out of the dispatcher, and does not retry it', async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], triggerYaml('broken', { filter: 'new.total >' }));
    const t = await waitForCondition('broken', 'Ready', { status: 'False', reason: 'InvalidSpec' });
    expect(conditionOf(t, 'Ready')?.message).toMatch(/^spec\.filter: /);
    expect((await configuredTriggers())?.names).toEqual(['new-order', 'paid-order']);
    // Terminal: counted, never requeued, so the count stops growing once the status is written.
    const terminal = async () => {
      const text = await (await fetch(`${operator.opsUrl}/metrics`)).text();
      return Number(/eventide_operator_reconciles_total\{kind="EventTrigger",result="terminal"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    await new Promise((r) => setTimeout(r, 1500)); // the status write's own watch event comes back once
    const settled = await terminal();
    expect(settled).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await terminal()).toBe(settled);
    await kubectlOk(cp, ['delete', 'eventtrigger', 'broken', '-n', NS]);
  });

  it('drops a deleted trigger from the shared config and lets it go', async () => {
    await kubectlOk(cp, ['delete', 'eventtrigger', 'paid-order', '-n', NS, '--wait=false']);
    await eventually('paid-order gone', async () => (await getTrigger('paid-order')) === undefined);
    expect((await configuredTriggers())?.names).toEqual(['new-order']);
    const d = await getJson<V1Deployment>(cp, ['deployment', ordersDispatcher, '-n', NS]);
    expect(d?.metadata?.ownerReferences?.map((r) => r.name)).toEqual(['new-order']);
  });

  it('keeps its finalizer and reports SlotDropFailed while the slot cannot be dropped, then finishes once it can', async () => {
    await kubectlOk(cp, ['delete', 'eventtrigger', 'audit', '-n', NS, '--wait=false']);
    const t = await waitForCondition('audit', 'SourceReady', { status: 'False', reason: 'SlotDropFailed' });
    expect(conditionOf(t, 'SourceReady')?.message).toMatch(/cannot connect to postgres:\/\/eventide@127\.0\.0\.1:1\/postgres/);
    expect(t.metadata.finalizers).toContain('eventide.dev/dispatcher');
    // Pointing the Secret at a reachable database lets the (idempotent) drop succeed.
    await kubectlOk(cp, ['patch', 'secret', 'orders-db', '-n', NS, '--type=merge', '-p', JSON.stringify({ stringData: { replica: postgres.url } })]);
    await eventually('audit gone', async () => (await getTrigger('audit')) === undefined, 60_000);
  });

  it('deletes the dispatcher and drops the slot and publication when the last trigger of a source goes', async () => {
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    try {
      await client.query('CREATE TABLE IF NOT EXISTS orders (id serial primary key, total int)');
      await client.query('CREATE PUBLICATION orders_pub FOR TABLE orders');
      await client.query("SELECT pg_create_logical_replication_slot('orders_slot', 'pgoutput')");
      await kubectlOk(cp, [
        'patch',
        'eventtrigger',
        'new-order',
        '-n',
        NS,
        '--type=merge',
        '-p',
        '{"spec":{"source":{"slotName":"orders_slot","publicationName":"orders_pub","dropSlotOnDelete":true}}}',
      ]);
      await eventually('the slot in the config', async () => {
        const doc = (await configuredTriggers())?.docs[0];
        return (doc?.spec as { source?: { slotName?: string } } | undefined)?.source?.slotName === 'orders_slot';
      });
      await kubectlOk(cp, ['delete', 'eventtrigger', 'new-order', '-n', NS, '--wait=false']);
      await eventually('new-order gone', async () => (await getTrigger('new-order')) === undefined, 60_000);
      expect(await getJson(cp, ['deployment', ordersDispatcher, '-n', NS])).toBeUndefined();
      expect(await getJson(cp, ['configmap', ordersDispatcher, '-n', NS])).toBeUndefined();
      const slots = await client.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'orders_slot'");
      const publications = await client.query("SELECT 1 FROM pg_publication WHERE pubname = 'orders_pub'");
      expect(slots.rowCount).toBe(0);
      expect(publications.rowCount).toBe(0);
    } finally {
      await client.end();
    }
  });
});
