/**
 * The whole system on a real Kubernetes node: the images built from the project's Dockerfiles
 * (`npm run images`, buildah, nothing pulled) imported into the node's containerd, `helm install` of
 * charts/eventide, the food-ordering Functions and EventTriggers applied from
 * functions/food-ordering/manifests with kubectl, orders placed and followed to `is_agent_assigned`;
 * then, in the same cluster: the dispatcher pod killed mid-stream, the operator pod deleted, `helm
 * upgrade` with a changed value, a trigger on a missing table, and the uninstall leaving nothing behind.
 *
 * PostgreSQL runs on the host, reachable from pods at the node's address with a password: the way most
 * users run it (a managed database outside the cluster), and the project's own embedded server, so no
 * PostgreSQL image has to be made here. Prints how long each phase took. `npm run test:cluster` runs it alone.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../common/embeddedPostgres.js';
import { buildImages } from '../../deploy/images/build.js';
import { CHART_DIR, helm } from '../chart/helmBinary.js';
import { type RealNode, realNodeUnsupportedReason, startRealNode } from '../harness/realNode.js';
import { eventually, getJson as getJsonOf, kubectlOk } from '../operator/support.js';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const FOOD = join(REPO_ROOT, 'functions', 'food-ordering');
const RELEASE = 'eventide';
const RELEASE_NS = 'eventide-system';
const APP_NS = 'food';
const DB_PASSWORD = 'eventide-e2e-password';
const FUNCTIONS = ['validate-order', 'process-payment', 'approve-restaurant', 'assign-agent'];

const skipReason = realNodeUnsupportedReason();
if (skipReason) console.warn(`[cluster e2e] skipping: ${skipReason}`);

/** A cold machine installs packages, builds the node binaries and every image first. */
const START_TIMEOUT = 60 * 60_000;
const PHASE_TIMEOUT = 10 * 60_000;

const timings: { phase: string; seconds: number }[] = [];
async function phase<T>(name: string, run: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await run();
  } finally {
    const seconds = (Date.now() - started) / 1000;
    timings.push({ phase: name, seconds });
    console.log(`[cluster e2e] ${name}: ${seconds.toFixed(1)} s`);
  }
}

let node: RealNode;
let postgres: EmbeddedPostgres;
let db: pg.Pool;
let helmInstallStartedAt = 0;

/** kubectl as admin on the node's control plane: throws on failure (the project's helpers, as elsewhere). */
const kubectl = (args: string[], input?: string) => kubectlOk(node.controlPlane, args, input);
const getJson = <T>(args: string[]) => getJsonOf<T>(node.controlPlane, args);

async function helmOk(args: string[]): Promise<string> {
  const result = await helm([...args, '--kubeconfig', node.kubeconfigPath]);
  if (result.code !== 0) throw new Error(`helm ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

interface Counts {
  placed: number;
  assigned: number;
}
async function counts(): Promise<Counts> {
  const { rows } = await db.query<{ placed: string; assigned: string }>('SELECT count(*) AS placed, count(*) FILTER (WHERE is_agent_assigned) AS assigned FROM orders');
  return { placed: Number(rows[0]!.placed), assigned: Number(rows[0]!.assigned) };
}

async function placeOrders(n: number, perSecond = 10): Promise<void> {
  const sql = readFileSync(join(FOOD, 'e2e-orders.sql'), 'utf8');
  for (let i = 0; i < n; i++) {
    await db.query(sql);
    await new Promise((r) => setTimeout(r, 1000 / perSecond));
  }
}

async function allAssigned(timeoutMs = 300_000): Promise<Counts> {
  return eventually(
    'every order assigned an agent',
    async () => {
      const c = await counts();
      return c.assigned === c.placed ? c : undefined;
    },
    timeoutMs,
    1000,
  );
}

/** Orders processed twice in effect: two different events handled for one order by one function, or paid twice. */
async function processedTwice(): Promise<{ events: number; payments: number }> {
  const events = await db.query<{ n: string }>('SELECT count(*) AS n FROM (SELECT function_name, order_id FROM processed_events GROUP BY 1, 2 HAVING count(*) > 1) d');
  const payments = await db.query<{ n: string }>('SELECT count(*) AS n FROM (SELECT order_id FROM payments GROUP BY 1 HAVING count(*) > 1) d');
  return { events: Number(events.rows[0]!.n), payments: Number(payments.rows[0]!.n) };
}

interface DeploymentJson {
  metadata: { name: string; generation: number; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { replicas?: number };
  status?: { readyReplicas?: number };
}
const deployments = async (namespace: string) => (await getJson<{ items: DeploymentJson[] }>(['deployments', '-n', namespace]))?.items ?? [];
/** Each Deployment's pod-template revision: what a rollout changes (replicas, which autoscaling changes, do not). */
const revisions = async (namespace: string) => Object.fromEntries((await deployments(namespace)).map((d) => [d.metadata.name, d.metadata.annotations?.['deployment.kubernetes.io/revision']]));

/** Peak and current memory of each running pod of a namespace, read from its cgroup (kubectl top needs metrics-server). */
async function podMemory(namespace: string): Promise<{ pod: string; currentMiB: number; peakMiB: number }[]> {
  const pods = (await getJson<{ items: { metadata: { name: string; uid: string } }[] }>(['pods', '-n', namespace]))?.items ?? [];
  const root = '/sys/fs/cgroup/memory/kubepods';
  const found: { pod: string; currentMiB: number; peakMiB: number }[] = [];
  const dirs = existsSync(root)
    ? [
        root,
        ...readdirSync(root, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => join(root, e.name)),
      ]
    : [];
  for (const pod of pods) {
    const dir = dirs.map((d) => join(d, `pod${pod.metadata.uid}`)).find((d) => existsSync(d));
    if (!dir) continue;
    const read = (file: string) => Number(readFileSync(join(dir, file), 'utf8').trim()) / 1024 / 1024;
    found.push({ pod: pod.metadata.name, currentMiB: Math.round(read('memory.usage_in_bytes')), peakMiB: Math.round(read('memory.max_usage_in_bytes')) });
  }
  return found;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe.skipIf(skipReason !== undefined)('the food-ordering system on a real node, installed with helm', () => {
  beforeAll(async () => {
    const started = Date.now();
    node = await phase('node up', () => startRealNode());
    await phase('images (npm run images) and import', async () => {
      const report = await buildImages({ repoRoot: REPO_ROOT, outDir: join(REPO_ROOT, '.cache', 'images'), stateDir: join(REPO_ROOT, '.cache', 'images', 'state') });
      for (const image of report.images) await node.importImage(image.archive);
    });
    await phase('database on the host', async () => {
      postgres = await startEmbeddedPostgres({ network: { listen: [node.nodeIp], allow: [node.network.podCidr] } });
      const admin = new pg.Client({ connectionString: postgres.url });
      await admin.connect();
      await admin.query(`ALTER ROLE eventide PASSWORD '${DB_PASSWORD}'`);
      await admin.query('CREATE DATABASE food');
      await admin.end();
      db = new pg.Pool({ connectionString: postgres.urlFor('food'), max: 4 });
      db.on('error', () => undefined);
      await db.query(readFileSync(join(FOOD, 'schema.sql'), 'utf8'));
    });
    console.log(`[cluster e2e] ready to install after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, START_TIMEOUT);

  afterAll(async () => {
    if (timings.length > 0) console.log(`[cluster e2e] phases:\n${timings.map((t) => `  ${t.phase.padEnd(48)} ${t.seconds.toFixed(1).padStart(7)} s`).join('\n')}`);
    await db?.end().catch(() => undefined);
    await postgres?.destroy();
    await node?.stop();
  }, PHASE_TIMEOUT);

  it(
    "helm install: the operator runs under the chart's restricted security context and becomes ready",
    async () => {
      helmInstallStartedAt = Date.now();
      await phase('helm install --wait', () => helmOk(['install', RELEASE, CHART_DIR, '--namespace', RELEASE_NS, '--create-namespace', '--wait', '--timeout', '5m']));
      const operator = (await deployments(RELEASE_NS)).find((d) => d.metadata.labels?.['app.kubernetes.io/component'] === 'operator');
      expect(operator?.status?.readyReplicas).toBe(operator?.spec.replicas);
    },
    PHASE_TIMEOUT,
  );

  it(
    'the food-ordering Functions and EventTriggers from the manifests: triggers Ready, functions Ready at zero replicas',
    async () => {
      await phase('apply food-ordering, triggers Ready', async () => {
        await kubectl(['create', 'namespace', APP_NS]);
        const url = `postgres://eventide:${DB_PASSWORD}@${node.nodeIp}:${postgres.port}/food`;
        await kubectl(['create', 'secret', 'generic', 'orders-db', '-n', APP_NS, `--from-literal=url=${url}`]);
        await kubectl(['apply', '-n', APP_NS, '-f', join(FOOD, 'manifests')]);
        await kubectl(['wait', '-n', APP_NS, '--for=condition=Ready', 'eventtriggers', '--all', '--timeout=240s']);
        await kubectl(['wait', '-n', APP_NS, '--for=condition=Ready', 'functions', '--all', '--timeout=120s']);
      });
      const fns = await deployments(APP_NS);
      for (const name of FUNCTIONS) expect(fns.find((d) => d.metadata.name === name)?.spec.replicas, name).toBe(0);
    },
    PHASE_TIMEOUT,
  );

  it(
    'orders placed: every order reaches is_agent_assigned, the functions scale up from zero, nothing processed twice',
    async () => {
      const placing = placeOrders(20, 5);
      const firstDone = await eventually('the first order completed', async () => ((await counts()).assigned > 0 ? Date.now() : undefined), 300_000, 200);
      console.log(`[cluster e2e] helm install → first order completed: ${((firstDone - helmInstallStartedAt) / 1000).toFixed(1)} s`);
      await placing;
      await phase('20 orders to completion', () => allAssigned());
      const latency = await db.query<{ ms: number }>('SELECT extract(epoch FROM assigned_at - created_at) * 1000 AS ms FROM orders WHERE is_agent_assigned ORDER BY 1');
      const sorted = latency.rows.map((r) => Number(r.ms));
      console.log(`[cluster e2e] order → agent assigned p50 ${Math.round(percentile(sorted, 50))} ms, p99 ${Math.round(percentile(sorted, 99))} ms (includes four cold starts)`);
      const scaled = await getJson<{ items: { metadata: { name: string }; status?: { autoscaling?: { desiredReplicas: number } } }[] }>(['functions', '-n', APP_NS]);
      console.log(`[cluster e2e] function replicas now: ${scaled?.items.map((f) => `${f.metadata.name}=${f.status?.autoscaling?.desiredReplicas}`).join(', ')}`);
      const events = await kubectl([
        'get',
        'events',
        '-n',
        APP_NS,
        '--field-selector',
        'involvedObject.kind=Function,reason=ScaledUp',
        '-o',
        'jsonpath={range .items[*]}{.involvedObject.name}{"\\n"}{end}',
      ]);
      for (const name of FUNCTIONS) expect(events, `${name} scaled up from zero`).toContain(name);
      expect(await processedTwice()).toEqual({ events: 0, payments: 0 });
      for (const [namespace, pods] of [
        [RELEASE_NS, await podMemory(RELEASE_NS)],
        [APP_NS, await podMemory(APP_NS)],
      ] as const) {
        for (const p of pods) console.log(`[cluster e2e] memory ${namespace}/${p.pod}: ${p.currentMiB} MiB now, peak ${p.peakMiB} MiB`);
      }
    },
    PHASE_TIMEOUT,
  );

  it(
    'the dispatcher pod killed mid-stream (--grace-period=0 --force): nothing lost, nothing processed twice in effect',
    async () => {
      const before = await counts();
      const placing = placeOrders(40, 10);
      await new Promise((r) => setTimeout(r, 1500));
      await phase('dispatcher pod force-deleted', () => kubectl(['delete', 'pod', '-n', APP_NS, '-l', 'app.kubernetes.io/component=dispatcher', '--grace-period=0', '--force']));
      await placing;
      const after = await phase('40 orders to completion after the kill', () => allAssigned());
      expect(after.placed).toBe(before.placed + 40);
      expect(await processedTwice()).toEqual({ events: 0, payments: 0 });
      const latency = await db.query<{ ms: number }>('SELECT extract(epoch FROM assigned_at - created_at) * 1000 AS ms FROM orders WHERE id > $1 ORDER BY 1', [before.placed]);
      const sorted = latency.rows.map((r) => Number(r.ms));
      console.log(`[cluster e2e] order → agent assigned with the functions up, across the dispatcher kill: p50 ${Math.round(percentile(sorted, 50))} ms, p99 ${Math.round(percentile(sorted, 99))} ms`);
    },
    PHASE_TIMEOUT,
  );

  it(
    'the operator pod deleted: another takes over and nothing it manages changes',
    async () => {
      const before = { app: await revisions(APP_NS) };
      const lease = async () => (await getJson<{ spec: { holderIdentity?: string } }>(['lease', 'eventide-operator', '-n', RELEASE_NS]))?.spec.holderIdentity;
      const leader = await lease();
      expect(leader).toBeTruthy();
      await phase('operator leader deleted, new leader', async () => {
        // The identity is the pod's name plus a random suffix (operator/settings.ts).
        await kubectl(['delete', 'pod', '-n', RELEASE_NS, leader!.replace(/_[0-9a-f]+$/, '')]);
        await eventually(
          'a new leader',
          async () => {
            const now = await lease();
            return now && now !== leader ? now : undefined;
          },
          180_000,
        );
      });
      // A few reconciles later nothing it manages was rewritten.
      await new Promise((r) => setTimeout(r, 5000));
      expect(await revisions(APP_NS)).toEqual(before.app);
      await placeOrders(3);
      await allAssigned();
    },
    PHASE_TIMEOUT,
  );

  it(
    'helm upgrade with a changed value rolls the operator and nothing else',
    async () => {
      const before = { app: await revisions(APP_NS), release: await revisions(RELEASE_NS) };
      await phase('helm upgrade --set operator.logLevel=debug', () =>
        helmOk(['upgrade', RELEASE, CHART_DIR, '--namespace', RELEASE_NS, '--reuse-values', '--set', 'operator.logLevel=debug', '--wait', '--timeout', '5m']),
      );
      const release = await revisions(RELEASE_NS);
      const operatorName = (await deployments(RELEASE_NS)).find((d) => d.metadata.labels?.['app.kubernetes.io/component'] === 'operator')!.metadata.name;
      expect(Number(release[operatorName])).toBe(Number(before.release[operatorName]) + 1);
      await new Promise((r) => setTimeout(r, 5000));
      expect(await revisions(APP_NS)).toEqual(before.app);
      await placeOrders(3);
      await allAssigned();
    },
    PHASE_TIMEOUT,
  );

  it(
    'a trigger on a missing table is Ready=False with the reason in kubectl get et; its siblings keep delivering',
    async () => {
      const trigger = {
        apiVersion: 'eventide.dev/v1alpha1',
        kind: 'EventTrigger',
        metadata: { name: 'refund-issued', namespace: APP_NS },
        spec: { source: { connectionSecretRef: { name: 'orders-db', key: 'url' } }, table: { schema: 'public', name: 'refunds' }, operations: ['insert'], function: { name: 'assign-agent' } },
      };
      await kubectl(['apply', '-f', '-'], stringify(trigger));
      const table = await eventually(
        'refund-issued False TableNotFound',
        async () => {
          const out = await kubectl(['get', 'et', '-n', APP_NS]);
          return /refund-issued\s+refunds\s+assign-agent\s+False\s+TableNotFound/.test(out) ? out : undefined;
        },
        180_000,
      );
      expect(table).toMatch(/new-order\s+orders\s+validate-order\s+True\s+Ready/);
      await placeOrders(3);
      await allAssigned();
      await kubectl(['delete', 'et', 'refund-issued', '-n', APP_NS]);
    },
    PHASE_TIMEOUT,
  );

  it(
    'uninstall: resources deleted, helm uninstall, CRDs removed — no pod, slot or stray object left',
    async () => {
      await phase('delete resources, helm uninstall, remove CRDs', async () => {
        // The slot goes with the triggers when they ask for it.
        for (const name of ['new-order', 'order-validated', 'order-paid', 'order-approved']) {
          await kubectl(['patch', 'et', name, '-n', APP_NS, '--type=merge', '-p', '{"spec":{"source":{"dropSlotOnDelete":true}}}']);
        }
        await kubectl(['delete', 'eventtriggers,functions', '--all', '-n', APP_NS, '--timeout=120s']);
        await helmOk(['uninstall', RELEASE, '--namespace', RELEASE_NS, '--wait', '--timeout', '5m']);
        await kubectl(['delete', '-f', join(REPO_ROOT, 'crds')]);
      });
      const slots = await db.query('SELECT slot_name FROM pg_replication_slots');
      expect(slots.rows).toEqual([]);
      await eventually(
        'no pods left in the release and app namespaces',
        async () => {
          const left = [...((await getJson<{ items: unknown[] }>(['pods', '-n', APP_NS]))?.items ?? []), ...((await getJson<{ items: unknown[] }>(['pods', '-n', RELEASE_NS]))?.items ?? [])];
          return left.length === 0;
        },
        120_000,
      );
      const stray = await kubectl(['get', 'deployments,services,configmaps,secrets,serviceaccounts,roles,rolebindings,leases', '-A', '-l', 'app.kubernetes.io/part-of=eventide', '-o', 'name']);
      expect(stray.trim()).toBe('');
      const clusterScoped = await kubectl(['get', 'clusterroles,clusterrolebindings,crds', '-o', 'name']);
      expect(clusterScoped).not.toMatch(/eventide/);
    },
    PHASE_TIMEOUT,
  );
});
