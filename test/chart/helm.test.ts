import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { CHART_DIR, helm } from './helmBinary.js';

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

const NAMESPACE = 'eventide-system';

async function render(...sets: string[]): Promise<Manifest[]> {
  const result = await helm(['template', 'eventide', CHART_DIR, '--namespace', NAMESPACE, ...sets.flatMap((s) => ['--set', s])]);
  expect(result.code, result.stderr).toBe(0);
  return parseAllDocuments(result.stdout)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

function find(manifests: Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.find((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  if (!found) throw new Error(`no ${kind} ${name ?? ''} in ${manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ')}`);
  return found;
}

/** Flattens rules to sorted "group/resource:verb" strings, so equal permissions compare equal. */
function permissions(rules: PolicyRule[]): string[] {
  return rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g || 'core'}/${res}:${v}`)))).sort();
}

function grant(group: string, resources: string[], verbs: string[]): PolicyRule {
  return { apiGroups: [group], resources, verbs };
}

interface Container {
  name: string;
  image: string;
  args: string[];
  ports: { name: string; containerPort: number }[];
  env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  securityContext: Record<string, unknown>;
}

interface PodTemplate {
  spec: { replicas: number; template: { spec: { securityContext: Record<string, unknown>; serviceAccountName: string; containers: Container[] } } };
}

describe('helm chart', () => {
  it('passes helm lint --strict with default values and with every option on', async () => {
    const defaults = await helm(['lint', CHART_DIR, '--strict']);
    expect(defaults.code, defaults.stdout + defaults.stderr).toBe(0);
    const everything = await helm([
      'lint',
      CHART_DIR,
      '--strict',
      '--set',
      'serviceMonitor.enabled=true',
      '--set',
      'grafanaDashboard.namespace=monitoring',
      '--set',
      'dispatcher.image.pullPolicy=Always',
      '--set',
      'operator.extraArgs={--workers=8}',
    ]);
    expect(everything.code, everything.stdout + everything.stderr).toBe(0);
  });

  it('grants exactly the least-privilege cluster permissions, and Leases only in the release namespace', async () => {
    const manifests = await render();
    const clusterRole = find(manifests, 'ClusterRole') as Manifest & { rules: PolicyRule[] };
    const expected = [
      grant('eventide.dev', ['functions', 'eventtriggers'], ['get', 'list', 'watch', 'patch']),
      grant('eventide.dev', ['functions/status', 'eventtriggers/status'], ['patch']),
      grant('eventide.dev', ['functions/finalizers', 'eventtriggers/finalizers'], ['update']),
      // Backfills are read and reported on, never written (their dispatcher runs them).
      grant('eventide.dev', ['backfills'], ['get', 'list', 'watch']),
      grant('eventide.dev', ['backfills/status'], ['patch']),
      grant('apps', ['deployments'], ['get', 'list', 'watch', 'create', 'patch', 'delete']),
      grant('', ['services', 'configmaps'], ['get', 'list', 'watch', 'create', 'patch', 'delete']),
      grant('', ['secrets'], ['get', 'list', 'watch']),
      grant('', ['events'], ['create', 'patch']),
    ];
    expect(permissions(clusterRole.rules)).toEqual(permissions(expected));

    const role = find(manifests, 'Role') as Manifest & { rules: PolicyRule[] };
    expect(role.metadata.namespace).toBe(NAMESPACE);
    expect(permissions(role.rules)).toEqual(permissions([grant('coordination.k8s.io', ['leases'], ['get', 'create', 'update'])]));

    const serviceAccount = find(manifests, 'ServiceAccount');
    for (const binding of [find(manifests, 'ClusterRoleBinding'), find(manifests, 'RoleBinding')] as (Manifest & { subjects: unknown[] })[]) {
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: serviceAccount.metadata.name, namespace: NAMESPACE }]);
    }
  });

  it('confines Secret reads to a Role in each of rbac.secretNamespaces when they are listed', async () => {
    const manifests = await render('rbac.secretNamespaces={food,billing}');
    const clusterRole = find(manifests, 'ClusterRole') as Manifest & { rules: PolicyRule[] };
    expect(permissions(clusterRole.rules).filter((p) => p.startsWith('core/secrets'))).toEqual([]);
    const serviceAccount = find(manifests, 'ServiceAccount');
    for (const namespace of ['food', 'billing']) {
      const role = manifests.find((m) => m.kind === 'Role' && m.metadata.namespace === namespace) as (Manifest & { rules: PolicyRule[] }) | undefined;
      expect(role && permissions(role.rules)).toEqual(permissions([grant('', ['secrets'], ['get', 'list', 'watch'])]));
      const binding = manifests.find((m) => m.kind === 'RoleBinding' && m.metadata.namespace === namespace) as Manifest & { roleRef: { name: string }; subjects: unknown[] };
      expect(binding.roleRef.name).toBe(role!.metadata.name);
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: serviceAccount.metadata.name, namespace: NAMESPACE }]);
    }
  });

  it('runs two leader-elected operator replicas, restricted, probed on /healthz and /readyz', async () => {
    const deployment = find(await render(), 'Deployment') as Manifest & PodTemplate;
    expect(deployment.spec.replicas).toBe(2);
    const pod = deployment.spec.template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    const [container] = pod.containers;
    expect(container!.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(container!.args).toEqual(expect.arrayContaining(['--leader-elect', '--namespace=$(POD_NAMESPACE)', '--dispatcher-image=ghcr.io/eventide-dev/eventide-dispatcher:0.1.0']));
    expect(container!.env).toContainEqual({ name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } });
    expect(container!.ports).toContainEqual(expect.objectContaining({ name: 'http', containerPort: 8080 }));
    expect(container!.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container!.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
  });

  it('takes image repositories and tags from values', async () => {
    const deployment = find(
      await render('operator.image.repository=r.example/op', 'operator.image.tag=1.2.3', 'dispatcher.image.repository=r.example/disp', 'dispatcher.image.tag=4.5.6'),
      'Deployment',
    ) as Manifest & PodTemplate;
    const [container] = deployment.spec.template.spec.containers;
    expect(container!.image).toBe('r.example/op:1.2.3');
    expect(container!.args).toContain('--dispatcher-image=r.example/disp:4.5.6');
  });

  it('creates monitors only when serviceMonitor.enabled', async () => {
    const off = await render();
    expect(off.filter((m) => m.apiVersion === 'monitoring.coreos.com/v1')).toEqual([]);
    const on = await render('serviceMonitor.enabled=true');
    expect(find(on, 'ServiceMonitor')).toBeTruthy();
    expect(find(on, 'PodMonitor')).toBeTruthy();
    const service = find(on, 'Service') as Manifest & { spec: { ports: { name: string }[] } };
    const monitor = find(on, 'ServiceMonitor') as Manifest & { spec: { endpoints: { port: string }[] } };
    expect(service.spec.ports.map((p) => p.name)).toContain(monitor.spec.endpoints[0]!.port);
  });

  it('ships a Grafana dashboard ConfigMap charting every dispatcher and operator metric', async () => {
    const configMap = find(await render(), 'ConfigMap') as Manifest & { data: Record<string, string> };
    expect(configMap.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
    const dashboard = JSON.parse(configMap.data['eventide.json']!) as { panels: { targets?: { expr: string }[] }[] };
    expect(dashboard).toEqual(JSON.parse(readFileSync(join(CHART_DIR, 'dashboards', 'eventide.json'), 'utf8')));
    const exprs = dashboard.panels
      .flatMap((p) => p.targets ?? [])
      .map((t) => t.expr)
      .join('\n');
    const metrics = [
      'eventide_dispatcher_events_received_total',
      'eventide_dispatcher_events_matched_total',
      'eventide_dispatcher_deliveries_total',
      'eventide_dispatcher_attempt_duration_seconds_bucket',
      'eventide_dispatcher_end_to_end_latency_seconds_bucket',
      'eventide_dispatcher_retries_total',
      'eventide_dispatcher_dead_letters_total',
      'eventide_dispatcher_inflight_events',
      'eventide_dispatcher_replication_lag_bytes',
      'eventide_dispatcher_confirmed_lsn',
      'eventide_dispatcher_backlog_events',
      'eventide_dispatcher_events_parked_total',
      'eventide_dispatcher_events_drained_total',
      'eventide_dispatcher_backlog_oldest_age_seconds',
      'eventide_dispatcher_trigger_parking',
      'eventide_dispatcher_trigger_suspended',
      'eventide_operator_reconciles_total',
      'eventide_operator_reconcile_errors_total',
      'eventide_operator_workqueue_depth',
      'eventide_operator_reconcile_duration_seconds_bucket',
      'eventide_operator_is_leader',
    ];
    expect(metrics.filter((m) => !exprs.includes(m))).toEqual([]);
    expect(await render('grafanaDashboard.enabled=false')).not.toContainEqual(expect.objectContaining({ kind: 'ConfigMap' }));
  });

  const rejected = [
    { name: 'two replicas without leader election', sets: ['operator.leaderElection.enabled=false'], error: /leaderElection/ },
    { name: 'an unknown value (a typo)', sets: ['operator.replica=3'], error: /replica/ },
    { name: 'an invalid pull policy', sets: ['operator.image.pullPolicy=Sometimes'], error: /pullPolicy/ },
    { name: 'a Secret namespace that is not a namespace name', sets: ['rbac.secretNamespaces={Food_Team}'], error: /secretNamespaces/ },
  ];

  it.each(rejected)('refuses $name with a message naming it', async ({ sets, error }) => {
    const result = await helm(['template', 'eventide', CHART_DIR, ...sets.flatMap((s) => ['--set', s])]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(error);
  });

  it('keeps the generated CRDs in the chart crds/ folder (installed before templates)', async () => {
    const result = await helm(['show', 'crds', CHART_DIR]);
    expect(result.code, result.stderr).toBe(0);
    const names = parseAllDocuments(result.stdout)
      .map((d) => (d.toJS() as Manifest).metadata.name)
      .sort();
    expect(names).toEqual(['backfills.eventide.dev', 'eventtriggers.eventide.dev', 'functions.eventide.dev']);
  });
});
