/**
 * Backfill as one system: the operator runs in-process against a real kube-apiserver, puts each Backfill
 * into its trigger's dispatcher ConfigMap, and the real `eventide dispatch` process runs it with the
 * args, env and mounted ConfigMap files of the Deployment the operator wrote (DispatcherKubelet),
 * against a real Postgres, sending the table's rows to a local sink. What the operator writes into
 * Backfill status is checked against what the sink received and what eventide.backfills says.
 *
 * A ConfigMap change reaches the dispatcher in a few seconds: the harness copies it into the volume
 * within 500 ms, and the dispatcher (--watch-config) looks at its files every 2 s.
 */

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDispatcherState } from '../../common/dispatcherState.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { DISPATCHER_PORT } from '../../operator/eventtrigger/dispatcher.js';
import { dispatcherName } from '../../operator/eventtrigger/source.js';
import { type Operator, startOperator } from '../../operator/manager.js';
import { settingsWith } from '../../operator/settings.js';
import type { ControlPlane } from '../harness/controlPlane.js';
import { ClusterDns, DispatcherKubelet } from '../harness/dispatcherKubelet.js';
import { type RecordingSink, startRecordingSink } from '../harness/recordingSink.js';
import { conditionOf, createNamespace, eventually, getJson, kubeConfigFrom, kubectlOk, type StoredCondition, startClusterWithCrds, testLogger } from '../operator/support.js';

// A namespace and dispatcher addresses no other test uses: cluster DNS names are host-wide (/etc/hosts),
// and operatorDispatcher.test.ts (from .10) or autoscaling.test.ts (from .110) may run at the same time.
const NS = 'system-backfill';
const FIRST_DISPATCHER_ADDRESS = 130;
const ROWS = 2000;
const READ = 'dev.eventide.row.read';
const itemsDispatcher = dispatcherName({ namespace: NS, secretName: 'items-db', key: 'url' });

interface BackfillJson {
  metadata: { name: string; uid: string; generation: number };
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

let cp: ControlPlane;
let operator: Operator;
let postgres: EmbeddedPostgres;
let dns: ClusterDns;
let kubelet: DispatcherKubelet;
let sink: RecordingSink;
let db: pg.Client;

const apply = (objects: unknown[]) => kubectlOk(cp, ['apply', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n---\n'));
const backfill = (name: string, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'eventide.dev/v1alpha1',
  kind: 'Backfill',
  metadata: { name, namespace: NS },
  spec: { trigger: { name: 'items' }, ...spec },
});
const getBackfill = (name: string) => getJson<BackfillJson>(cp, ['backfill', name, '-n', NS]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The read events the sink received from request `from` on (the backfills here run one after another). */
const readsSince = (from: number) =>
  sink.requests
    .slice(from)
    .filter((r) => r.headers['ce-type'] === READ)
    .map((r) => ({ subject: String(r.headers['ce-subject']), data: JSON.parse(r.body) as { op: string; old: unknown; new: { id: number; note: string } } }));

/** What the dispatcher reports of a backfill on GET /state, read at its Service's cluster DNS name like the operator does. */
async function reported(name: string) {
  const response = await fetch(`http://${itemsDispatcher}.${NS}.svc.cluster.local:${DISPATCHER_PORT}/state`);
  return parseDispatcherState(await response.json()).backfills?.[`${NS}/${name}`];
}

/** Waits for a Backfill to be Complete; on timeout says what its status, the dispatcher and its log said last. */
async function waitForComplete(name: string, timeoutMs = 90_000): Promise<BackfillJson> {
  let last: BackfillJson | undefined;
  try {
    return await eventually(
      `${name} Complete=True`,
      async () => {
        last = await getBackfill(name);
        return conditionOf(last, 'Complete')?.status === 'True' ? last : undefined;
      },
      timeoutMs,
      250,
    );
  } catch (error) {
    const state = await reported(name).catch((e: Error) => e.message);
    const log = kubelet
      .pod(itemsDispatcher)
      ?.output()
      .split('\n')
      .filter((l) => /warn|error|backfill/i.test(l))
      .slice(-20)
      .join('\n');
    throw new Error(`${(error as Error).message}\nstatus: ${JSON.stringify(last?.status)}\n/state: ${JSON.stringify(state)}\ndispatcher log:\n${log}`, { cause: error });
  }
}

async function backfillRow(name: string): Promise<{ phase: string; message: string | null; rows_read: string } | undefined> {
  const { rows } = await db.query<{ phase: string; message: string | null; rows_read: string }>('SELECT phase, message, rows_read::text AS rows_read FROM eventide.backfills WHERE name = $1', [
    `${NS}/${name}`,
  ]);
  return rows[0];
}

beforeAll(async () => {
  [cp, postgres] = await Promise.all([startClusterWithCrds({ controllerManager: true, kwok: true }), startEmbeddedPostgres()]);
  await cp.addFakeNodes(1);
  await createNamespace(cp, NS);
  db = new pg.Client({ connectionString: postgres.url });
  db.on('error', () => undefined);
  await db.connect();
  await db.query('CREATE TABLE public.items (id int PRIMARY KEY, note text NOT NULL)');
  await db.query(`INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, ${ROWS}) g`);

  sink = await startRecordingSink();
  dns = new ClusterDns();
  const kubeConfig = kubeConfigFrom(cp.kubeconfigPath);
  operator = await startOperator({
    kubeConfig,
    settings: settingsWith({ metricsPort: 0, metricsHost: '127.0.0.1', workers: 2, dispatcherImage: 'ghcr.io/eventide-dev/eventide:test' }),
    logger: testLogger(),
    statePollMs: 500,
  });
  await operator.synced;
  kubelet = new DispatcherKubelet(kubeConfig, NS, dns, { firstAddress: FIRST_DISPATCHER_ADDRESS });
  kubelet.start();
  await apply([
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'items-db', namespace: NS }, stringData: { url: postgres.url } },
    {
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'EventTrigger',
      metadata: { name: 'items', namespace: NS },
      spec: {
        source: { connectionSecretRef: { name: 'items-db', key: 'url' }, dropSlotOnDelete: true },
        table: { name: 'items' },
        operations: ['insert', 'update', 'delete'],
        sink: { url: sink.url },
      },
    },
  ]);
  await eventually(
    'the trigger Ready',
    async () => conditionOf(await getJson<{ status?: { conditions?: StoredCondition[] } }>(cp, ['eventtrigger', 'items', '-n', NS]), 'Ready')?.status === 'True',
    120_000,
  );
}, 300_000);

afterAll(async () => {
  await kubelet?.stop();
  await operator?.stop();
  dns?.restore();
  await sink?.close();
  await db?.end().catch(() => undefined);
  await Promise.all([cp?.stop(), postgres?.destroy()]);
}, 120_000);

describe('Backfill through the operator and the dispatcher it deploys', () => {
  it('sends every existing row once as a read; the Backfill is Complete with 2000 rows at 100%, and kubectl get shows it', async () => {
    const from = sink.requests.length;
    await apply([backfill('all-items', { batchSize: 500 })]);
    const wait = await cp.kubectl(['wait', '--for=condition=Complete', '--timeout=90s', 'backfill/all-items', '-n', NS]);
    // kubectl wait only says it timed out: then fail with the status, /state and the dispatcher's log.
    if (wait.code !== 0) await waitForComplete('all-items', 1000);
    const b = await waitForComplete('all-items');

    expect(b.status).toMatchObject({ phase: 'Complete', rowsRead: ROWS, rowsSent: ROWS, rowsEstimate: ROWS, progress: '100%', cursor: String(ROWS), dispatcher: itemsDispatcher });
    expect(b.status?.observedGeneration).toBe(b.metadata.generation);
    expect(Date.parse(b.status!.completionTime!)).toBeGreaterThanOrEqual(Date.parse(b.status!.startTime!));
    expect(conditionOf(b, 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted', message: `dispatcher ${itemsDispatcher} runs this backfill` });
    expect(conditionOf(b, 'Complete')).toMatchObject({ status: 'True', reason: 'Complete' });

    // Complete means every read was settled (here: delivered), so all of them are in already.
    const reads = readsSince(from);
    expect(reads).toHaveLength(ROWS);
    expect(sink.requests.slice(from).every((r) => r.headers['ce-type'] === READ)).toBe(true);
    const ids = reads.map((r) => r.data.new.id).sort((a, c) => a - c);
    expect(ids).toEqual(Array.from({ length: ROWS }, (_, i) => i + 1));
    for (const { subject, data } of reads) {
      expect(subject).toBe(`public.items/${data.new.id}`);
      expect(data).toMatchObject({ op: 'read', old: null, new: { id: data.new.id, note: `item ${data.new.id}` } });
    }

    const table = await kubectlOk(cp, ['get', 'backfill', '-n', NS]);
    expect(table.split('\n')[0]).toMatch(/^NAME\s+TRIGGER\s+PHASE\s+PROGRESS\s+ROWS\s+AGE$/);
    expect(table).toMatch(/\nall-items\s+items\s+Complete\s+100%\s+2000\s+\S+\n/);
    const wide = await kubectlOk(cp, ['get', 'bf', 'all-items', '-n', NS, '-o', 'wide']);
    expect(wide.split('\n')[0]).toMatch(/^NAME\s+TRIGGER\s+PHASE\s+PROGRESS\s+ROWS\s+ESTIMATE\s+MESSAGE\s+AGE$/);
    expect(wide).toMatch(/\nall-items\s+items\s+Complete\s+100%\s+2000\s+2000\s/);
    expect(await backfillRow('all-items')).toMatchObject({ phase: 'Complete', rows_read: String(ROWS) });
  }, 180_000);

  it('with a filter, sends only the rows it passes: 200 of 2000', async () => {
    const from = sink.requests.length;
    await apply([backfill('every-tenth', { filter: 'new.id % 10 == 0' })]);
    const b = await waitForComplete('every-tenth');
    expect(b.status).toMatchObject({ phase: 'Complete', rowsRead: ROWS, rowsSent: ROWS / 10, progress: '100%' });
    expect(conditionOf(b, 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted' });
    const reads = readsSince(from);
    expect(reads).toHaveLength(ROWS / 10);
    expect(reads.map((r) => r.data.new.id).sort((a, c) => a - c)).toEqual(Array.from({ length: ROWS / 10 }, (_, i) => (i + 1) * 10));
    const table = await kubectlOk(cp, ['get', 'backfill', '-n', NS]);
    expect(table).toMatch(/\nevery-tenth\s+items\s+Complete\s+100%\s+2000\s/);
  }, 120_000);

  it('deleted while Running: the dispatcher cancels it in eventide.backfills and sends no more of its reads', async () => {
    const from = sink.requests.length;
    // 50 rows a second: 2000 rows would take 40 s.
    await apply([backfill('slow', { rowsPerSecond: 50, batchSize: 100 })]);
    await eventually(
      'slow Running with reads arriving',
      async () => {
        const b = await getBackfill('slow');
        return b?.status?.phase === 'Running' && conditionOf(b, 'Accepted')?.status === 'True' && readsSince(from).length >= 60;
      },
      60_000,
    );

    await kubectlOk(cp, ['delete', 'backfill', 'slow', '-n', NS]);
    const cancelled = await eventually(
      'slow Cancelled in eventide.backfills',
      async () => {
        const row = await backfillRow('slow');
        return row?.phase === 'Cancelled' ? row : undefined;
      },
      30_000,
    );
    expect(cancelled.message).toBe('cancelled: its Backfill resource was deleted');
    // The dispatcher still reports it (its trigger is its own), as Cancelled.
    const entry = await eventually(
      'slow Cancelled on /state',
      async () => {
        const found = await reported('slow');
        return found?.phase === 'Cancelled' ? found : undefined;
      },
      10_000,
    );
    expect(entry).toMatchObject({ trigger: `${NS}/items`, phase: 'Cancelled', message: 'cancelled: its Backfill resource was deleted' });

    // Reads handed on before the cancel are still delivered (the sink answers at once); then nothing more.
    await sleep(1000);
    const atCancel = readsSince(from).length;
    await sleep(4000);
    expect(readsSince(from).length).toBe(atCancel);
    expect(atCancel).toBeGreaterThanOrEqual(60);
    expect(atCancel).toBeLessThan(ROWS);
    expect(await getBackfill('slow')).toBeUndefined();
    // The other Backfills are untouched.
    expect(await backfillRow('all-items')).toMatchObject({ phase: 'Complete' });
    expect(await backfillRow('every-tenth')).toMatchObject({ phase: 'Complete' });
  }, 120_000);
});
