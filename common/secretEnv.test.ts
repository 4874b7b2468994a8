import { describe, expect, it } from 'vitest';
import { secretEnvName } from './secretEnv.js';

const POSIX_ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

describe('secretEnvName', () => {
  // Each pair cleaned to the same upper-case form before; sharing a variable meant signing with the wrong secret.
  it.each([
    ['names differing in - and .', { name: 'hook-a', key: 'hmac' }, { name: 'hook.a', key: 'hmac' }],
    ['keys differing in - and _', { name: 'hooks', key: 'a-b' }, { name: 'hooks', key: 'a_b' }],
    ['keys differing in case', { name: 'hooks', key: 'HMAC' }, { name: 'hooks', key: 'hmac' }],
    ['the name/key boundary moved', { name: 'a--b', key: 'c' }, { name: 'a', key: 'b--c' }],
    ['names equal in their first 48 characters', { name: `${'x'.repeat(48)}-one`, key: 'k' }, { name: `${'x'.repeat(48)}-two`, key: 'k' }],
  ])('gives distinct refs distinct variables: %s', (_case, a, b) => {
    expect(secretEnvName(a)).not.toBe(secretEnvName(b));
  });

  it('gives one ref one variable, whatever object carries it', () => {
    expect(secretEnvName({ name: 'hook-signing', key: 'hmac' })).toBe(secretEnvName({ ...{ key: 'hmac' }, name: 'hook-signing' }));
  });

  it('keeps the secret name and key readable in the variable', () => {
    expect(secretEnvName({ name: 'hook-signing', key: 'hmac' })).toMatch(/^EVENTIDE_SECRET_HOOK_SIGNING__HMAC_[0-9A-F]{8}$/);
  });

  it.each([
    { name: 'hooks', key: 'hmac' },
    { name: '1st.secret', key: '9' },
    { name: 'ünïcode', key: 'k.e-y_Z' },
    { name: 'n'.repeat(253), key: 'k'.repeat(253) },
  ])('is a valid environment variable name of bounded length: %o', (ref) => {
    const name = secretEnvName(ref);
    expect(name).toMatch(POSIX_ENV_NAME);
    expect(name.length).toBeLessThanOrEqual(123);
  });
});
