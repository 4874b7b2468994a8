import { createHash } from 'node:crypto';
import type { V1ConfigMap, V1Deployment, V1EnvVar, V1ResourceRequirements, V1Secret, V1Service, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { API_VERSION, type BackfillResource, type EventTriggerResource } from '../../api/v1alpha1/index.js';
import { DATABASE_URL_ENV, secretEnvName } from '../../common/secretEnv.js';
import { COMPONENT_DISPATCHER, FUNCTION_URL_TEMPLATE, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, MANAGED_BY, PART_OF } from '../labels.js';
import { ownerReference } from '../ownerRefs.js';
import { restrictedContainerSecurityContext, restrictedPodSecurityContext } from '../podSecurity.js';
import { dispatcherNodeOptions } from './nodeHeap.js';
import { chooseSlot, dispatcherName, type SourceRef } from './source.js';

/** How the operator runs dispatchers (from its settings). */
export interface DispatcherSettings {
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  resources?: V1ResourceRequirements;
}

export const DISPATCHER_APP = 'eventide-dispatcher';
export const DISPATCHER_PORT = 9090;
export const DISPATCHER_CONFIG_DIR = '/etc/eventide/triggers';
export const DISPATCHER_CONFIG_KEY = 'triggers.yaml';
/** Annotations naming the source on the dispatcher's objects (label values cannot hold every Secret name). */
export const SOURCE_SECRET_ANNOTATION = 'eventide.dev/source-secret';
export const SOURCE_KEY_ANNOTATION = 'eventide.dev/source-key';
/** Pod-template annotation: a digest of the Secret values the dispatcher reads, so a rotation restarts it. */
export const SECRETS_HASH_ANNOTATION = 'eventide.dev/secrets-hash';

export const DEFAULT_DISPATCHER_RESOURCES: V1ResourceRequirements = {
  requests: { cpu: '50m', memory: '64Mi' },
  limits: { memory: '512Mi' },
};

/** A source's dispatcher objects. */
export interface DispatcherObjects {
  configMap: V1ConfigMap;
  deployment: V1Deployment;
  service: V1Service;
}

/** What the dispatcher needs of a Function its triggers target: its cap on deliveries in flight, how long its events wait for a ready pod. */
export interface FunctionLimit {
  name: string;
  concurrency?: number;
  activationTimeout?: string;
}

/** Where the operator reads a dispatcher's state: its Service, which also lists a pod that is not ready (a dispatcher waiting for its database says why). */
export function dispatcherStateUrl(source: SourceRef): string {
  return `http://${dispatcherName(source)}.${source.namespace}.svc.cluster.local:${DISPATCHER_PORT}/state`;
}

/** The triggers a dispatcher serves, in a stable order. */
function sortedMembers(members: readonly EventTriggerResource[]): EventTriggerResource[] {
  return [...members].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

export function dispatcherSelector(source: SourceRef): Record<string, string> {
  return { [LABEL_NAME]: DISPATCHER_APP, [LABEL_INSTANCE]: dispatcherName(source) };
}

export function dispatcherLabels(source: SourceRef): Record<string, string> {
  return { ...dispatcherSelector(source), [LABEL_COMPONENT]: COMPONENT_DISPATCHER, [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_PART_OF]: PART_OF };
}

/** The source a dispatcher object serves, read back from its annotations. */
export function sourceOfDispatcher(obj: { metadata?: { namespace?: string; annotations?: Record<string, string> } }): SourceRef | undefined {
  const secretName = obj.metadata?.annotations?.[SOURCE_SECRET_ANNOTATION];
  const key = obj.metadata?.annotations?.[SOURCE_KEY_ANNOTATION];
  if (!secretName || !key || !obj.metadata?.namespace) return undefined;
  return { namespace: obj.metadata.namespace, secretName, key };
}

function dispatcherMeta(source: SourceRef, members: readonly EventTriggerResource[]) {
  return {
    name: dispatcherName(source),
    namespace: source.namespace,
    labels: dispatcherLabels(source),
    annotations: { [SOURCE_SECRET_ANNOTATION]: source.secretName, [SOURCE_KEY_ANNOTATION]: source.key },
    // Owned by every trigger of the source and controlled by none: the garbage collector removes the
    // dispatcher when its last trigger is gone.
    ownerReferences: sortedMembers(members).map((t) => ownerReference(t, { controller: false })),
  };
}

/**
 * The Backfills a source's dispatcher runs: those in the source's namespace whose spec.trigger names one
 * of its triggers, sorted by name. One naming any other trigger (missing, invalid, on another source)
 * is in no dispatcher's config: a dispatcher cancels a Backfill that leaves its config.
 */
export function backfillsOfSource(source: SourceRef, members: readonly EventTriggerResource[], backfills: readonly BackfillResource[]): BackfillResource[] {
  const triggers = new Set(members.map((t) => t.metadata.name));
  return backfills.filter((b) => (b.metadata.namespace ?? 'default') === source.namespace && triggers.has(b.spec.trigger.name)).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

/**
 * The dispatcher's configuration: the source's EventTrigger manifests (name, namespace and spec only),
 * sorted, as multi-document YAML the dispatcher loads as it loads local files. The chosen slot and
 * publication are written into every spec, so the dispatcher never has to derive them. Then the
 * Functions' limits, then the Backfills of its triggers (see backfillsOfSource).
 */
export function dispatcherConfig(source: SourceRef, members: readonly EventTriggerResource[], functions: readonly FunctionLimit[] = [], backfills: readonly BackfillResource[] = []): string {
  const slot = chooseSlot(source, members);
  const triggers = sortedMembers(members).map((t) =>
    stringify(
      {
        apiVersion: API_VERSION,
        kind: 'EventTrigger',
        // The generation travels with the spec, so the dispatcher's /state says which one it serves.
        metadata: { name: t.metadata.name, namespace: source.namespace, ...(t.metadata.generation !== undefined ? { generation: t.metadata.generation } : {}) },
        spec: { ...t.spec, source: { ...t.spec.source, slotName: slot.slotName, publicationName: slot.publicationName } },
      },
      { sortMapEntries: true },
    ),
  );
  // Only a Function's concurrency and activation timeout matter to the dispatcher; the image is there because the schema requires one.
  const limits = [...functions]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((fn) =>
      stringify(
        {
          apiVersion: API_VERSION,
          kind: 'Function',
          metadata: { name: fn.name, namespace: source.namespace },
          spec: {
            image: 'n/a',
            ...(fn.concurrency !== undefined ? { concurrency: fn.concurrency } : {}),
            ...(fn.activationTimeout !== undefined ? { scale: { activationTimeout: fn.activationTimeout } } : {}),
          },
        },
        { sortMapEntries: true },
      ),
    );
  const runs = backfillsOfSource(source, members, backfills).map((b) =>
    stringify(
      {
        apiVersion: API_VERSION,
        kind: 'Backfill',
        // The uid tells the dispatcher (and its durable record) this object from an older one of the same
        // name; the operator trusts a /state entry only with this uid.
        metadata: {
          name: b.metadata.name,
          namespace: source.namespace,
          ...(b.metadata.uid !== undefined ? { uid: b.metadata.uid } : {}),
          ...(b.metadata.generation !== undefined ? { generation: b.metadata.generation } : {}),
        },
        spec: b.spec,
      },
      { sortMapEntries: true },
    ),
  );
  return [...triggers, ...limits, ...runs].join('---\n');
}

export function makeDispatcherConfigMap(
  source: SourceRef,
  members: readonly EventTriggerResource[],
  functions: readonly FunctionLimit[] = [],
  backfills: readonly BackfillResource[] = [],
): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: dispatcherMeta(source, members),
    data: { [DISPATCHER_CONFIG_KEY]: dispatcherConfig(source, members, functions, backfills) },
  };
}

/**
 * The dispatcher's Service: how the operator reaches its /state (and Prometheus its /metrics). It
 * publishes a pod that is not ready too, because a dispatcher that cannot reach its database is not
 * ready, and that is exactly when its /state has something to say.
 */
export function makeDispatcherService(source: SourceRef, members: readonly EventTriggerResource[]): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: dispatcherMeta(source, members),
    spec: {
      selector: dispatcherSelector(source),
      publishNotReadyAddresses: true,
      ports: [{ name: 'http', port: DISPATCHER_PORT, targetPort: 'http', protocol: 'TCP' }],
    },
  };
}

/**
 * The Secret keys a source's dispatcher reads, each with the environment variable it arrives in: the
 * database URL first, then each distinct signing secret by variable name (`common/secretEnv.ts`).
 */
function dispatcherSecretRefs(source: SourceRef, members: readonly EventTriggerResource[]): { env: string; name: string; key: string }[] {
  const signing = new Map<string, { name: string; key: string }>();
  for (const t of sortedMembers(members)) {
    const ref = t.spec.delivery.signingSecretRef;
    if (ref) signing.set(secretEnvName(ref), ref);
  }
  return [{ env: DATABASE_URL_ENV, name: source.secretName, key: source.key }, ...[...signing].sort(([a], [b]) => a.localeCompare(b)).map(([env, ref]) => ({ env, name: ref.name, key: ref.key }))];
}

const TLS_DIR = '/etc/eventide/tls';

/**
 * TLS to the source database: the first trigger (by name) that sets spec.source.tls decides for the
 * source. Its CA and client certificate are mounted from their Secret/ConfigMap and named to the
 * dispatcher by flags; the dispatcher verifies the server like sslmode=verify-full.
 */
function databaseTls(members: readonly EventTriggerResource[]): { args: string[]; volumes: V1Volume[]; mounts: V1VolumeMount[] } {
  const tls = sortedMembers(members).find((t) => t.spec.source.tls)?.spec.source.tls;
  const out = { args: [] as string[], volumes: [] as V1Volume[], mounts: [] as V1VolumeMount[] };
  if (!tls) return out;
  const ca = tls.caSecretRef
    ? { secret: { secretName: tls.caSecretRef.name, items: [{ key: tls.caSecretRef.key, path: 'ca.crt' }] } }
    : tls.caConfigMapRef
      ? { configMap: { name: tls.caConfigMapRef.name, items: [{ key: tls.caConfigMapRef.key, path: 'ca.crt' }] } }
      : undefined;
  if (ca) {
    out.volumes.push({ name: 'database-ca', ...ca });
    out.mounts.push({ name: 'database-ca', mountPath: `${TLS_DIR}/ca`, readOnly: true });
    out.args.push('--database-ca', `${TLS_DIR}/ca/ca.crt`);
  }
  if (tls.clientCertSecretRef) {
    out.volumes.push({
      name: 'database-client-cert',
      secret: {
        secretName: tls.clientCertSecretRef.name,
        items: [
          { key: 'tls.crt', path: 'tls.crt' },
          { key: 'tls.key', path: 'tls.key' },
        ],
      },
    });
    out.mounts.push({ name: 'database-client-cert', mountPath: `${TLS_DIR}/client`, readOnly: true });
    out.args.push('--database-cert', `${TLS_DIR}/client/tls.crt`, '--database-key', `${TLS_DIR}/client/tls.key`);
  }
  return out;
}

/**
 * The dispatcher's environment: the database URL and each signing secret, from their Secrets by
 * `secretKeyRef` (never copied into a ConfigMap), and the V8 flags for its memory limit.
 */
function dispatcherEnv(source: SourceRef, members: readonly EventTriggerResource[], resources: V1ResourceRequirements): V1EnvVar[] {
  const [database, ...signing] = dispatcherSecretRefs(source, members).map(({ env, name, key }): V1EnvVar => ({ name: env, valueFrom: { secretKeyRef: { name, key } } }));
  return [database!, { name: 'NODE_OPTIONS', value: dispatcherNodeOptions(resources) }, ...signing];
}

/**
 * A digest of the Secret values a source's dispatcher reads through its environment (the connection
 * URL, each signing secret). Environment variables are read when a pod starts, so a rotated password
 * reaches the dispatcher only through a new pod: the digest in the pod template makes the Secret's
 * change roll the Deployment. Only the digest is stored (truncated SHA-256), never a value.
 */
export function secretsHash(source: SourceRef, members: readonly EventTriggerResource[], secret: (name: string) => V1Secret | undefined): string {
  const hash = createHash('sha256');
  for (const { env, name, key } of dispatcherSecretRefs(source, members)) {
    // Stored Secrets carry data only (stringData is write-only).
    hash.update(`${env}\0${secret(name)?.data?.[key] ?? '(missing)'}\0`);
  }
  // The TLS files are read when the dispatcher connects at start: a rotated CA or client certificate needs a new pod too.
  for (const { name, key } of tlsSecretRefs(members)) hash.update(`tls\0${name}\0${key}\0${secret(name)?.data?.[key] ?? '(missing)'}\0`);
  return hash.digest('hex').slice(0, 16);
}

/** The Secret keys mounted for TLS to the database (a CA in a ConfigMap is not among them). */
function tlsSecretRefs(members: readonly EventTriggerResource[]): { name: string; key: string }[] {
  const tls = sortedMembers(members).find((t) => t.spec.source.tls)?.spec.source.tls;
  return [
    ...(tls?.caSecretRef ? [{ name: tls.caSecretRef.name, key: tls.caSecretRef.key }] : []),
    ...(tls?.clientCertSecretRef ? ['tls.crt', 'tls.key'].map((key) => ({ name: tls.clientCertSecretRef!.name, key })) : []),
  ];
}

/**
 * The dispatcher Deployment: one replica with the Recreate strategy, because one slot has one consumer
 * at a time. The config is mounted from the ConfigMap and reloaded in place (--watch-config); the pod
 * template carries no checksum of it, so a trigger change never restarts the dispatcher.
 */
export function makeDispatcherDeployment(source: SourceRef, members: readonly EventTriggerResource[], settings: DispatcherSettings, secretsDigest?: string): V1Deployment {
  const name = dispatcherName(source);
  const probe = (path: string) => ({ httpGet: { path, port: 'http' }, periodSeconds: 10, failureThreshold: 3 });
  const resources = settings.resources ?? DEFAULT_DISPATCHER_RESOURCES;
  const tls = databaseTls(members);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: dispatcherMeta(source, members),
    spec: {
      replicas: 1,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: dispatcherSelector(source) },
      template: {
        metadata: {
          labels: dispatcherLabels(source),
          ...(secretsDigest ? { annotations: { [SECRETS_HASH_ANNOTATION]: secretsDigest } } : {}),
        },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: restrictedPodSecurityContext(),
          // In-flight deliveries finish and the slot position is confirmed before the pod goes.
          terminationGracePeriodSeconds: 60,
          containers: [
            {
              name: 'dispatcher',
              image: settings.image,
              ...(settings.imagePullPolicy ? { imagePullPolicy: settings.imagePullPolicy } : {}),
              args: ['dispatch', '-f', DISPATCHER_CONFIG_DIR, '--function-url-template', FUNCTION_URL_TEMPLATE, '--port', String(DISPATCHER_PORT), '--watch-config', ...tls.args],
              ports: [{ name: 'http', containerPort: DISPATCHER_PORT, protocol: 'TCP' }],
              env: dispatcherEnv(source, members, resources),
              readinessProbe: probe('/readyz'),
              livenessProbe: probe('/healthz'),
              resources,
              securityContext: restrictedContainerSecurityContext(),
              volumeMounts: [{ name: 'triggers', mountPath: DISPATCHER_CONFIG_DIR, readOnly: true }, { name: 'tmp', mountPath: '/tmp' }, ...tls.mounts],
            },
          ],
          volumes: [{ name: 'triggers', configMap: { name } }, { name: 'tmp', emptyDir: {} }, ...tls.volumes],
        },
      },
    },
  };
}

/** Everything a source's dispatcher consists of: pure, from the source and its triggers. */
export function desiredDispatcherObjects(
  source: SourceRef,
  members: readonly EventTriggerResource[],
  settings: DispatcherSettings,
  secretsDigest?: string,
  functions: readonly FunctionLimit[] = [],
  backfills: readonly BackfillResource[] = [],
): DispatcherObjects {
  return {
    configMap: makeDispatcherConfigMap(source, members, functions, backfills),
    deployment: makeDispatcherDeployment(source, members, settings, secretsDigest),
    service: makeDispatcherService(source, members),
  };
}
