import { describe, expect, it } from 'vitest';
import { resolveServeSettings, type ServeOptions, type ServeSettings } from './settings.js';

const defaults: ServeSettings = { port: 8080, host: '0.0.0.0', signingSecret: undefined, shutdownTimeoutMs: 25_000, maxBodyBytes: 10 * 1024 * 1024, handleSignals: true };

describe('resolveServeSettings', () => {
  const cases: { name: string; given: { options: ServeOptions; env: NodeJS.ProcessEnv }; expect: ServeSettings | RegExp }[] = [
    { name: 'nothing set gives the defaults', given: { options: {}, env: {} }, expect: defaults },
    {
      name: 'the environment fills what options leave out',
      given: { options: {}, env: { PORT: '9000', EVENTIDE_SIGNING_SECRET: 'whsec_c2VjcmV0', EVENTIDE_SHUTDOWN_TIMEOUT_MS: '5000' } },
      expect: { ...defaults, port: 9000, signingSecret: 'whsec_c2VjcmV0', shutdownTimeoutMs: 5000 },
    },
    {
      name: 'options win over the environment',
      given: { options: { port: 0, signingSecret: 'raw', shutdownTimeoutMs: 10 }, env: { PORT: '9000', EVENTIDE_SIGNING_SECRET: 'whsec_c2VjcmV0' } },
      expect: { ...defaults, port: 0, signingSecret: 'raw', shutdownTimeoutMs: 10 },
    },
    { name: 'an empty secret means unsigned', given: { options: {}, env: { EVENTIDE_SIGNING_SECRET: '' } }, expect: defaults },
    { name: 'an invalid PORT is an error naming it', given: { options: {}, env: { PORT: 'http' } }, expect: /env PORT must be an integer/ },
    { name: 'a port out of range is an error', given: { options: { port: 70000 }, env: {} }, expect: /port must be an integer from 0 to 65535/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      if (c.expect instanceof RegExp) expect(() => resolveServeSettings(c.given.options, c.given.env)).toThrow(c.expect);
      else expect(resolveServeSettings(c.given.options, c.given.env)).toStrictEqual(c.expect);
    });
  }
});
