import { describe, expect, it } from 'vitest';
import { formatLsn, InvalidLsnError, parseLsn } from './lsn.js';

describe('LSNs', () => {
  it('parses the X/Y form, either case, each half 1 to 8 hex digits, and formats it back as pg_lsn prints it', () => {
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('0/16B3748')).toBe(0x16b3748n);
    expect(parseLsn('1/0')).toBe(1n << 32n);
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe((1n << 64n) - 1n);
    expect(parseLsn('a/b')).toBe((10n << 32n) | 11n);
    expect(formatLsn(parseLsn('2a/16b3748'))).toBe('2A/16B3748');
  });

  it('rejects anything else', () => {
    for (const bad of ['', '/', '0/', '/0', '0', '0/0/0', '123456789/0', '0/123456789', 'g/0', '0/-1', ' 0/0', '0/0 ', '0x1/0']) {
      expect(() => parseLsn(bad), bad).toThrow(InvalidLsnError);
    }
  });
});
