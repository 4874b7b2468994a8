import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ExponentialRateLimiter } from '../../operator/rateLimiter.js';
import { WorkQueue } from '../../operator/workQueue.js';

type Op = ['add', string] | ['addAfter', string, number] | ['addRateLimited', string] | ['forget', string] | ['get'] | ['done', string] | ['tick', number] | ['shutDown'];

interface Case {
  name: string;
  given: Op[];
  expect: { got: (string | undefined)[]; len: number; requeues?: Record<string, number> };
}

const cases: Case[] = [
  {
    name: 'a key added twice before it is taken is processed once',
    given: [['add', 'ns/a'], ['add', 'ns/a'], ['add', 'ns/b'], ['get'], ['get']],
    expect: { got: ['ns/a', 'ns/b'], len: 0 },
  },
  {
    name: 'keys come out in the order they were first added',
    given: [['add', 'ns/c'], ['add', 'ns/a'], ['add', 'ns/b'], ['add', 'ns/c'], ['get'], ['get'], ['get']],
    expect: { got: ['ns/c', 'ns/a', 'ns/b'], len: 0 },
  },
  {
    name: 'a key added while in flight is not handed out again until done',
    given: [['add', 'ns/a'], ['get'], ['add', 'ns/a'], ['add', 'ns/a']],
    expect: { got: ['ns/a'], len: 0 },
  },
  {
    name: 'a key added while in flight is queued once more after done',
    given: [['add', 'ns/a'], ['get'], ['add', 'ns/a'], ['done', 'ns/a'], ['get']],
    expect: { got: ['ns/a', 'ns/a'], len: 0 },
  },
  {
    name: 'a key that was not re-added is not queued after done',
    given: [['add', 'ns/a'], ['get'], ['done', 'ns/a']],
    expect: { got: ['ns/a'], len: 0 },
  },
  {
    name: 'addAfter holds the key until the delay has passed',
    given: [
      ['addAfter', 'ns/a', 100],
      ['tick', 99],
    ],
    expect: { got: [], len: 0 },
  },
  {
    name: 'addAfter releases the key once the delay has passed',
    given: [['addAfter', 'ns/a', 100], ['tick', 100], ['get']],
    expect: { got: ['ns/a'], len: 0 },
  },
  {
    name: 'the earliest pending time of a key wins',
    given: [['addAfter', 'ns/a', 1000], ['addAfter', 'ns/a', 10], ['addAfter', 'ns/a', 500], ['tick', 10], ['get'], ['done', 'ns/a'], ['tick', 2000]],
    expect: { got: ['ns/a'], len: 0 },
  },
  {
    name: 'addAfter with no delay adds at once',
    given: [['addAfter', 'ns/a', 0], ['get']],
    expect: { got: ['ns/a'], len: 0 },
  },
  {
    name: 'addRateLimited waits 5 ms on the first failure',
    given: [
      ['addRateLimited', 'ns/a'],
      ['tick', 4],
    ],
    expect: { got: [], len: 0, requeues: { 'ns/a': 1 } },
  },
  {
    name: 'addRateLimited doubles the wait on each failure: 5, 10, 20 ms',
    given: [
      ['addRateLimited', 'ns/a'],
      ['tick', 5],
      ['get'],
      ['done', 'ns/a'],
      ['addRateLimited', 'ns/a'],
      ['tick', 9],
      ['addRateLimited', 'ns/b'],
      ['tick', 1],
      ['get'],
      ['done', 'ns/a'],
      ['addRateLimited', 'ns/a'],
      ['tick', 19],
    ],
    // ns/b's own 5 ms pass during the last tick; ns/a's third wait (20 ms) does not.
    expect: { got: ['ns/a', 'ns/a'], len: 1, requeues: { 'ns/a': 3, 'ns/b': 1 } },
  },
  {
    name: 'forget resets the backoff to 5 ms',
    given: [['addRateLimited', 'ns/a'], ['addRateLimited', 'ns/a'], ['addRateLimited', 'ns/a'], ['forget', 'ns/a'], ['tick', 20], ['addRateLimited', 'ns/a'], ['tick', 5], ['get']],
    expect: { got: ['ns/a'], len: 0, requeues: { 'ns/a': 1 } },
  },
  {
    name: 'shutDown drops delayed keys and ignores new ones',
    given: [['addAfter', 'ns/a', 10], ['shutDown'], ['add', 'ns/b'], ['tick', 20], ['get']],
    expect: { got: [undefined], len: 0 },
  },
];

describe('WorkQueue', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each(cases)('$name', async ({ given, expect: want }) => {
    const queue = new WorkQueue();
    const got: (string | undefined)[] = [];
    for (const op of given) {
      switch (op[0]) {
        case 'add':
          queue.add(op[1]);
          break;
        case 'addAfter':
          queue.addAfter(op[1], op[2]);
          break;
        case 'addRateLimited':
          queue.addRateLimited(op[1]);
          break;
        case 'forget':
          queue.forget(op[1]);
          break;
        case 'get':
          got.push(await queue.get());
          break;
        case 'done':
          queue.done(op[1]);
          break;
        case 'tick':
          await vi.advanceTimersByTimeAsync(op[1]);
          break;
        case 'shutDown':
          queue.shutDown();
          break;
      }
    }
    expect(got).toEqual(want.got);
    expect(queue.len()).toBe(want.len);
    for (const [key, n] of Object.entries(want.requeues ?? {})) expect(queue.numRequeues(key)).toBe(n);
  });
});

describe('WorkQueue.run', () => {
  it('never processes one key on two workers at once, and processes the latest addition', async () => {
    const queue = new WorkQueue();
    const active = new Set<string>();
    let overlaps = 0;
    const seen: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const running = queue.run(4, async (key) => {
      if (active.has(key)) overlaps++;
      active.add(key);
      seen.push(key);
      if (seen.length === 1) await gate;
      active.delete(key);
    });
    queue.add('ns/a');
    await new Promise((r) => setImmediate(r));
    // ns/a is in flight on one worker; adding it again must wait for that worker to finish.
    queue.add('ns/a');
    queue.add('ns/b');
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['ns/a', 'ns/b']);
    release();
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['ns/a', 'ns/b', 'ns/a']);
    expect(overlaps).toBe(0);
    queue.shutDown();
    await running;
  });

  it('processes different keys concurrently up to the number of workers', async () => {
    const queue = new WorkQueue();
    let inFlight = 0;
    let peak = 0;
    const gates: (() => void)[] = [];
    const running = queue.run(3, async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise<void>((resolve) => gates.push(resolve));
      inFlight--;
    });
    for (const k of ['a', 'b', 'c', 'd', 'e']) queue.add(`ns/${k}`);
    await new Promise((r) => setImmediate(r));
    expect(peak).toBe(3);
    expect(queue.len()).toBe(2);
    while (gates.length) {
      gates.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    queue.shutDown();
    await running;
    expect(peak).toBe(3);
  });
});

describe('ExponentialRateLimiter', () => {
  const cases = [
    { name: 'first failure waits the base delay', given: 1, expect: 5 },
    { name: 'second failure waits twice the base', given: 2, expect: 10 },
    { name: 'tenth failure waits 5 ms * 2^9', given: 10, expect: 2560 },
    { name: 'the wait is capped at 1000 s', given: 40, expect: 1_000_000 },
    { name: 'the wait stays finite after very many failures', given: 2000, expect: 1_000_000 },
  ];
  it.each(cases)('$name', ({ given, expect: want }) => {
    const limiter = new ExponentialRateLimiter();
    let last = 0;
    for (let i = 0; i < given; i++) last = limiter.when('k');
    expect(last).toBe(want);
  });
});
