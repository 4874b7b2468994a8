/**
 * The single source of truth for eventide's resources. The CRD YAML (crds/), the TypeScript types and
 * local validation are all derived from these schemas, so they cannot drift apart.
 */

import type { V1EnvFromSource, V1EnvVar, V1LocalObjectReference, V1ResourceRequirements } from '@kubernetes/client-node';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { DURATION_PATTERN } from './duration.js';

export const GROUP = 'eventide.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** A cross-field rule: the CEL form runs in the API server, the predicate in local mode; one definition. */
export interface CrossFieldRule<T> {
  rule: string;
  message: string;
  /** Field path the error is reported on, relative to the object the rule sits on. */
  fieldPath?: string;
  holds(value: T): boolean;
}

/** A Kubernetes object embedded as-is (validated by Kubernetes itself when it lands in a Deployment). */
function kubeObject<T>(description: string): TSchema & { static: T } {
  // A plain open object (not Type.Unsafe) so TypeBox's own validator can walk it.
  return Type.Object({}, { additionalProperties: true, description, 'x-kubernetes-preserve-unknown-fields': true }) as unknown as TSchema & { static: T };
}

const Duration = (description: string, defaultValue?: string) => Type.String({ pattern: DURATION_PATTERN, description, ...(defaultValue ? { default: defaultValue } : {}) });

export const SecretKeyRef = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 253, description: "Name of a Secret in the resource's namespace." }),
    key: Type.String({ minLength: 1, default: 'url', description: 'Key within the Secret.' }),
  },
  { description: 'A key of a Secret in the same namespace.' },
);

export const SinkRef = Type.Object(
  {
    url: Type.String({ pattern: '^https?://.+', description: 'HTTP(S) URL events are POSTed to.' }),
  },
  { description: 'An HTTP endpoint outside eventide.' },
);

export const FunctionRef = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 63, description: 'Name of a Function in the same namespace.' }) },
  { description: 'The Function whose Service receives the events.' },
);

export const Operation = Type.Union([Type.Literal('insert'), Type.Literal('update'), Type.Literal('delete'), Type.Literal('truncate')]);

export const Backoff = Type.Object(
  {
    policy: Type.Union([Type.Literal('exponential'), Type.Literal('linear'), Type.Literal('constant')], {
      default: 'exponential',
      description: 'How the wait grows between attempts; full jitter is applied to every policy.',
    }),
    delay: Duration('Base wait before the first retry.', '1s'),
    maxDelay: Duration('Upper bound of any single wait.', '5m'),
  },
  { description: 'Wait between attempts.', default: {} },
);

export const Delivery = Type.Object(
  {
    retries: Type.Integer({ minimum: 0, maximum: 100, default: 8, description: 'Retries after the first attempt before the event is dead-lettered.' }),
    backoff: Backoff,
    timeout: Duration('Per-attempt timeout; a function that does not answer in time counts as a failed attempt.', '30s'),
    maxEventAge: Duration('Events older than this (since commit) are dead-lettered instead of retried.', '1h'),
    retryAfterMax: Duration('Largest Retry-After a function may ask for.', '10m'),
    deadLetterSink: Type.Optional(Type.Object({ url: SinkRef.properties.url }, { description: 'Also POST dead letters here; the dead-letter table always records them.' })),
    signingSecretRef: Type.Optional(
      Type.Object(
        { name: SecretKeyRef.properties.name, key: Type.String({ minLength: 1, default: 'secret' }) },
        {
          description: 'Sign payloads with HMAC-SHA256 (Standard Webhooks headers) using this Secret key.',
        },
      ),
    ),
  },
  { description: 'Retries, timeouts and dead-lettering.', default: {} },
);

export const EventTriggerSpec = Type.Object(
  {
    source: Type.Object(
      {
        connectionSecretRef: SecretKeyRef,
        slotName: Type.Optional(Type.String({ pattern: '^[a-z0-9_]{1,63}$', description: 'Replication slot to use (created if absent). Default: eventide_<hash of source>.' })),
        publicationName: Type.Optional(Type.String({ pattern: '^[a-z0-9_]{1,63}$', description: 'Publication to use (created if absent). Default: the slot name.' })),
        dropSlotOnDelete: Type.Boolean({ default: false, description: 'Drop the replication slot and publication when the last trigger of this source is deleted.' }),
        tls: Type.Optional(
          Type.Object(
            {
              caSecretRef: Type.Optional(
                Type.Object({ name: SecretKeyRef.properties.name, key: Type.String({ minLength: 1, default: 'ca.crt' }) }, { description: 'A Secret key holding the CA certificate(s).' }),
              ),
              caConfigMapRef: Type.Optional(
                Type.Object(
                  { name: Type.String({ minLength: 1, maxLength: 253 }), key: Type.String({ minLength: 1, default: 'ca.crt' }) },
                  { description: 'A ConfigMap key holding the CA certificate(s).' },
                ),
              ),
              clientCertSecretRef: Type.Optional(
                Type.Object({ name: SecretKeyRef.properties.name }, { description: 'A kubernetes.io/tls Secret (tls.crt, tls.key): the client certificate, for certificate authentication.' }),
              ),
            },
            {
              description:
                'TLS to the database: the server certificate is verified against this CA, host name included (sslmode=verify-full). Mounted into the dispatcher; a changed CA reaches it when its pod restarts. Triggers of one source share one dispatcher: the first (by name) that sets tls decides.',
            },
          ),
        ),
      },
      { description: 'The database whose changes trigger events. Triggers that share a source share one dispatcher and one slot.' },
    ),
    table: Type.Object(
      {
        schema: Type.String({ minLength: 1, default: 'public', description: 'Schema of the table.' }),
        name: Type.String({ minLength: 1, description: 'Name of the table.' }),
      },
      { description: 'The table whose row changes fire this trigger.' },
    ),
    operations: Type.Array(Operation, {
      minItems: 1,
      uniqueItems: true,
      default: ['insert', 'update', 'delete'],
      description: 'Which changes fire: insert, update, delete, truncate.',
    }),
    columns: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description: 'Updates fire only when one of these columns changed (needs REPLICA IDENTITY FULL to compare).',
      }),
    ),
    filter: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 4096,
        description: 'CEL expression over `old`, `new` and `op` that must be true for the event to fire, e.g. "new.is_validated == false".',
      }),
    ),
    function: Type.Optional(FunctionRef),
    sink: Type.Optional(SinkRef),
    delivery: Delivery,
    ordering: Type.Union([Type.Literal('key'), Type.Literal('none')], {
      default: 'key',
      description: 'key: changes to one row arrive in commit order; none: no ordering, highest throughput.',
    }),
    concurrency: Type.Integer({ minimum: 1, maximum: 1024, default: 64, description: 'Deliveries in flight at once for this trigger.' }),
    batch: Type.Object(
      {
        maxSize: Type.Integer({ minimum: 1, maximum: 1000, default: 1, description: 'Events per request; more than 1 sends a JSON array.' }),
        maxWait: Duration(
          'How long a partial batch may wait for more events before it is sent. 0s (the default): a partial batch goes as soon as a ' +
            'delivery slot is free, and batches fill by themselves while requests are in flight; set it to trade latency for fuller ' +
            'batches (a function with a high cost per request).',
          '0s',
        ),
      },
      { default: {}, description: 'Batching of events into one request.' },
    ),
    format: Type.Union([Type.Literal('cloudevents'), Type.Literal('cloudevents-structured'), Type.Literal('hasura')], {
      default: 'cloudevents',
      description: 'cloudevents: CloudEvents 1.0 binary mode; cloudevents-structured: one JSON envelope; hasura: Hasura event-trigger payload.',
    }),
    suspend: Type.Boolean({
      default: false,
      description:
        "While true, this trigger's matching row changes are kept in its durable backlog in the source database (table eventide.backlog) " +
        'instead of being delivered: nothing is sent, nothing is lost, and the replication slot does not hold WAL back for them. ' +
        'Setting it back to false delivers them, in commit order per row.',
    }),
  },
  { description: 'Which row changes to deliver, where, and how.' },
);

export const eventTriggerRules: CrossFieldRule<EventTriggerSpecT>[] = [
  {
    rule: 'has(self.function) != has(self.sink)',
    message: 'exactly one of spec.function or spec.sink must be set',
    holds: (s) => (s.function === undefined) !== (s.sink === undefined),
  },
  {
    rule: "!has(self.columns) || self.operations.exists(o, o == 'update')",
    message: 'spec.columns only applies to updates: add "update" to spec.operations or remove spec.columns',
    holds: (s) => s.columns === undefined || s.operations.includes('update'),
  },
  {
    rule: "self.batch.maxSize == 1 || self.format != 'hasura'",
    message: 'the hasura format delivers one event per request: set spec.batch.maxSize to 1',
    holds: (s) => s.batch.maxSize === 1 || s.format !== 'hasura',
  },
  {
    rule: '!has(self.source.tls) || !(has(self.source.tls.caSecretRef) && has(self.source.tls.caConfigMapRef))',
    message: 'spec.source.tls: give the CA in caSecretRef or in caConfigMapRef, not both',
    holds: (s) => !(s.source.tls?.caSecretRef && s.source.tls.caConfigMapRef),
  },
];

export const Scale = Type.Object(
  {
    min: Type.Integer({ minimum: 0, maximum: 1000, default: 0, description: 'Fewest pods, also when idle; 0 lets the function scale to zero.' }),
    max: Type.Integer({ minimum: 1, maximum: 1000, default: 10, description: 'Most pods, however large the demand.' }),
    target: Type.Integer({
      minimum: 1,
      maximum: 100000,
      default: 10,
      description: 'Deliveries one pod should have pending at once: pods = ceil(events waiting for the function / target), within min and max.',
    }),
    scaleDownDelay: Duration('How long the demand must stay lower before pods are removed (scale-ups are immediate).', '30s'),
    idleTimeout: Duration('How long with nothing pending before the last pod is removed (with min 0).', '1m'),
    activationTimeout: Duration(
      'How long events wait, without spending retries, for a function with no ready pods (scaling from zero, a rollout) before ' +
        'its triggers report it unavailable and the usual retries and dead-lettering apply.',
      '2m',
    ),
  },
  {
    description: "Scale the function's pods with the demand the dispatchers see (events in flight, ready to send and in the backlog), " + 'to zero when idle. Exclusive with spec.replicas.',
  },
);

export const FunctionSpec = Type.Object(
  {
    image: Type.String({ minLength: 1, description: 'Container image that serves the function over HTTP.' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 8080, description: 'Port the container listens on.' }),
    replicas: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 1000,
        description:
          "Pods serving the function (exclusive with spec.scale). Unset, and without spec.scale, the operator leaves the Deployment's count alone (1 when it is created), so `kubectl scale`, an HPA or KEDA may own it; the Function's /scale subresource sets this field.",
      }),
    ),
    concurrency: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100000,
        description:
          "Deliveries in flight to the function at once, across every EventTrigger that targets it (each trigger also keeps its own spec.concurrency). Unset: no limit beyond the triggers'.",
      }),
    ),
    scale: Type.Optional(Scale),
    env: Type.Optional(Type.Array(kubeObject<V1EnvVar>('An environment variable (core/v1 EnvVar).'))),
    envFrom: Type.Optional(Type.Array(kubeObject<V1EnvFromSource>('A source of environment variables (core/v1 EnvFromSource).'))),
    resources: Type.Optional(kubeObject<V1ResourceRequirements>('CPU and memory requests and limits (core/v1 ResourceRequirements).')),
    serviceAccountName: Type.Optional(Type.String({ minLength: 1, description: "ServiceAccount the function's pods run as." })),
    imagePullSecrets: Type.Optional(Type.Array(kubeObject<V1LocalObjectReference>('A Secret with registry credentials.'))),
    healthPath: Type.String({ default: '/healthz', pattern: '^/', description: 'Liveness probe path (the function runtime serves /healthz).' }),
    readinessPath: Type.String({ default: '/readyz', pattern: '^/', description: 'Readiness probe path (the function runtime serves /readyz).' }),
  },
  { description: 'A containerised HTTP function eventide runs as a Deployment and a Service.' },
);

export const functionRules: CrossFieldRule<FunctionSpecT>[] = [
  {
    rule: '!(has(self.replicas) && has(self.scale))',
    message: 'spec.replicas and spec.scale are exclusive: spec.scale lets eventide set the replicas from the demand; remove one of them',
    holds: (s) => !(s.replicas !== undefined && s.scale !== undefined),
  },
  {
    rule: '!has(self.scale) || self.scale.min <= self.scale.max',
    message: 'spec.scale.min must not exceed spec.scale.max',
    holds: (s) => s.scale === undefined || s.scale.min <= s.scale.max,
  },
];

export const Condition = Type.Object({
  type: Type.String({ description: 'Ready, or a specific aspect such as FunctionResolved or SourceReady.' }),
  status: Type.Union([Type.Literal('True'), Type.Literal('False'), Type.Literal('Unknown')], { description: 'True, False or Unknown.' }),
  reason: Type.String({ description: 'One CamelCase word saying why, for tools.' }),
  message: Type.String({ description: 'What is wrong and what to do, for people.' }),
  lastTransitionTime: Type.String({ description: 'When the status last changed.' }),
  observedGeneration: Type.Optional(Type.Integer({ description: 'The metadata.generation this condition describes.' })),
});

export const FunctionStatus = Type.Object({
  conditions: Type.Optional(Type.Array(Condition)),
  observedGeneration: Type.Optional(Type.Integer()),
  url: Type.Optional(Type.String({ description: "In-cluster URL of the function's Service." })),
  readyReplicas: Type.Optional(Type.Integer()),
  replicas: Type.Optional(Type.Integer({ description: "Pods of the function's Deployment now (the /scale subresource reads it)." })),
  selector: Type.Optional(Type.String({ description: "Label selector of the function's pods (for the /scale subresource: HPA, KEDA)." })),
  autoscaling: Type.Optional(
    Type.Object(
      {
        desiredReplicas: Type.Integer({ description: 'Pods the autoscaler asks for now.' }),
        reason: Type.String({ description: 'Why, in one CamelCase word: ScaleUp, ScaleDown, Idle, ...' }),
        message: Type.String({ description: 'The demand behind the last decision.' }),
        lastScaleTime: Type.Optional(Type.String({ description: 'When the autoscaler last changed the replicas.' })),
      },
      { description: 'The last decision of the autoscaler (spec.scale).' },
    ),
  ),
});

export const EventTriggerStatus = Type.Object({
  conditions: Type.Optional(Type.Array(Condition)),
  observedGeneration: Type.Optional(Type.Integer()),
  sinkUrl: Type.Optional(Type.String({ description: 'Where events are delivered.' })),
  dispatcher: Type.Optional(Type.String({ description: "Name of the dispatcher Deployment serving this trigger's source." })),
});

export const BackfillSpec = Type.Object(
  {
    trigger: Type.Object(
      { name: Type.String({ minLength: 1, maxLength: 253, description: 'Name of an EventTrigger in the same namespace.' }) },
      { description: "The EventTrigger whose function receives the table's existing rows, through the trigger's own lane: its filter, format, signing, retries and dead letters." },
    ),
    filter: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 4096,
        description: "CEL expression over `new` (the row) that must be true for the row to be sent, on top of the trigger's own filter, e.g. \"new.status == 'open'\".",
      }),
    ),
    batchSize: Type.Integer({
      minimum: 1,
      maximum: 10000,
      default: 1000,
      description: 'Rows read per chunk (one query in primary-key order, no lock held on the table); the memory a backfill holds is one or two chunks.',
    }),
    rowsPerSecond: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000000, description: "Most rows sent per second. Unset: as fast as the function takes them, leaving half of the trigger's concurrency to live changes." }),
    ),
  },
  {
    description:
      "Sends every existing row of an EventTrigger's table to its function as an event of op `read`, consistent with live changes " +
      '(a row is never sent in a state older than a change already delivered), resumable after a restart.',
  },
);

export const BackfillPhase = Type.Union([Type.Literal('Pending'), Type.Literal('Running'), Type.Literal('Complete'), Type.Literal('Failed'), Type.Literal('Cancelled')], {
  description: 'Pending: not started (waiting for its trigger or dispatcher); Running; Complete: every row was read and settled; Failed (see message); Cancelled.',
});

export const BackfillStatus = Type.Object({
  conditions: Type.Optional(Type.Array(Condition)),
  observedGeneration: Type.Optional(Type.Integer()),
  phase: Type.Optional(BackfillPhase),
  rowsRead: Type.Optional(Type.Integer({ description: 'Rows read from the table and settled (delivered, dead-lettered, kept in the backlog, or left out by a filter).' })),
  rowsSent: Type.Optional(Type.Integer({ description: 'Of those, rows that passed the filters and were sent as events.' })),
  rowsEstimate: Type.Optional(Type.Integer({ description: "The table's row count when the backfill started (the planner's estimate for large tables)." })),
  progress: Type.Optional(Type.String({ description: 'rowsRead of rowsEstimate, as a percentage (for kubectl get).' })),
  cursor: Type.Optional(Type.String({ description: 'Primary key of the last row of the last completed chunk: where a restart resumes.' })),
  startTime: Type.Optional(Type.String({ description: 'When the first chunk was read.' })),
  completionTime: Type.Optional(Type.String({ description: 'When the backfill completed, failed or was cancelled.' })),
  message: Type.Optional(Type.String({ description: 'What the backfill is doing or waiting for, or why it failed.' })),
  dispatcher: Type.Optional(Type.String({ description: 'Name of the dispatcher Deployment running it.' })),
});

export type EventTriggerSpecT = Static<typeof EventTriggerSpec>;
export type FunctionSpecT = Static<typeof FunctionSpec>;
export type ConditionT = Static<typeof Condition>;
export type FunctionStatusT = Static<typeof FunctionStatus>;
export type EventTriggerStatusT = Static<typeof EventTriggerStatus>;
export type BackfillSpecT = Static<typeof BackfillSpec>;
export type BackfillStatusT = Static<typeof BackfillStatus>;
export type BackfillPhaseT = Static<typeof BackfillPhase>;
export type OperationT = Static<typeof Operation>;
export type DeliveryT = Static<typeof Delivery>;
