/**
 * The operator and the dispatcher as one system, on a real kube-apiserver (+ controller-manager, kwok
 * for the function pods): the operator runs in-process, and each dispatcher Deployment it writes runs
 * as the real `eventide dispatch` process with that Deployment's args, env (Secret values resolved) and
 * ConfigMap files (see DispatcherKubelet), against a real Postgres, delivering to a local function
 * reached by its cluster DNS name. The conditions the operator writes are checked against what the
 * dispatcher actually does.
 */
import { createServer, type Server } from 'node:http';
import type { V1ConfigMap } from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DispatcherStateReport, FunctionDemandReport } from '../../common/dispatcherState.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { dispatcherName } from '../../operator/eventtrigger/source.js';
import { type Operator, startOperator } from '../../operator/manager.js';
import { settingsWith } from '../../operator/settings.js';
import type { ControlPlane } from '../harness/controlPlane.js';
import { ClusterDns, DispatcherKubelet } from '../harness/dispatcherKubelet.js';
import { conditionOf, createNamespace, eventually, getJson, kubeConfigFrom, kubectlOk, type StoredCondition, startClusterWithCrds, testLogger } from '../operator/support.js';

// A namespace no other test uses: the cluster DNS names below are host-wide (/etc/hosts).
const NS = 'system-shop';
const FUNCTION_ADDRESS = '127.0.0.90';
const ordersSource = { namespace: NS, secretName: 'orders-db', key: 'url' };
const ordersDispatcher = dispatcherName(ordersSource);

interface TriggerJson {
  metadata: { generation: number };
  status?: { conditions?: StoredCondition[]; observedGeneration?: number };
}

/** A function on its cluster address: records each request as `<ce-subject>\n<body>`, answers after a delay, counts requests in flight. */
interface LocalFunction {
  bodies: string[];
  maxInFlight: number;
  inFlight: number;
  close(): Promise<void>;
}

async function startFunction(address: string, delayMs: number): Promise<LocalFunction> {
  const fn: LocalFunction = { bodies: [], maxInFlight: 0, inFlight: 0, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      body = `${String(req.headers['ce-subject'])}\n${body}`;
      fn.inFlight += 1;
      fn.maxInFlight = Math.max(fn.maxInFlight, fn.inFlight);
      setTimeout(() => {
        fn.inFlight -= 1;
        fn.bodies.push(body);
        res.writeHead(200).end();
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(80, address, resolve));
  fn.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return fn;
}

let cp: ControlPlane;
let operator: Operator;
let postgres: EmbeddedPostgres;
let dns: ClusterDns;
let kubelet: DispatcherKubelet;
let hook: LocalFunction;
let db: pg.Client;

const apply = (objects: unknown[]) => kubectlOk(cp, ['apply', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n---\n'));

function trigger(name: string, spec: Record<string, unknown>, secret = 'orders-db') {
  return {
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: NS },
    spec: {
      source: { connectionSecretRef: { name: secret, key: 'url' }, dropSlotOnDelete: true },
      table: { name: 'orders' },
      function: { name: 'hook' },
      ...spec,
    },
  };
}

const getTrigger = (name: string) => getJson<TriggerJson>(cp, ['eventtrigger', name, '-n', NS]);

async function waitForCondition(name: string, type: string, match: Partial<StoredCondition>, timeoutMs = 60_000): Promise<TriggerJson> {
  return eventually(
    `${name} ${type} ${JSON.stringify(match)}`,
    async () => {
      const t = await getTrigger(name);
      const c = conditionOf(t, type);
      return c && Object.entries(match).every(([k, v]) => c[k as keyof StoredCondition] === v) ? t : undefined;
    },
    timeoutMs,
  );
}

async function slots(database = db): Promise<{ slot_name: string; active: boolean }[]> {
  return (await database.query<{ slot_name: string; active: boolean }>('SELECT slot_name, active FROM pg_replication_slots ORDER BY slot_name')).rows;
}

const bodiesWith = (text: string) => hook.bodies.filter((b) => b.includes(text));
/** Whether an event for this row (`schema.table/key`) reached the function. */
const delivered = (subject: string) => hook.bodies.some((b) => b.startsWith(`${subject}\n`));

beforeAll(async () => {
  [cp, postgres] = await Promise.all([startClusterWithCrds({ controllerManager: true, kwok: true }), startEmbeddedPostgres()]);
  await cp.addFakeNodes(1);
  await createNamespace(cp, NS);
  db = new pg.Client({ connectionString: postgres.url });
  db.on('error', () => undefined);
  await db.connect();
  await db.query(`
    CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL DEFAULT 'new', is_paid boolean NOT NULL DEFAULT false);
    CREATE TABLE public.audit (id int PRIMARY KEY);
  `);
  await db.query('CREATE DATABASE other');
  const other = new pg.Client({ connectionString: postgres.urlFor('other') });
  await other.connect();
  await other.query('CREATE TABLE public.audit (id int PRIMARY KEY)');
  await other.end();

  dns = new ClusterDns();
  dns.add(`hook.${NS}.svc.cluster.local`, FUNCTION_ADDRESS);
  hook = await startFunction(FUNCTION_ADDRESS, 100);
  const kubeConfig = kubeConfigFrom(cp.kubeconfigPath);
  operator = await startOperator({
    kubeConfig,
    settings: settingsWith({ metricsPort: 0, metricsHost: '127.0.0.1', workers: 2, dispatcherImage: 'ghcr.io/eventide-dev/eventide:test' }),
    logger: testLogger(),
    statePollMs: 500,
  });
  await operator.synced;
  kubelet = new DispatcherKubelet(kubeConfig, NS, dns);
  kubelet.start();
  const secret = (name: string, url: string) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: NS }, stringData: { url } });
  await apply([
    secret('orders-db', postgres.url),
    secret('audit-db', `${postgres.url}?application_name=audit`),
    secret('other-db', postgres.urlFor('other')),
    { apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: 'hook', namespace: NS }, spec: { image: 'example.com/hook:1', concurrency: 4 } },
  ]);
}, 300_000);

afterAll(async () => {
  await kubelet?.stop();
  await operator?.stop();
  dns?.restore();
  await hook?.close();
  await db?.end().catch(() => undefined);
  await Promise.all([cp?.stop(), postgres?.destroy()]);
}, 120_000);

describe('operator and dispatcher as one system', () => {
  it('a trigger on a missing table is Ready=False TableNotFound (kubectl get et shows it) while its sibling is Ready and delivers; creating the table makes it Ready', async () => {
    await apply([trigger('new-order', { operations: ['insert'] }), trigger('order-status', { operations: ['update'], columns: ['status'] }), trigger('refund', { table: { name: 'refunds' } })]);
    const ready = await waitForCondition('new-order', 'Ready', { status: 'True' }, 90_000);
    expect(conditionOf(ready, 'Serving')).toMatchObject({ status: 'True', reason: 'Serving' });
    expect(conditionOf(ready, 'Ready')?.observedGeneration).toBe(ready.metadata.generation);
    const refund = await waitForCondition('refund', 'Ready', { status: 'False', reason: 'TableNotFound' });
    expect(conditionOf(refund, 'Ready')?.message).toBe(`EventTrigger ${NS}/refund: table public.refunds does not exist`);
    const table = await kubectlOk(cp, ['get', 'et', '-n', NS]);
    expect(table).toMatch(/refund\s+refunds\s+hook\s+False\s+TableNotFound/);
    expect(table).toMatch(/new-order\s+orders\s+hook\s+True\s+Ready/);

    await db.query('INSERT INTO orders (id) VALUES (1)');
    await eventually('order 1 delivered', async () => delivered('public.orders/1'));

    await db.query('CREATE TABLE public.refunds (id int PRIMARY KEY)');
    await waitForCondition('refund', 'Ready', { status: 'True' }, 60_000);
    await db.query('INSERT INTO refunds VALUES (77)');
    await eventually('refund 77 delivered', async () => delivered('public.refunds/77'));
  }, 180_000);

  it('two triggers on one Function with concurrency 4 never have more than 4 requests in flight to it', async () => {
    hook.maxInFlight = 0;
    const before = hook.bodies.length;
    // The demand the dispatcher reports for the function while the burst goes through (what autoscaling reads).
    const reported: FunctionDemandReport[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const state = (await (await fetch(`http://${ordersDispatcher}.${NS}.svc.cluster.local:9090/state`)).json()) as DispatcherStateReport;
        const demand = state.functions[`${NS}/hook`];
        if (demand) reported.push(demand);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await db.query('INSERT INTO orders (id) SELECT g FROM generate_series(100, 139) g');
    await db.query("UPDATE orders SET status = 'seen' WHERE id BETWEEN 100 AND 139");
    await eventually('80 events delivered', async () => hook.bodies.length - before >= 80, 60_000);
    sampling = false;
    await sampler;
    expect(hook.maxInFlight).toBeLessThanOrEqual(4);
    // Each trigger alone would send up to 64 at once: the cap was reached, and held.
    expect(hook.maxInFlight).toBe(4);
    expect(reported.every((d) => d.limit === 4 && d.inflight <= 4)).toBe(true);
    // More events waited for the function than it was allowed to take at once: the demand is visible beyond the cap.
    expect(Math.max(...reported.map((d) => d.events))).toBeGreaterThan(4);
  }, 120_000);

  it('a column a trigger reads, dropped: Ready=False ColumnNotFound; its siblings keep delivering', async () => {
    await apply([trigger('paid', { operations: ['update'], filter: 'new.is_paid == true' })]);
    await waitForCondition('paid', 'Ready', { status: 'True' }, 60_000);
    await db.query('ALTER TABLE orders DROP COLUMN is_paid');
    await db.query("UPDATE orders SET status = 'after-drop' WHERE id = 1");
    const paid = await waitForCondition('paid', 'Ready', { status: 'False', reason: 'ColumnNotFound' }, 60_000);
    expect(conditionOf(paid, 'Ready')?.message).toContain('no longer has column "is_paid"');
    await eventually('the status update delivered to order-status', async () => bodiesWith('after-drop').length > 0);
  }, 120_000);

  it('renaming the slot: the dispatcher moves to the new slot without a wedge, the old one (dropSlotOnDelete) is dropped, events keep arriving', async () => {
    const oldSlots = (await slots()).map((s) => s.slot_name);
    expect(oldSlots).toHaveLength(1);
    const before = kubelet.history.length;
    await kubectlOk(cp, ['patch', 'et', 'new-order', '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { source: { slotName: 'orders_v2' } } })]);
    await eventually(
      'only the new slot, active',
      async () => {
        const now = await slots();
        return now.length === 1 && now[0]!.slot_name === 'orders_v2' && now[0]!.active;
      },
      90_000,
    );
    // The config change did not need a new pod: the dispatcher restarted on the new slot in place.
    expect(kubelet.history.length).toBe(before);
    await waitForCondition('new-order', 'Ready', { status: 'True' }, 60_000);
    await db.query('INSERT INTO orders (id) VALUES (500)');
    await eventually('order 500 delivered through the new slot', async () => delivered('public.orders/500'), 30_000);
    const cm = await getJson<V1ConfigMap>(cp, ['configmap', ordersDispatcher, '-n', NS]);
    expect(JSON.parse(cm!.metadata!.annotations!['eventide.dev/slots']!)).toEqual([{ slot: 'orders_v2', publication: 'orders_v2', drop: true }]);
  }, 180_000);

  it('a trigger moved to another source: the old dispatcher goes and its slot is dropped; the new source delivers', async () => {
    await apply([trigger('audit', { table: { name: 'audit' }, operations: ['insert'] }, 'audit-db')]);
    await waitForCondition('audit', 'Ready', { status: 'True' }, 90_000);
    const auditDispatcher = dispatcherName({ namespace: NS, secretName: 'audit-db', key: 'url' });
    const auditSlot = (await slots()).find((s) => s.slot_name.startsWith('eventide_'))?.slot_name;
    expect(auditSlot).toBeDefined();
    await db.query('INSERT INTO audit VALUES (1)');
    await eventually('audit 1 delivered', async () => delivered('public.audit/1'), 30_000);

    await kubectlOk(cp, ['patch', 'et', 'audit', '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { source: { connectionSecretRef: { name: 'other-db', key: 'url' } } } })]);
    await eventually('the old dispatcher gone', async () => (await getJson(cp, ['deployment', auditDispatcher, '-n', NS])) === undefined, 60_000);
    await eventually("the old source's slot dropped", async () => !(await slots()).some((s) => s.slot_name === auditSlot), 90_000);
    expect(await getJson(cp, ['configmap', auditDispatcher, '-n', NS])).toBeUndefined();
    await waitForCondition('audit', 'Ready', { status: 'True' }, 90_000);
    const other = new pg.Client({ connectionString: postgres.urlFor('other') });
    await other.connect();
    try {
      await other.query('INSERT INTO audit VALUES (4242)');
    } finally {
      await other.end();
    }
    await eventually('audit 4242 delivered from the other database', async () => delivered('public.audit/4242'), 30_000);
  }, 240_000);
});
