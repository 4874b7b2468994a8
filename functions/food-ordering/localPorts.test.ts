import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freeListenPort, listenPortRange } from './localPorts.js';

describe("ports for the demo's listeners", () => {
  it.each([
    { name: "Linux's default ephemeral range: everything from 10000 below it", given: [32768, 60999] as const, expect: [10000, 32767] },
    { name: 'a range starting lower: below it', given: [20000, 60999] as const, expect: [10000, 19999] },
    { name: "macOS's range (49152 up): still below Linux's", given: [49152, 65535] as const, expect: [10000, 32767] },
    { name: 'a range leaving no room below: none', given: [10500, 65535] as const, expect: undefined },
  ])('$name', ({ given, expect: expected }) => {
    expect(listenPortRange(given)).toEqual(expected);
  });

  it('picks below the ephemeral range, passing over a port already listened on', async () => {
    const range = listenPortRange([32768, 60999])!;
    const size = range[1] - range[0] + 1;
    const first = await freeListenPort();
    expect(first).toBeGreaterThanOrEqual(range[0]);
    expect(first).toBeLessThanOrEqual(range[1]);
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(first, '0.0.0.0', () => resolve()));
    try {
      // The first candidate drawn is the taken port, the next one another.
      const draws = [(first - range[0] + 0.5) / size, (first - range[0] + (first > range[0] ? -0.5 : 1.5)) / size];
      const picked = await freeListenPort(() => draws.shift() ?? Math.random());
      expect(picked).not.toBe(first);
      expect(Math.abs(picked - first)).toBe(1);
    } finally {
      taken.close();
    }
  });
});
