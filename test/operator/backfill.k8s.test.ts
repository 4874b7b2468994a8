/**
 * Backfill against a real kube-apiserver + etcd, with the operator in-process: the API server enforces
 * the CRD, the operator puts Backfills into their trigger's dispatcher ConfigMap and mirrors the
 * dispatcher's GET /state into their status. The dispatcher's /state is a real HTTP server on the
 * dispatcher Service's cluster DNS name (an /etc/hosts entry, as test/harness/dispatcherKubelet.ts
 * does), answering what each test sets: what a dispatcher reports is the dispatcher's own tests' to
 * check; here it is the operator's reading of it.
 */
import { createServer, type Server } from 'node:http';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { BackfillStateReport, DispatcherStateReport } from '../../common/dispatcherState.js';
import { DISPATCHER_PORT } from '../../operator/eventtrigger/dispatcher.js';
import { dispatcherName } from '../../operator/eventtrigger/source.js';
import { type Operator, startOperator } from '../../operator/manager.js';
import { settingsWith } from '../../operator/settings.js';
import type { ControlPlane } from '../harness/controlPlane.js';
import { ClusterDns } from '../harness/dispatcherKubelet.js';
import { conditionOf, createNamespace, eventually, getJson, kubeConfigFrom, kubectlOk, type StoredCondition, startClusterWithCrds, testLogger } from './support.js';

// A namespace and a loopback address no other test uses: cluster DNS names are host-wide (/etc/hosts).
const NS = 'orchard';
const STATE_ADDRESS = '127.0.0.60';
const ordersDispatcher = dispatcherName({ namespace: NS, secretName: 'orders-db', key: 'url' });

interface BackfillJson {
  metadata: { name: string; uid: string; generation: number };
  spec: Record<string, unknown>;
  status?: {
    phase?: string;
    rowsRead?: number;
    rowsSent?: number;
    rowsEstimate?: number;
    progress?: string;
    cursor?: string;
    startTime?: string;
    completionTime?: string;
    message?: string;
    dispatcher?: string;
    observedGeneration?: number;
    conditions?: StoredCondition[];
  };
}

/** What the fake dispatcher answers on /state: its Backfills, set by each test. */
class FakeDispatcherState {
  backfills: Record<string, BackfillStateReport> = {};
  private server: Server | undefined;

  async start(address: string, port: number): Promise<void> {
    this.server = createServer((req, res) => {
      if (req.url !== '/state') {
        res.writeHead(404).end();
        return;
      }
      const state: DispatcherStateReport = {
        source: { slot: 'eventide_orchard', publication: 'eventide_orchard', phase: 'streaming', connected: true, lagBytes: 0 },
        configFingerprint: 'fake',
        triggers: {},
        functions: {},
        backfills: this.backfills,
      };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(state));
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, address, resolve);
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

let cp: ControlPlane;
let operator: Operator;
let dns: ClusterDns;
const dispatcher = new FakeDispatcherState();

function triggerJson(name: string): string {
  return JSON.stringify({
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: NS },
    spec: { source: { connectionSecretRef: { name: 'orders-db', key: 'url' } }, table: { name: name === 'refund' ? 'refunds' : 'orders' }, sink: { url: 'https://hooks.example.com/orders' } },
  });
}

function backfillJson(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Backfill', metadata: { name, namespace: NS }, spec });
}

const getBackfill = (name: string) => getJson<BackfillJson>(cp, ['backfill', name, '-n', NS]);

async function waitForBackfill(name: string, what: string, check: (b: BackfillJson) => boolean): Promise<BackfillJson> {
  let last: BackfillJson | undefined;
  try {
    return await eventually(`${name}: ${what}`, async () => {
      last = await getBackfill(name);
      return last && check(last) ? last : undefined;
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}\nlast status: ${JSON.stringify(last?.status)}`, { cause: error });
  }
}

const hasCondition = (type: string, match: Partial<StoredCondition>) => (b: BackfillJson) => {
  const c = conditionOf(b, type);
  return c !== undefined && Object.entries(match).every(([k, v]) => c[k as keyof StoredCondition] === v);
};

/** The Backfill documents of a dispatcher's config, by name. */
async function configuredBackfills(name = ordersDispatcher): Promise<Map<string, Record<string, unknown>> | undefined> {
  const cm = await getJson<V1ConfigMap>(cp, ['configmap', name, '-n', NS]);
  const text = cm?.data?.['triggers.yaml'];
  if (text === undefined) return undefined;
  const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, unknown>);
  return new Map(docs.filter((d) => d.kind === 'Backfill').map((d) => [(d.metadata as { name: string }).name, d]));
}

async function events(name: string): Promise<{ type: string; reason: string; message: string }[]> {
  const out = await kubectlOk(cp, ['get', 'events', '-n', NS, '--field-selector', `involvedObject.kind=Backfill,involvedObject.name=${name}`, '-o', 'json']);
  return (JSON.parse(out) as { items: { type: string; reason: string; message: string }[] }).items;
}

beforeAll(async () => {
  cp = await startClusterWithCrds();
  await createNamespace(cp, NS);
  dns = new ClusterDns();
  dns.add(`${ordersDispatcher}.${NS}.svc.cluster.local`, STATE_ADDRESS);
  await dispatcher.start(STATE_ADDRESS, DISPATCHER_PORT);
  operator = await startOperator({
    kubeConfig: kubeConfigFrom(cp.kubeconfigPath),
    settings: settingsWith({ metricsPort: 0, metricsHost: '127.0.0.1', workers: 2, dispatcherImage: 'ghcr.io/eventide-dev/eventide:test' }),
    logger: testLogger(),
    statePollMs: 200,
  });
  await operator.synced;
  await kubectlOk(cp, ['create', 'secret', 'generic', 'orders-db', '-n', NS, '--from-literal=url=postgres://eventide@db.example.com/orders']);
  await kubectlOk(cp, ['apply', '-f', '-'], triggerJson('new-order'));
  await eventually('the dispatcher config', () => configuredBackfills());
}, 240_000);

afterAll(async () => {
  await operator?.stop();
  await dispatcher.stop();
  dns?.restore();
  await cp?.stop();
});

describe('Backfill', () => {
  it("is put into its trigger's dispatcher ConfigMap with its uid and generation, defaults filled in", async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], backfillJson('all-orders', { trigger: { name: 'new-order' } }));
    const stored = await eventually('the Backfill', () => getBackfill('all-orders'));
    const doc = await eventually('the Backfill in the config', async () => (await configuredBackfills())?.get('all-orders'));
    expect(doc).toEqual({
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'Backfill',
      metadata: { name: 'all-orders', namespace: NS, uid: stored.metadata.uid, generation: stored.metadata.generation },
      spec: { trigger: { name: 'new-order' }, batchSize: 1000 },
    });
    // Nothing on /state yet: accepted by nobody so far.
    const b = await waitForBackfill('all-orders', 'DispatcherPending', hasCondition('Accepted', { status: 'Unknown', reason: 'DispatcherPending' }));
    expect(b.status).toMatchObject({ phase: 'Pending', dispatcher: ordersDispatcher, observedGeneration: b.metadata.generation });
    expect(conditionOf(b, 'Complete')).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('carries a spec change into the config', async () => {
    await kubectlOk(cp, ['patch', 'backfill', 'all-orders', '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { rowsPerSecond: 200, filter: "new.status == 'open'" } })]);
    const doc = await eventually('the new spec in the config', async () => {
      const found = (await configuredBackfills())?.get('all-orders');
      return (found?.spec as { rowsPerSecond?: number } | undefined)?.rowsPerSecond === 200 ? found : undefined;
    });
    expect(doc.metadata).toMatchObject({ generation: 2 });
    expect(doc.spec).toEqual({ trigger: { name: 'new-order' }, batchSize: 1000, rowsPerSecond: 200, filter: "new.status == 'open'" });
  });

  it("mirrors the dispatcher's /state into status, and kubectl get shows trigger, phase, progress and rows", async () => {
    const { uid } = (await getBackfill('all-orders'))!.metadata;
    dispatcher.backfills[`${NS}/all-orders`] = {
      trigger: `${NS}/new-order`,
      uid,
      phase: 'Running',
      rowsRead: 420,
      rowsSent: 400,
      rowsEstimate: 1000,
      cursor: '420',
      startTime: '2026-12-02T10:00:00Z',
      message: 'reading rows after 420',
    };
    const b = await waitForBackfill('all-orders', 'Running at 42%', (x) => x.status?.phase === 'Running' && x.status.progress === '42%');
    expect(b.status).toMatchObject({
      rowsRead: 420,
      rowsSent: 400,
      rowsEstimate: 1000,
      cursor: '420',
      startTime: '2026-12-02T10:00:00Z',
      message: 'reading rows after 420',
      dispatcher: ordersDispatcher,
    });
    expect(conditionOf(b, 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted' });
    expect(conditionOf(b, 'Complete')).toMatchObject({ status: 'False', reason: 'Running', message: 'reading rows after 420' });

    const table = await kubectlOk(cp, ['get', 'backfill', '-n', NS]);
    expect(table.split('\n')[0]).toMatch(/^NAME\s+TRIGGER\s+PHASE\s+PROGRESS\s+ROWS\s+AGE$/);
    expect(table).toMatch(/all-orders\s+new-order\s+Running\s+42%\s+420\s/);
    const wide = await kubectlOk(cp, ['get', 'bf', '-n', NS, '-o', 'wide']);
    expect(wide.split('\n')[0]).toMatch(/^NAME\s+TRIGGER\s+PHASE\s+PROGRESS\s+ROWS\s+ESTIMATE\s+MESSAGE\s+AGE$/);
    expect(wide).toMatch(/all-orders\s+new-order\s+Running\s+42%\s+420\s+1000\s+reading rows after 420\s/);
    // In the eventide category with the other kinds.
    expect(await kubectlOk(cp, ['get', 'eventide', '-n', NS, '-o', 'name'])).toMatch(/backfill\.eventide\.dev\/all-orders/);
  });

  it('completes: Complete=True, 100%, and a Completed Event', async () => {
    const entry: BackfillStateReport = { ...dispatcher.backfills[`${NS}/all-orders`]!, phase: 'Complete', rowsRead: 990, rowsSent: 950, cursor: '990', completionTime: '2026-12-02T10:05:00Z' };
    delete entry.message;
    dispatcher.backfills[`${NS}/all-orders`] = entry;
    const b = await waitForBackfill('all-orders', 'Complete', hasCondition('Complete', { status: 'True', reason: 'Complete' }));
    expect(b.status).toMatchObject({ phase: 'Complete', progress: '100%', rowsRead: 990, completionTime: '2026-12-02T10:05:00Z' });
    expect(b.status?.message).toBeUndefined();
    const recorded = await eventually('the Completed Event', async () => (await events('all-orders')).find((e) => e.reason === 'Completed'));
    expect(recorded).toMatchObject({ type: 'Normal', message: 'read 990 rows, sent 950 as events' });
    const wait = await cp.kubectl(['wait', '--for=condition=Complete', '--timeout=10s', 'backfill/all-orders', '-n', NS]);
    expect(wait.code, wait.stderr).toBe(0);
    // Nothing changes any more, so nothing is written: the dispatcher is read every 200 ms, the object stays as it is.
    const settled = (await getJson<{ metadata: { resourceVersion: string } }>(cp, ['backfill', 'all-orders', '-n', NS]))!.metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getJson<{ metadata: { resourceVersion: string } }>(cp, ['backfill', 'all-orders', '-n', NS]))!.metadata.resourceVersion).toBe(settled);
  });

  it("a failure: phase Failed with the dispatcher's message, and a Warning Event", async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], backfillJson('doomed', { trigger: { name: 'new-order' } }));
    const { uid } = (await eventually('doomed', () => getBackfill('doomed'))).metadata;
    dispatcher.backfills[`${NS}/doomed`] = { trigger: `${NS}/new-order`, uid, phase: 'Failed', rowsRead: 3, rowsSent: 3, message: 'table public.orders has no primary key' };
    const b = await waitForBackfill('doomed', 'Failed', (x) => x.status?.phase === 'Failed');
    expect(conditionOf(b, 'Complete')).toMatchObject({ status: 'False', reason: 'Failed', message: 'table public.orders has no primary key' });
    const recorded = await eventually('the Failed Event', async () => (await events('doomed')).find((e) => e.reason === 'Failed'));
    expect(recorded).toMatchObject({ type: 'Warning', message: 'table public.orders has no primary key' });
  });

  it('trusts only the /state entry of this very object: one recreated under the same name starts Pending', async () => {
    const before = (await getBackfill('doomed'))!.metadata.uid;
    await kubectlOk(cp, ['delete', 'backfill', 'doomed', '-n', NS]);
    await kubectlOk(cp, ['apply', '-f', '-'], backfillJson('doomed', { trigger: { name: 'new-order' } }));
    const b = await waitForBackfill('doomed', 'a new object', (x) => x.metadata.uid !== before && x.status?.observedGeneration === 1);
    // The dispatcher still reports the old one as Failed.
    expect(dispatcher.backfills[`${NS}/doomed`]?.uid).toBe(before);
    expect(b.status?.phase).toBe('Pending');
    expect(conditionOf(b, 'Accepted')).toMatchObject({ status: 'Unknown', reason: 'DispatcherPending' });
    expect(conditionOf(b, 'Accepted')?.message).toMatch(/older Backfill of this name/);
    const doc = await eventually('the new uid in the config', async () => {
      const found = (await configuredBackfills())?.get('doomed');
      return (found?.metadata as { uid?: string } | undefined)?.uid === b.metadata.uid ? found : undefined;
    });
    expect(doc).toBeTruthy();
  });

  it('is removed from the ConfigMap when deleted (its dispatcher then cancels it)', async () => {
    await kubectlOk(cp, ['delete', 'backfill', 'doomed', '-n', NS]);
    await eventually('doomed out of the config', async () => {
      const found = await configuredBackfills();
      return found !== undefined && !found.has('doomed');
    });
    expect([...(await configuredBackfills())!.keys()]).toEqual(['all-orders']);
  });

  it('naming a trigger that does not exist: Accepted=False TriggerNotFound, Pending, in no ConfigMap; accepted once the trigger appears', async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], backfillJson('refunds', { trigger: { name: 'refund' } }));
    const b = await waitForBackfill('refunds', 'TriggerNotFound', hasCondition('Accepted', { status: 'False', reason: 'TriggerNotFound' }));
    expect(conditionOf(b, 'Accepted')?.message).toBe(`EventTrigger "refund" not found in namespace "${NS}"`);
    expect(b.status).toMatchObject({ phase: 'Pending', message: `EventTrigger "refund" not found in namespace "${NS}"` });
    expect(b.status?.dispatcher).toBeUndefined();
    expect(conditionOf(b, 'Complete')).toMatchObject({ status: 'False', reason: 'Pending' });
    const configMaps = JSON.parse(await kubectlOk(cp, ['get', 'configmaps', '-n', NS, '-l', 'app.kubernetes.io/component=dispatcher', '-o', 'json'])) as { items: V1ConfigMap[] };
    for (const cm of configMaps.items) expect(cm.data?.['triggers.yaml']).not.toMatch(/name: refunds\b/);

    await kubectlOk(cp, ['apply', '-f', '-'], triggerJson('refund'));
    await eventually('refunds in the config', async () => (await configuredBackfills())?.has('refunds'));
    const accepted = await waitForBackfill('refunds', 'DispatcherPending', hasCondition('Accepted', { status: 'Unknown', reason: 'DispatcherPending' }));
    expect(accepted.status?.dispatcher).toBe(ordersDispatcher);
  });

  it('a filter that is not CEL passes the API server (it cannot compile CEL) but is Accepted=False InvalidSpec and kept out of the config', async () => {
    await kubectlOk(cp, ['apply', '-f', '-'], backfillJson('bad-filter', { trigger: { name: 'new-order' }, filter: 'new.status ==' }));
    const b = await waitForBackfill('bad-filter', 'InvalidSpec', hasCondition('Accepted', { status: 'False', reason: 'InvalidSpec' }));
    expect(conditionOf(b, 'Accepted')?.message).toMatch(/^spec\.filter: .* of "new\.status =="$/);
    expect(b.status?.phase).toBe('Pending');
    expect((await configuredBackfills())?.has('bad-filter')).toBe(false);
    const recorded = await eventually('the InvalidSpec Event', async () => (await events('bad-filter')).find((e) => e.reason === 'InvalidSpec'));
    expect(recorded.type).toBe('Warning');
  });

  const rejected = [
    { name: 'batchSize 0, naming spec.batchSize and its minimum', spec: { trigger: { name: 'new-order' }, batchSize: 0 }, errors: [/spec\.batchSize/, /should be greater than or equal to 1/] },
    { name: 'no trigger, naming spec.trigger', spec: { batchSize: 10 }, errors: [/spec\.trigger: Required value/] },
    { name: 'an empty trigger name', spec: { trigger: { name: '' } }, errors: [/spec\.trigger\.name/] },
    { name: 'rowsPerSecond 0', spec: { trigger: { name: 'new-order' }, rowsPerSecond: 0 }, errors: [/spec\.rowsPerSecond/] },
  ];

  it.each(rejected)('the API server rejects a Backfill with $name', async ({ spec, errors }) => {
    const result = await cp.kubectl(['create', '-f', '-'], backfillJson('invalid', spec));
    expect(result.code).not.toBe(0);
    for (const error of errors) expect(result.stderr).toMatch(error);
    expect(await getBackfill('invalid')).toBeUndefined();
  });

  it("rejects an unknown field with kubectl's strict validation (a typo is not dropped silently)", async () => {
    const result = await cp.kubectl(['create', '-f', '-'], backfillJson('typo', { trigger: { name: 'new-order' }, batchsize: 10 }));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/unknown field "spec\.batchsize"/);
  });
});
