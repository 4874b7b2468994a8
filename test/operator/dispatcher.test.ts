import type { V1Secret } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type EventTriggerResource, parseEventTrigger } from '../../api/v1alpha1/index.js';
import { secretEnvName } from '../../common/secretEnv.js';
import { DISPATCH_USAGE } from '../../dispatcher/settings.js';
import { decideTrigger } from '../../operator/eventtrigger/decide.js';
import { dispatcherConfig, makeDispatcherConfigMap, makeDispatcherDeployment, secretsHash, sourceOfDispatcher } from '../../operator/eventtrigger/dispatcher.js';
import { chooseSlot, defaultSlotName, dispatcherName, type SourceRef, sourceOf } from '../../operator/eventtrigger/source.js';

const SETTINGS = { image: 'ghcr.io/eventide-dev/eventide:0.1.0' };

function trigger(name: string, spec: Record<string, unknown> = {}, namespace = 'food'): EventTriggerResource {
  const parsed = parseEventTrigger({
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace },
    spec: {
      source: { connectionSecretRef: { name: 'orders-db', key: 'url' } },
      table: { name: 'orders' },
      function: { name: 'validate-order' },
      ...spec,
    },
  });
  parsed.metadata.uid = `uid-${name}`;
  return parsed;
}

const source: SourceRef = { namespace: 'food', secretName: 'orders-db', key: 'url' };

describe('dispatcherName', () => {
  const cases: { name: string; given: SourceRef; expect: RegExp | string }[] = [
    { name: 'is eventide-dispatcher-<secret>-<8 hex>', given: source, expect: /^eventide-dispatcher-orders-db-[0-9a-f]{8}$/ },
    {
      name: 'makes the Secret name DNS-safe (dots become dashes)',
      given: { ...source, secretName: 'orders.db.prod' },
      expect: /^eventide-dispatcher-orders-db-prod-[0-9a-f]{8}$/,
    },
    {
      name: 'stays within 63 characters for long Secret names',
      given: { ...source, secretName: 'a'.repeat(200) },
      expect: /^eventide-dispatcher-a{34}-[0-9a-f]{8}$/,
    },
  ];
  it.each(cases)('$name', ({ given, expect: want }) => {
    const name = dispatcherName(given);
    expect(name.length).toBeLessThanOrEqual(63);
    expect(name).toMatch(want);
  });

  it('is deterministic, and differs for another key of the same Secret', () => {
    expect(dispatcherName(source)).toBe(dispatcherName({ ...source }));
    expect(dispatcherName(source)).not.toBe(dispatcherName({ ...source, key: 'replica-url' }));
  });

  it('does not depend on the namespace (names are per namespace already)', () => {
    expect(dispatcherName(source)).toBe(dispatcherName({ ...source, namespace: 'other' }));
  });
});

describe('chooseSlot', () => {
  const cases: { name: string; given: EventTriggerResource[]; expect: { slotName: string; publicationName: string; slotSetBy?: string } }[] = [
    {
      name: 'uses eventide_<hash of namespace/secret/key> when no trigger names a slot, and the slot name for the publication',
      given: [trigger('a')],
      expect: { slotName: defaultSlotName(source), publicationName: defaultSlotName(source) },
    },
    {
      name: 'uses the slot a trigger names',
      given: [trigger('a'), trigger('b', { source: { connectionSecretRef: { name: 'orders-db' }, slotName: 'orders_slot' } })],
      expect: { slotName: 'orders_slot', publicationName: 'orders_slot', slotSetBy: 'b' },
    },
    {
      name: 'the first trigger by name decides when two name different slots',
      given: [
        trigger('z', { source: { connectionSecretRef: { name: 'orders-db' }, slotName: 'slot_z' } }),
        trigger('m', { source: { connectionSecretRef: { name: 'orders-db' }, slotName: 'slot_m', publicationName: 'pub_m' } }),
      ],
      expect: { slotName: 'slot_m', publicationName: 'pub_m', slotSetBy: 'm' },
    },
  ];
  it.each(cases)('$name', ({ given, expect: want }) => {
    expect(chooseSlot(source, given)).toEqual(want);
  });

  it('gives each namespace its own default slot for the same Secret name', () => {
    expect(defaultSlotName(source)).not.toBe(defaultSlotName({ ...source, namespace: 'other' }));
    expect(defaultSlotName(source)).toMatch(/^eventide_[0-9a-f]{16}$/);
  });
});

describe('makeDispatcherConfigMap', () => {
  it('holds the triggers as sorted multi-document YAML at triggers.yaml, spec only, slot written in', () => {
    const members = [trigger('b-trigger', { filter: 'new.total > 10' }), trigger('a-trigger')];
    const cm = makeDispatcherConfigMap(source, members);
    const docs = parseAllDocuments(cm.data!['triggers.yaml']!).map((d) => d.toJS() as Record<string, unknown>);
    expect(docs.map((d) => (d.metadata as { name: string }).name)).toEqual(['a-trigger', 'b-trigger']);
    for (const doc of docs) {
      expect(Object.keys(doc).sort()).toEqual(['apiVersion', 'kind', 'metadata', 'spec']);
      expect(doc.metadata).toEqual({ name: expect.any(String), namespace: 'food' });
      expect((doc.spec as { source: Record<string, unknown> }).source).toMatchObject({
        slotName: defaultSlotName(source),
        publicationName: defaultSlotName(source),
      });
    }
    expect((docs[1]!.spec as { filter: string }).filter).toBe('new.total > 10');
  });

  it('is byte-for-byte stable whatever order the triggers come in', () => {
    const a = trigger('a');
    const b = trigger('b', { operations: ['insert'] });
    expect(dispatcherConfig(source, [a, b])).toBe(dispatcherConfig(source, [b, a]));
  });

  it('parses back into valid EventTriggers (what the dispatcher loads)', () => {
    const text = dispatcherConfig(source, [trigger('a'), trigger('b', { sink: { url: 'https://example.com/hook' }, function: undefined })]);
    for (const doc of parseAllDocuments(text)) {
      expect(() => parseEventTrigger(doc.toJS() as Record<string, unknown>)).not.toThrow();
    }
  });

  it('is owned by every trigger of the source, none of them its controller', () => {
    const cm = makeDispatcherConfigMap(source, [trigger('b'), trigger('a')]);
    expect(cm.metadata?.ownerReferences).toEqual([
      { apiVersion: 'eventide.dev/v1alpha1', kind: 'EventTrigger', name: 'a', uid: 'uid-a' },
      { apiVersion: 'eventide.dev/v1alpha1', kind: 'EventTrigger', name: 'b', uid: 'uid-b' },
    ]);
  });

  it('names its source in annotations, readable back', () => {
    const cm = makeDispatcherConfigMap(source, [trigger('a')]);
    expect(sourceOfDispatcher(cm)).toEqual(source);
  });
});

describe('makeDispatcherDeployment', () => {
  const members = [
    trigger('a', { delivery: { signingSecretRef: { name: 'hooks', key: 'hmac' } } }),
    trigger('b', { delivery: { signingSecretRef: { name: 'hooks', key: 'hmac' } } }),
    trigger('c', { delivery: { signingSecretRef: { name: 'other-hooks' } } }),
    trigger('d'),
  ];
  const deployment = makeDispatcherDeployment(source, members, SETTINGS);
  const container = deployment.spec!.template.spec!.containers[0]!;

  it('runs one replica with the Recreate strategy: one slot, one consumer at a time', () => {
    expect(deployment.spec?.replicas).toBe(1);
    expect(deployment.spec?.strategy).toEqual({ type: 'Recreate' });
  });

  it('runs the configured image with the dispatch command line', () => {
    expect(container.image).toBe(SETTINGS.image);
    expect(container.args).toEqual(['dispatch', '-f', '/etc/eventide/triggers', '--function-url-template', 'http://{name}.{namespace}.svc.cluster.local', '--port', '9090', '--watch-config']);
  });

  it('takes the database URL and each distinct signing secret from Secrets, never from the ConfigMap', () => {
    expect(container.env).toEqual([
      { name: 'EVENTIDE_DATABASE_URL', valueFrom: { secretKeyRef: { name: 'orders-db', key: 'url' } } },
      { name: 'NODE_OPTIONS', value: '--max-semi-space-size=4 --max-old-space-size=256' },
      { name: secretEnvName({ name: 'hooks', key: 'hmac' }), valueFrom: { secretKeyRef: { name: 'hooks', key: 'hmac' } } },
      { name: secretEnvName({ name: 'other-hooks', key: 'secret' }), valueFrom: { secretKeyRef: { name: 'other-hooks', key: 'secret' } } },
    ]);
    expect(JSON.stringify(makeDispatcherConfigMap(source, members))).not.toMatch(/postgres:\/\//);
  });

  it("gives secrets whose names differ only in punctuation one variable each, so no trigger signs with another's secret", () => {
    const lookalikes = [trigger('a', { delivery: { signingSecretRef: { name: 'hook-a', key: 'hmac' } } }), trigger('b', { delivery: { signingSecretRef: { name: 'hook.a', key: 'hmac' } } })];
    const env = makeDispatcherDeployment(source, lookalikes, SETTINGS).spec!.template.spec!.containers[0]!.env!;
    const signing = env.filter((e) => e.name.startsWith('EVENTIDE_SECRET_'));
    expect(signing.map((e) => e.valueFrom?.secretKeyRef?.name).sort()).toEqual(['hook-a', 'hook.a']);
    expect(new Set(signing.map((e) => e.name)).size).toBe(2);
  });

  it('mounts the ConfigMap at the config directory and probes /readyz and /healthz on 9090', () => {
    expect(container.volumeMounts).toContainEqual({ name: 'triggers', mountPath: '/etc/eventide/triggers', readOnly: true });
    expect(deployment.spec?.template.spec?.volumes).toContainEqual({ name: 'triggers', configMap: { name: dispatcherName(source) } });
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container.ports).toEqual([{ name: 'http', containerPort: 9090, protocol: 'TCP' }]);
  });

  it('has no config checksum in the pod template: a trigger change does not restart the dispatcher', () => {
    const other = makeDispatcherDeployment(source, [...members, trigger('e', { filter: 'new.x == 1' })], SETTINGS);
    expect(other.spec?.template).toEqual(deployment.spec?.template);
    expect(deployment.spec?.template.metadata?.annotations).toBeUndefined();
  });

  it('meets the restricted Pod Security profile', () => {
    expect(deployment.spec?.template.spec?.securityContext).toEqual({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  });

  it("is labelled as eventide's dispatcher and owned by all its triggers", () => {
    expect(deployment.metadata?.labels).toMatchObject({
      'app.kubernetes.io/name': 'eventide-dispatcher',
      'app.kubernetes.io/component': 'dispatcher',
      'app.kubernetes.io/managed-by': 'eventide',
      'app.kubernetes.io/instance': dispatcherName(source),
    });
    expect(deployment.metadata?.ownerReferences?.map((r) => r.name)).toEqual(['a', 'b', 'c', 'd']);
    expect(deployment.metadata?.ownerReferences?.some((r) => r.controller)).toBe(false);
  });
});

describe('decideTrigger', () => {
  const secret = (data: Record<string, string>): V1Secret => ({ metadata: { name: 'orders-db' }, data });
  const base = {
    functionExists: (name: string) => name === 'validate-order',
    secret: (name: string) => (name === 'orders-db' ? secret({ url: 'cG9zdGdyZXM6Ly8=' }) : undefined),
    settings: SETTINGS,
  };
  const cases: {
    name: string;
    given: { trigger: EventTriggerResource; secret?: (name: string) => V1Secret | undefined; functionExists?: (name: string) => boolean };
    expect: { functionProblem?: object; sourceProblem?: object; target?: object };
  }[] = [
    {
      name: "a trigger whose Function and Secret exist has no problems and targets the Function's Service",
      given: { trigger: trigger('a') },
      expect: { target: { url: 'http://validate-order.food.svc.cluster.local', viaFunction: true } },
    },
    {
      name: 'a missing Function is FunctionNotFound, naming it',
      given: { trigger: trigger('a', { function: { name: 'nope' } }) },
      expect: { functionProblem: { reason: 'FunctionNotFound', message: 'Function "nope" not found in namespace "food"' } },
    },
    {
      name: 'a sink needs no Function',
      given: { trigger: trigger('a', { function: undefined, sink: { url: 'https://example.com/hook' } }), functionExists: () => false },
      expect: { target: { url: 'https://example.com/hook', viaFunction: false } },
    },
    {
      name: 'a missing connection Secret is SecretNotFound, naming it',
      given: { trigger: trigger('a'), secret: () => undefined },
      expect: { sourceProblem: { reason: 'SecretNotFound', message: 'connection Secret "orders-db" not found in namespace "food"' } },
    },
    {
      name: 'a connection Secret without the key is SecretKeyMissing, naming the key',
      given: { trigger: trigger('a'), secret: () => secret({ other: 'eA==' }) },
      expect: { sourceProblem: { reason: 'SecretKeyMissing', message: 'connection Secret "orders-db" has no key "url"' } },
    },
    {
      name: 'a missing signing Secret is reported too',
      given: { trigger: trigger('a', { delivery: { signingSecretRef: { name: 'hooks' } } }) },
      expect: { sourceProblem: { reason: 'SecretNotFound', message: 'signing Secret "hooks" not found in namespace "food"' } },
    },
  ];
  it.each(cases)('$name', ({ given, expect: want }) => {
    const decision = decideTrigger({
      ...base,
      ...(given.secret ? { secret: given.secret } : {}),
      ...(given.functionExists ? { functionExists: given.functionExists } : {}),
      trigger: given.trigger,
      members: [given.trigger],
    });
    expect(decision.functionProblem).toEqual(want.functionProblem);
    expect(decision.sourceProblem).toEqual(want.sourceProblem);
    if (want.target) expect(decision.target).toEqual(want.target);
    expect(decision.dispatcherName).toBe(dispatcherName(sourceOf(given.trigger)));
  });

  it("a trigger naming a slot other than the source's is SlotNameConflict", () => {
    const a = trigger('a', { source: { connectionSecretRef: { name: 'orders-db' }, slotName: 'slot_a' } });
    const b = trigger('b', { source: { connectionSecretRef: { name: 'orders-db' }, slotName: 'slot_b' } });
    expect(decideTrigger({ ...base, trigger: a, members: [a, b] }).sourceProblem).toBeUndefined();
    expect(decideTrigger({ ...base, trigger: b, members: [a, b] }).sourceProblem).toMatchObject({ reason: 'SlotNameConflict' });
  });

  it('two triggers on one Secret key get the same dispatcher; another key gets another', () => {
    const a = trigger('a');
    const b = trigger('b');
    const c = trigger('c', { source: { connectionSecretRef: { name: 'orders-db', key: 'replica' } } });
    const name = (t: EventTriggerResource) => decideTrigger({ ...base, trigger: t, members: [t] }).dispatcherName;
    expect(name(a)).toBe(name(b));
    expect(name(a)).not.toBe(name(c));
  });
});

describe('secretsHash (a rotated Secret restarts the dispatcher)', () => {
  const source: SourceRef = { namespace: 'food', secretName: 'orders-db', key: 'url' };
  const members = [trigger('a', { delivery: { signingSecretRef: { name: 'hooks', key: 'hmac' } } }), trigger('b')];
  const secrets =
    (url: string, hmac: string, extra: Record<string, string> = {}) =>
    (name: string): V1Secret | undefined =>
      name === 'orders-db' ? { data: { url: Buffer.from(url).toString('base64'), ...extra } } : name === 'hooks' ? { data: { hmac: Buffer.from(hmac).toString('base64') } } : undefined;
  const base = secretsHash(source, members, secrets('postgres://app:one@db/shop', 'k1'));

  it('changes when the connection URL or a signing secret changes', () => {
    expect(secretsHash(source, members, secrets('postgres://app:two@db/shop', 'k1'))).not.toBe(base);
    expect(secretsHash(source, members, secrets('postgres://app:one@db/shop', 'k2'))).not.toBe(base);
  });

  it('stays when nothing the dispatcher reads changes (another key, the order of triggers)', () => {
    expect(secretsHash(source, members, secrets('postgres://app:one@db/shop', 'k1', { unrelated: 'eA==' }))).toBe(base);
    expect(secretsHash(source, [...members].reverse(), secrets('postgres://app:one@db/shop', 'k1'))).toBe(base);
  });

  it('tells a missing Secret from a present one, and holds no value', () => {
    expect(secretsHash(source, members, () => undefined)).not.toBe(base);
    expect(base).toMatch(/^[0-9a-f]{16}$/);
  });

  it('goes into the pod template only, where a change rolls the Deployment', () => {
    const deployment = makeDispatcherDeployment(source, members, SETTINGS, base);
    expect(deployment.spec?.template.metadata?.annotations).toEqual({ 'eventide.dev/secrets-hash': base });
    expect(makeDispatcherDeployment(source, members, SETTINGS).spec?.template.metadata?.annotations).toBeUndefined();
  });
});

describe('TLS to the source database', () => {
  const withTls = (tls: Record<string, unknown>) => trigger('a', { source: { connectionSecretRef: { name: 'orders-db' }, tls } });

  it('mounts the CA from a Secret key and the client certificate, and names them to the dispatcher with its TLS flags', () => {
    const deployment = makeDispatcherDeployment(source, [withTls({ caSecretRef: { name: 'pg-ca' }, clientCertSecretRef: { name: 'pg-client' } }), trigger('b')], { image: 'img' });
    const pod = deployment.spec!.template.spec!;
    const container = pod.containers[0]!;
    expect(container.args).toEqual(
      expect.arrayContaining(['--database-ca', '/etc/eventide/tls/ca/ca.crt', '--database-cert', '/etc/eventide/tls/client/tls.crt', '--database-key', '/etc/eventide/tls/client/tls.key']),
    );
    expect(pod.volumes).toContainEqual({ name: 'database-ca', secret: { secretName: 'pg-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
    expect(pod.volumes).toContainEqual({
      name: 'database-client-cert',
      secret: {
        secretName: 'pg-client',
        items: [
          { key: 'tls.crt', path: 'tls.crt' },
          { key: 'tls.key', path: 'tls.key' },
        ],
      },
    });
    expect(container.volumeMounts).toContainEqual({ name: 'database-ca', mountPath: '/etc/eventide/tls/ca', readOnly: true });
    // The flags the operator writes are the dispatcher's own (the flags parse; the files are what kubelet mounts).
    const args = container.args!;
    const flags = args.filter((a) => a.startsWith('--database-'));
    expect(flags).toEqual(['--database-ca', '--database-cert', '--database-key']);
    expect(DISPATCH_USAGE).toContain('--database-ca <file>');
  });

  it('takes the CA from a ConfigMap too; without tls nothing is mounted', () => {
    const pod = makeDispatcherDeployment(source, [withTls({ caConfigMapRef: { name: 'pg-ca', key: 'root.pem' } })], { image: 'img' }).spec!.template.spec!;
    expect(pod.volumes).toContainEqual({ name: 'database-ca', configMap: { name: 'pg-ca', items: [{ key: 'root.pem', path: 'ca.crt' }] } });
    const plain = makeDispatcherDeployment(source, [trigger('a')], { image: 'img' }).spec!.template.spec!;
    expect(plain.volumes?.map((v) => v.name)).toEqual(['triggers', 'tmp']);
    expect(plain.containers[0]!.args?.some((a) => a.startsWith('--database-'))).toBe(false);
  });

  it("a rotated CA or client certificate Secret changes the pod template's digest (the files are read at start)", () => {
    const members = [withTls({ caSecretRef: { name: 'pg-ca' }, clientCertSecretRef: { name: 'pg-client' } })];
    const secrets = (ca: string): ((name: string) => V1Secret | undefined) => {
      const all: Record<string, V1Secret> = {
        'orders-db': { data: { url: Buffer.from('postgres://x').toString('base64') } },
        'pg-ca': { data: { 'ca.crt': Buffer.from(ca).toString('base64') } },
        'pg-client': { data: { 'tls.crt': 'Yw==', 'tls.key': 'aw==' } },
      };
      return (name) => all[name];
    };
    expect(secretsHash(source, members, secrets('ca-1'))).not.toBe(secretsHash(source, members, secrets('ca-2')));
    // The digest names no value: only its hash sits in the pod template.
    expect(secretsHash(source, members, secrets('ca-1'))).toMatch(/^[0-9a-f]{16}$/);
  });

  it('refuses a CA given both ways', () => {
    expect(() => withTls({ caSecretRef: { name: 'x' }, caConfigMapRef: { name: 'y' } })).toThrow('spec.source.tls: give the CA in caSecretRef or in caConfigMapRef, not both');
  });
});
