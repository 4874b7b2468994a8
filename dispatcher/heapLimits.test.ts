import { describe, expect, it } from 'vitest';
import { dispatcherHeapLimits } from './heapLimits.js';

describe('dispatcherHeapLimits', () => {
  it('gives a small heap when no heap flag is set', () => {
    expect(dispatcherHeapLimits([], undefined)).toEqual({ maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 256 });
    expect(dispatcherHeapLimits(['--enable-source-maps'], '--no-warnings')).toEqual({ maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 256 });
  });

  it('leaves the heap alone when the command line or NODE_OPTIONS sizes it (the operator does)', () => {
    expect(dispatcherHeapLimits(['--max-old-space-size=512'], undefined)).toBeUndefined();
    expect(dispatcherHeapLimits([], '--max-semi-space-size=4 --max-old-space-size=256')).toBeUndefined();
    expect(dispatcherHeapLimits([], '--max_semi_space_size=4')).toBeUndefined();
    expect(dispatcherHeapLimits([], '--max-semi-space-sizeX')).toEqual({ maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 256 });
  });
});
