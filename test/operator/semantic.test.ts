import { describe, expect, it } from 'vitest';
import { isSubset, semanticEqual } from '../../operator/semantic.js';

describe('isSubset (does the live object already hold what we would apply?)', () => {
  const cases: { name: string; given: [desired: unknown, live: unknown]; expect: boolean }[] = [
    { name: 'extra live fields (defaults, status) do not matter', given: [{ a: 1 }, { a: 1, b: 2 }], expect: true },
    { name: 'a changed value does', given: [{ spec: { image: 'v2' } }, { spec: { image: 'v1' } }], expect: false },
    { name: 'a missing field does', given: [{ a: 1, b: 2 }, { a: 1 }], expect: false },
    { name: 'list elements compare one by one, with their own defaults allowed', given: [[{ name: 'x' }], [{ name: 'x', protocol: 'TCP' }]], expect: true },
    { name: 'a list of another length differs', given: [[{ name: 'x' }], [{ name: 'x' }, { name: 'y' }]], expect: false },
    { name: 'undefined desired fields are ignored', given: [{ a: undefined, b: 1 }, { b: 1 }], expect: true },
    { name: 'a string is not a number', given: [{ port: '80' }, { port: 80 }], expect: false },
  ];
  it.each(cases)('$name', ({ given, expect: want }) => {
    expect(isSubset(given[0], given[1])).toBe(want);
  });
});

describe('semanticEqual', () => {
  it('ignores key order and undefined members', () => {
    expect(semanticEqual({ a: 1, b: { c: 2, d: undefined } }, { b: { c: 2 }, a: 1 })).toBe(true);
  });
  it('sees array order', () => {
    expect(semanticEqual([1, 2], [2, 1])).toBe(false);
  });
});
