import { describe, expect, it } from 'vitest';
import { binHeapFlags } from '../../common/binHeapFlags.js';
import { DEFAULT_DISPATCHER_RESOURCES } from './dispatcher.js';
import { dispatcherNodeOptions, quantityBytes } from './nodeHeap.js';

describe('quantityBytes', () => {
  it.each([
    ['512Mi', 512 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['500M', 500e6],
    ['268435456', 268435456],
    ['64Ki', 65536],
    ['5e8', 5e8],
  ])('%s is %d bytes', (quantity, bytes) => expect(quantityBytes(quantity)).toBe(bytes));

  it.each(['', 'lots', '512MiB', '-1Gi', '1.5.2Mi'])('"%s" is not a memory quantity', (quantity) => expect(quantityBytes(quantity)).toBeUndefined());
});

describe('dispatcherNodeOptions', () => {
  it('caps old space at half the memory limit, with a small young generation', () => {
    expect(dispatcherNodeOptions({ limits: { memory: '512Mi' } })).toBe('--max-semi-space-size=4 --max-old-space-size=256');
    expect(dispatcherNodeOptions({ limits: { memory: '2G' } })).toBe('--max-semi-space-size=4 --max-old-space-size=953');
  });

  it('never caps old space below 64 MiB, whatever the limit', () => {
    expect(dispatcherNodeOptions({ limits: { memory: '96Mi' } })).toBe('--max-semi-space-size=4 --max-old-space-size=64');
  });

  it('leaves the heap limit to V8 without a memory limit (or with one it cannot read)', () => {
    expect(dispatcherNodeOptions({ requests: { memory: '64Mi' } })).toBe('--max-semi-space-size=4');
    expect(dispatcherNodeOptions({ limits: { memory: 'unlimited' } })).toBe('--max-semi-space-size=4');
  });
});

describe('the eventide command run by hand', () => {
  it('starts node with the heap the operator gives a pod with the default resources', () => {
    expect(binHeapFlags().join(' ')).toBe(dispatcherNodeOptions(DEFAULT_DISPATCHER_RESOURCES));
  });
});
