import { describe, expect, it } from 'vitest';
import type { StoredEventTrigger } from '../cache.js';
import { ownerKeysOfDispatcherObject, sharesSource, targetsFunction, usesSecret } from './keys.js';

const stored = (name: string, spec: Record<string, unknown>): StoredEventTrigger => ({ metadata: { name, namespace: 'shop', uid: name }, spec }) as StoredEventTrigger;
const a = stored('a', { source: { connectionSecretRef: { name: 'db', key: 'url' } }, function: { name: 'fn' }, delivery: { signingSecretRef: { name: 'hmac' } } });
const b = stored('b', { source: { connectionSecretRef: { name: 'db', key: 'url' } }, sink: { url: 'http://x' } });
const c = stored('c', { source: { connectionSecretRef: { name: 'db', key: 'other' } } });

describe('which triggers an event concerns', () => {
  it('a Secret: the connection and the signing Secret', () => {
    expect([usesSecret(a, 'db'), usesSecret(a, 'hmac'), usesSecret(b, 'hmac'), usesSecret(a, 'nope')]).toEqual([true, true, false, false]);
    const withTls = stored('t', { source: { connectionSecretRef: { name: 'db' }, tls: { caSecretRef: { name: 'pg-ca' }, clientCertSecretRef: { name: 'pg-client' } } } });
    expect([usesSecret(withTls, 'pg-ca'), usesSecret(withTls, 'pg-client')]).toEqual([true, true]);
  });

  it('a Function: the triggers that deliver to it', () => {
    expect([targetsFunction(a, 'fn'), targetsFunction(b, 'fn')]).toEqual([true, false]);
  });

  it('a trigger deleted: its siblings on the same Secret key', () => {
    expect([sharesSource(b, a), sharesSource(c, a)]).toEqual([true, false]);
  });

  it('a dispatcher object: the triggers that own it; any other object: none', () => {
    const owners = [
      { kind: 'EventTrigger', name: 'a' },
      { kind: 'EventTrigger', name: 'b' },
    ].map((o) => ({ ...o, apiVersion: 'eventide.dev/v1alpha1', uid: o.name }));
    expect(ownerKeysOfDispatcherObject({ metadata: { namespace: 'shop', labels: { 'app.kubernetes.io/component': 'dispatcher' }, ownerReferences: owners } })).toEqual(['shop/a', 'shop/b']);
    expect(ownerKeysOfDispatcherObject({ metadata: { namespace: 'shop', labels: { 'app.kubernetes.io/component': 'function' }, ownerReferences: owners } })).toEqual([]);
  });
});

describe('which Function an event concerns', () => {
  it('the controller of a Deployment or Service; none for an object it does not control', async () => {
    const { functionKeyOfChild } = await import('../function/keys.js');
    const ref = { apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', name: 'hook', uid: 'u' };
    expect(functionKeyOfChild({ metadata: { namespace: 'shop', ownerReferences: [{ ...ref, controller: true }] } })).toBe('shop/hook');
    expect(functionKeyOfChild({ metadata: { namespace: 'shop', ownerReferences: [{ ...ref, controller: false }] } })).toBeUndefined();
  });
});
