import { describe, expect, it } from 'vitest';
import { isoTimestamp } from './pgJson.js';

describe('isoTimestamp', () => {
  it('turns DateStyle ISO text into to_jsonb form: a T, whole-hour offsets get minutes, the era stays', () => {
    expect(isoTimestamp('2024-01-02 03:04:05.5+00', true)).toBe('2024-01-02T03:04:05.5+00:00');
    expect(isoTimestamp('2024-01-02 03:04:05-08', true)).toBe('2024-01-02T03:04:05-08:00');
    expect(isoTimestamp('2024-01-02 03:04:05+05:30', true)).toBe('2024-01-02T03:04:05+05:30');
    expect(isoTimestamp('2024-01-02 03:04:05+05:30:12', true)).toBe('2024-01-02T03:04:05+05:30:12');
    expect(isoTimestamp('0044-03-15 12:00:00+00 BC', true)).toBe('0044-03-15T12:00:00+00:00 BC');
    expect(isoTimestamp('12345-01-02 03:04:05+00', true)).toBe('12345-01-02T03:04:05+00:00');
    expect(isoTimestamp('2024-01-02 03:04:05.123456', false)).toBe('2024-01-02T03:04:05.123456');
    expect(isoTimestamp('0044-03-15 12:00:00 BC', false)).toBe('0044-03-15T12:00:00 BC');
    expect(isoTimestamp('infinity', true)).toBe('infinity');
    expect(isoTimestamp('-infinity', false)).toBe('-infinity');
  });
});
