/**
 * The CRDs and the chart against a real kube-apiserver (test/harness/controlPlane.ts): the API server
 * accepts the generated CRDs, enforces their schema and CEL rules with their messages, documents them
 * for `kubectl explain`, and `helm install` with default values yields an operator whose
 * least-privilege RBAC is enough to do its job.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { EventTriggerSpec, eventTriggerRules } from '../../api/v1alpha1/schema.js';
import { parseEventTrigger } from '../../api/v1alpha1/validate.js';
import { freePort } from '../../common/loopback.js';
import { type ControlPlane, startControlPlane } from '../harness/controlPlane.js';
import { CHART_DIR, helm, REPO_ROOT } from './helmBinary.js';

const TIMEOUT = 120_000;
const RELEASE_NAMESPACE = 'eventide-system';
const USER_NAMESPACE = 'team-a';
const SERVICE_ACCOUNT = `system:serviceaccount:${RELEASE_NAMESPACE}:eventide`;

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A kubeconfig acting as an existing ServiceAccount (a TokenRequest token instead of the admin certificate). */
async function serviceAccountKubeconfig(cp: ControlPlane, namespace: string, name: string): Promise<string> {
  const token = await cp.kubectl(['create', 'token', name, '-n', namespace, '--duration=1h']);
  if (token.code !== 0) throw new Error(`kubectl create token ${namespace}/${name}: ${token.stderr}`);
  const config = parse(readFileSync(cp.kubeconfigPath, 'utf8')) as { users: { user: unknown }[] };
  for (const entry of config.users) entry.user = { token: token.stdout.trim() };
  const path = join(cp.dir, `${namespace}-${name}.kubeconfig`);
  writeFileSync(path, stringify(config), { mode: 0o600 });
  return path;
}

function trigger(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: USER_NAMESPACE },
    spec: { source: { connectionSecretRef: { name: 'orders-db' } }, table: { name: 'orders' }, ...spec },
  };
}

function fn(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name, namespace: USER_NAMESPACE }, spec };
}

describe('CRDs and chart on a real kube-apiserver', () => {
  let cp: ControlPlane;
  let operator: ChildProcess | undefined;

  beforeAll(async () => {
    cp = await startControlPlane({ build: false });
    for (const ns of [RELEASE_NAMESPACE, USER_NAMESPACE]) expect((await cp.kubectl(['create', 'namespace', ns])).code).toBe(0);
    // The release namespace enforces the Pod Security "restricted" profile, and warns about it.
    const labelled = await cp.kubectl(['label', 'namespace', RELEASE_NAMESPACE, 'pod-security.kubernetes.io/enforce=restricted', 'pod-security.kubernetes.io/warn=restricted']);
    expect(labelled.code, labelled.stderr).toBe(0);
  }, TIMEOUT);

  afterAll(async () => {
    if (operator && operator.exitCode === null) {
      const exited = new Promise((r) => operator!.once('exit', r));
      operator.kill('SIGKILL');
      await exited;
    }
    await cp?.stop();
  }, TIMEOUT);

  it(
    'installs the chart with default values: CRDs, RBAC, operator, no Pod Security warnings',
    async () => {
      const installed = await helm(['install', 'eventide', CHART_DIR, '--namespace', RELEASE_NAMESPACE], { KUBECONFIG: cp.kubeconfigPath });
      expect(installed.code, installed.stderr).toBe(0);
      expect(installed.stderr).not.toMatch(/PodSecurity/);
      const established = await cp.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/functions.eventide.dev', 'crd/eventtriggers.eventide.dev', 'crd/backfills.eventide.dev']);
      expect(established.code, established.stderr).toBe(0);
      const replicas = await cp.kubectl(['get', 'deployment', 'eventide', '-n', RELEASE_NAMESPACE, '-o', 'jsonpath={.spec.replicas}']);
      expect(replicas.stdout).toBe('2');
    },
    TIMEOUT,
  );

  it(
    'accepts `kubectl apply -f crds/` (structural schemas, CEL rules within the cost budget)',
    async () => {
      const applied = await cp.kubectl(['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, 'crds')]);
      expect(applied.code, applied.stderr).toBe(0);
      for (const name of ['functions.eventide.dev', 'eventtriggers.eventide.dev', 'backfills.eventide.dev']) {
        const got = await cp.kubectl(['get', 'crd', name, '-o', 'json']);
        const conditions = (JSON.parse(got.stdout) as { status: { conditions: { type: string; status: string }[] } }).status.conditions;
        expect(conditions).toContainEqual(expect.objectContaining({ type: 'Established', status: 'True' }));
        expect(conditions.filter((c) => c.type === 'NonStructuralSchema')).toEqual([]);
      }
    },
    TIMEOUT,
  );

  it(
    'documents fields for kubectl explain',
    async () => {
      const delivery = EventTriggerSpec.properties.delivery;
      const explained = await eventually('kubectl explain to know EventTrigger', async () => {
        const result = await cp.kubectl(['explain', 'eventtrigger.spec.delivery']);
        return result.code === 0 ? result.stdout : undefined;
      });
      expect(explained).toContain(delivery.description!);
      // kubectl wraps long lines; compare word by word.
      const words = (text: string) => text.split(/\s+/).filter(Boolean).join(' ');
      expect(words(explained)).toContain(words(delivery.properties.retries.description!));
    },
    TIMEOUT,
  );

  const rejected = [
    {
      name: "an EventTrigger with both function and sink, with the CEL rule's message",
      given: trigger('both', { function: { name: 'f' }, sink: { url: 'http://example.com' } }),
      error: eventTriggerRules[0]!.message,
    },
    {
      name: "an EventTrigger with columns but no update operation, with the CEL rule's message",
      given: trigger('columns', { function: { name: 'f' }, operations: ['insert'], columns: ['is_paid'] }),
      error: eventTriggerRules[1]!.message,
    },
    { name: 'a Function with port 70000, naming spec.port', given: fn('big-port', { image: 'example/f:1', port: 70000 }), error: 'spec.port' },
    { name: 'an EventTrigger with a malformed duration, naming the field', given: trigger('dur', { sink: { url: 'http://x' }, delivery: { timeout: 'soon' } }), error: 'spec.delivery.timeout' },
  ];

  it.each(rejected)(
    'rejects $name',
    async ({ given, error }) => {
      const result = await cp.kubectl(['create', '-f', '-'], JSON.stringify(given));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(error);
    },
    TIMEOUT,
  );

  it(
    'fills in the same defaults as local validation (one schema, two enforcers)',
    async () => {
      const manifest = trigger('defaults', { function: { name: 'validate-order' } });
      const created = await cp.kubectl(['create', '-f', '-', '-o', 'json'], JSON.stringify(manifest));
      expect(created.code, created.stderr).toBe(0);
      const stored = JSON.parse(created.stdout) as { spec: unknown };
      expect(stored.spec).toEqual(parseEventTrigger(manifest).spec);
    },
    TIMEOUT,
  );

  it(
    'shows printer columns: the function or the sink, Ready and Reason',
    async () => {
      const sink = await cp.kubectl(['create', '-f', '-'], JSON.stringify(trigger('to-sink', { sink: { url: 'https://hooks.example.com/orders' } })));
      expect(sink.code, sink.stderr).toBe(0);
      const status = await cp.kubectl([
        'patch',
        'eventtrigger',
        'to-sink',
        '-n',
        USER_NAMESPACE,
        '--subresource=status',
        '--type=merge',
        '-p',
        JSON.stringify({ status: { conditions: [{ type: 'Ready', status: 'False', reason: 'SecretNotFound', message: 'm', lastTransitionTime: '2026-01-01T00:00:00Z' }] } }),
      ]);
      expect(status.code, status.stderr).toBe(0);
      const table = await cp.kubectl(['get', 'et', '-n', USER_NAMESPACE, '-o', 'wide']);
      expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+TABLE\s+FUNCTION\/SINK\s+READY\s+REASON\s+/);
      expect(table.stdout).toMatch(/defaults\s+orders\s+validate-order\s/);
      expect(table.stdout).toMatch(/to-sink\s+orders\s+https:\/\/hooks\.example\.com\/orders\s+False\s+SecretNotFound\s/);
    },
    TIMEOUT,
  );

  const permissions: { verb: string; resource: string; sub?: string; namespace: string; allowed: boolean }[] = [
    { verb: 'watch', resource: 'eventtriggers.eventide.dev', namespace: '--all-namespaces', allowed: true },
    { verb: 'patch', resource: 'functions.eventide.dev', sub: 'status', namespace: USER_NAMESPACE, allowed: true },
    { verb: 'update', resource: 'eventtriggers.eventide.dev', sub: 'finalizers', namespace: USER_NAMESPACE, allowed: true },
    { verb: 'delete', resource: 'deployments.apps', namespace: USER_NAMESPACE, allowed: true },
    { verb: 'create', resource: 'configmaps', namespace: USER_NAMESPACE, allowed: true },
    { verb: 'list', resource: 'secrets', namespace: USER_NAMESPACE, allowed: true },
    { verb: 'create', resource: 'events', namespace: USER_NAMESPACE, allowed: true },
    { verb: 'update', resource: 'deployments.apps', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'update', resource: 'eventtriggers.eventide.dev', sub: 'status', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'update', resource: 'leases.coordination.k8s.io', namespace: RELEASE_NAMESPACE, allowed: true },
    { verb: 'delete', resource: 'eventtriggers.eventide.dev', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'watch', resource: 'backfills.eventide.dev', namespace: '--all-namespaces', allowed: true },
    { verb: 'patch', resource: 'backfills.eventide.dev', sub: 'status', namespace: USER_NAMESPACE, allowed: true },
    { verb: 'update', resource: 'backfills.eventide.dev', sub: 'status', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'patch', resource: 'backfills.eventide.dev', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'delete', resource: 'backfills.eventide.dev', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'create', resource: 'secrets', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'create', resource: 'pods', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'update', resource: 'leases.coordination.k8s.io', namespace: USER_NAMESPACE, allowed: false },
    { verb: 'delete', resource: 'leases.coordination.k8s.io', namespace: RELEASE_NAMESPACE, allowed: false },
  ];

  const permissionCases = permissions.map((p) => ({
    ...p,
    name: `${p.allowed ? 'may' : 'may not'} ${p.verb} ${p.resource}${p.sub ? `/${p.sub}` : ''} ${p.namespace === '--all-namespaces' ? 'cluster-wide' : `in ${p.namespace}`}`,
  }));

  it.each(permissionCases)(
    'the operator $name',
    async ({ verb, resource, sub, namespace, allowed }) => {
      const ns = namespace === '--all-namespaces' ? [namespace] : ['-n', namespace];
      const result = await cp.kubectl(['auth', 'can-i', verb, resource, ...(sub ? [`--subresource=${sub}`] : []), ...ns, `--as=${SERVICE_ACCOUNT}`]);
      expect(result.stdout.trim()).toBe(allowed ? 'yes' : 'no');
    },
    TIMEOUT,
  );

  it(
    "runs the operator as the chart's ServiceAccount with the chart's args: it leads and reconciles",
    async () => {
      const deployment = JSON.parse((await cp.kubectl(['get', 'deployment', 'eventide', '-n', RELEASE_NAMESPACE, '-o', 'json'])).stdout) as {
        spec: { template: { spec: { containers: { args: string[] }[] } } };
      };
      const port = await freePort();
      const kubeconfig = await serviceAccountKubeconfig(cp, RELEASE_NAMESPACE, 'eventide');
      const args = deployment.spec.template.spec.containers[0]!.args.map((a) => a.replace('$(POD_NAMESPACE)', RELEASE_NAMESPACE))
        .filter((a) => !a.startsWith('--metrics-port'))
        .concat([`--metrics-port=${port}`, '--metrics-host=127.0.0.1', `--kubeconfig=${kubeconfig}`]);
      const logPath = join(cp.dir, 'operator.log');
      let log = '';
      operator = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'operator', 'main.ts'), ...args], {
        cwd: REPO_ROOT,
        env: { ...process.env, POD_NAME: 'eventide-test-0', KUBECONFIG: kubeconfig },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const collect = (chunk: Buffer) => {
        log += chunk.toString();
        writeFileSync(logPath, log);
      };
      operator.stdout!.on('data', collect);
      operator.stderr!.on('data', collect);

      await eventually(
        'the operator to lead',
        async () => {
          if (operator!.exitCode !== null) throw new Error(`operator exited ${operator!.exitCode}:\n${log}`);
          try {
            const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
            return /^eventide_operator_is_leader 1$/m.test(metrics) ? true : undefined;
          } catch {
            return undefined;
          }
        },
        60_000,
      );

      const created = await cp.kubectl(['create', '-f', '-'], JSON.stringify(fn('greeter', { image: 'example/greeter:1' })));
      expect(created.code, created.stderr).toBe(0);
      await eventually(
        "the Function's Deployment and status",
        async () => {
          const got = await cp.kubectl(['get', 'deployment', 'greeter', '-n', USER_NAMESPACE, '-o', 'name']);
          const observed = await cp.kubectl(['get', 'function', 'greeter', '-n', USER_NAMESPACE, '-o', 'jsonpath={.status.observedGeneration}']);
          return got.code === 0 && observed.stdout === '1' ? true : undefined;
        },
        60_000,
      );
      expect(log).not.toMatch(/forbidden/i);

      operator.kill('SIGTERM');
      const code = await new Promise<number | null>((r) => operator!.once('exit', (c) => r(c)));
      expect(code, log).toBe(0);
    },
    TIMEOUT,
  );
});
