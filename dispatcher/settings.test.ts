import { describe, expect, it } from 'vitest';
import { parseDispatchSettings, SettingsError } from './settings.js';

const URL_WITH_PASSWORD = 'postgres://app:s3cr3t-pw@127.0.0.1:5432/shop';

function errorOf(argv: string[], env: NodeJS.ProcessEnv = {}): SettingsError {
  try {
    parseDispatchSettings(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(SettingsError);
    return error as SettingsError;
  }
  throw new Error('expected a SettingsError');
}

describe('dispatch flags', () => {
  it('the database URL comes from the flag, else from EVENTIDE_DATABASE_URL', () => {
    expect(parseDispatchSettings(['--database-url', URL_WITH_PASSWORD, '-f', 'x'], {}).databaseUrl).toBe(URL_WITH_PASSWORD);
    expect(parseDispatchSettings(['-f', 'x'], { EVENTIDE_DATABASE_URL: URL_WITH_PASSWORD }).databaseUrl).toBe(URL_WITH_PASSWORD);
    expect(errorOf(['-f', 'x']).message).toMatch(/^--database-url \(or EVENTIDE_DATABASE_URL\) is required\n\nUsage: eventide dispatch/);
  });

  it('a database URL pg cannot parse is rejected up front, without printing it', () => {
    const error = errorOf(['--database-url', 'postgres://app:s3cr3t-pw@127.0.0.1:99999/shop', '-f', 'x']);
    expect(error.message).toMatch(/^--database-url is not a valid connection URL \(Invalid URL\)/);
    expect(error.message).not.toContain('s3cr3t-pw');
    expect(errorOf(['--database-url', 'mysql://app:s3cr3t-pw@host/shop', '-f', 'x']).message).toBe('--database-url must be a postgres:// URL');
    expect(errorOf(['--database-url', URL_WITH_PASSWORD, '-f', 'x', '--dead-letter-database-url', 'postgres://a:s3cr3t-pw@h:0x/db']).message).toMatch(
      /^--dead-letter-database-url is not a valid connection URL/,
    );
  });

  it('names the bad flag and the value', () => {
    const base = ['--database-url', URL_WITH_PASSWORD, '-f', 'x'];
    expect(errorOf([...base, '--port', 'abc']).message).toBe('--port must be a positive integer, got "abc"');
    expect(errorOf([...base, '--max-inflight-events', '0']).message).toBe('--max-inflight-events must be a positive integer, got "0"');
    expect(errorOf([...base, '--frobnicate']).message).toMatch(/^Unknown option '--frobnicate'/);
    expect(errorOf([...base, '--function-url', 'foo']).message).toBe('--function-url expects name=http://host:port/path, got "foo"');
    expect(errorOf([...base, '--slot', 'My-Slot']).message).toBe('--slot must be lower-case letters, digits and _ (at most 63), got "My-Slot"');
    expect(errorOf(['--database-url', URL_WITH_PASSWORD]).message).toMatch(/^-f <file-or-dir> is required/);
    expect(errorOf([...base, '--retry-in-memory', '5 seconds']).message).toBe('--retry-in-memory must be a duration such as 500ms, 5s or 1m, got "5 seconds"');
  });

  it('--retry-in-memory takes a duration, 5 s when absent', () => {
    const base = ['--database-url', URL_WITH_PASSWORD, '-f', 'x'];
    expect(parseDispatchSettings(base, {}).retryInMemoryMs).toBe(5_000);
    expect(parseDispatchSettings([...base, '--retry-in-memory', '1m30s'], {}).retryInMemoryMs).toBe(90_000);
  });
});
