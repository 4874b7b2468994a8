import { describe, expect, it } from 'vitest';
import { parseSettings, SettingsError } from '../../operator/settings.js';

describe('parseSettings', () => {
  const cases: { name: string; given: { argv: string[]; env?: Record<string, string> }; expect: Record<string, unknown> }[] = [
    {
      name: 'defaults: port 8080, no leader election, 4 workers',
      given: { argv: [], env: {} },
      expect: { metricsPort: 8080, leaderElect: false, workers: 4, leaseName: 'eventide-operator', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 },
    },
    {
      name: 'flags win over the environment',
      given: { argv: ['--dispatcher-image', 'img:flag', '--namespace', 'ops'], env: { EVENTIDE_DISPATCHER_IMAGE: 'img:env', POD_NAMESPACE: 'env-ns' } },
      expect: { dispatcherImage: 'img:flag', namespace: 'ops' },
    },
    {
      name: 'the environment fills what flags leave out',
      given: { argv: [], env: { EVENTIDE_DISPATCHER_IMAGE: 'img:env', POD_NAMESPACE: 'env-ns', KUBECONFIG: '/k', LOG_LEVEL: 'debug' } },
      expect: { dispatcherImage: 'img:env', namespace: 'env-ns', kubeconfig: '/k', logLevel: 'debug' },
    },
    {
      name: 'boolean and numeric flags',
      given: { argv: ['--leader-elect', '--metrics-port', '9443', '--workers', '8', '--identity', 'pod-1'], env: {} },
      expect: { leaderElect: true, metricsPort: 9443, workers: 8, identity: 'pod-1' },
    },
    {
      name: 'the identity defaults to POD_NAME plus a random suffix',
      given: { argv: [], env: { POD_NAME: 'eventide-operator-7d9f' } },
      expect: { identity: expect.stringMatching(/^eventide-operator-7d9f_[0-9a-f]{8}$/) },
    },
  ];
  it.each(cases)('$name', ({ given, expect: want }) => {
    expect(parseSettings(given.argv, given.env ?? {})).toMatchObject(want);
  });

  const errors: { name: string; given: string[]; expect: RegExp }[] = [
    { name: 'an unknown flag is refused with usage', given: ['--bogus'], expect: /bogus[\s\S]*Usage/ },
    { name: 'a non-numeric port is refused naming the flag', given: ['--metrics-port', 'http'], expect: /--metrics-port/ },
    { name: 'zero workers is refused', given: ['--workers', '0'], expect: /--workers/ },
    { name: 'a bad pull policy is refused', given: ['--dispatcher-image-pull-policy', 'Sometimes'], expect: /pull-policy/ },
  ];
  it.each(errors)('$name', ({ given, expect: want }) => {
    expect(() => parseSettings(given, {})).toThrow(SettingsError);
    expect(() => parseSettings(given, {})).toThrow(want);
  });
});
