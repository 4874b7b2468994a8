import { describe, expect, it } from 'vitest';
import { type AttemptOutcome, type LaneEntry, type LaneOptions, TriggerLane } from './triggerLane.js';

interface Ev {
  id: string;
  orderingKey: string;
  previousOrderingKey?: string;
  barrier?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function lane(options: {
  concurrency?: number;
  ordering?: 'key' | 'none';
  batchMaxSize?: number;
  batchMaxWaitMs?: number;
  attempt: (entries: LaneEntry<Ev>[]) => Promise<Map<string, AttemptOutcome>>;
}) {
  const settled: string[] = [];
  let done: () => void = () => undefined;
  const l = new TriggerLane<Ev>({
    concurrency: options.concurrency ?? 4,
    ordering: options.ordering ?? 'key',
    batchMaxSize: options.batchMaxSize ?? 1,
    batchMaxWaitMs: options.batchMaxWaitMs ?? 0,
    attempt: (entries) => options.attempt(entries),
    onSettled: (e) => {
      settled.push(e.id);
      done();
    },
  });
  const waitFor = (n: number) =>
    new Promise<void>((resolve) => {
      done = () => settled.length >= n && resolve();
      done();
    });
  return { l, settled, waitFor };
}

/** A lane of one attempt at a time, one event per attempt, ordered by key, with the given callbacks. */
function serialLane(options: Pick<LaneOptions<Ev>, 'attempt'> & Partial<LaneOptions<Ev>>): TriggerLane<Ev> {
  return new TriggerLane<Ev>({ concurrency: 1, ordering: 'key', batchMaxSize: 1, batchMaxWaitMs: 0, onSettled: () => undefined, ...options });
}

const ok = (entries: LaneEntry<Ev>[]) => new Map(entries.map((e) => [e.event.id, { kind: 'settled' } as AttemptOutcome]));

describe('TriggerLane', () => {
  it('keeps one key in enqueue order while a slow first event is in flight', async () => {
    const started: string[] = [];
    const { l, settled, waitFor } = lane({
      concurrency: 8,
      attempt: async (entries) => {
        started.push(...entries.map((e) => e.event.id));
        // a1 is slow; if ordering were broken a2 would overtake it
        await sleep(entries[0]!.event.id === 'a1' ? 30 : 1);
        return ok(entries);
      },
    });
    for (const id of ['a1', 'b1', 'a2', 'b2', 'a3']) l.enqueue({ id, orderingKey: id[0]! });
    await waitFor(5);
    expect(settled.filter((id) => id.startsWith('a'))).toEqual(['a1', 'a2', 'a3']);
    expect(settled.indexOf('b2')).toBeLessThan(settled.indexOf('a1'));
  });

  it('never has more attempts in flight than the concurrency', async () => {
    let inFlight = 0;
    let peak = 0;
    const { l, waitFor } = lane({
      concurrency: 3,
      ordering: 'none',
      attempt: async (entries) => {
        peak = Math.max(peak, ++inFlight);
        await sleep(5);
        inFlight--;
        return ok(entries);
      },
    });
    for (let i = 0; i < 20; i++) l.enqueue({ id: `e${i}`, orderingKey: 'same' });
    await waitFor(20);
    expect(peak).toBe(3);
  });

  it('lets other keys pass while one key waits for its retry, and keeps that key in order', async () => {
    const tries = new Map<string, number>();
    const { l, settled, waitFor } = lane({
      concurrency: 1,
      attempt: async (entries) => {
        const id = entries[0]!.event.id;
        tries.set(id, (tries.get(id) ?? 0) + 1);
        if (id === 'a1' && tries.get(id)! < 3) return new Map([[id, { kind: 'retry', delayMs: 20 } as AttemptOutcome]]);
        return ok(entries);
      },
    });
    l.enqueue({ id: 'a1', orderingKey: 'a' });
    l.enqueue({ id: 'a2', orderingKey: 'a' });
    l.enqueue({ id: 'b1', orderingKey: 'b' });
    await waitFor(3);
    expect(settled).toEqual(['b1', 'a1', 'a2']);
    expect(tries.get('a1')).toBe(3);
  });

  it('fills batches from distinct keys and retries only the failed items', async () => {
    const batches: string[][] = [];
    const { l, waitFor } = lane({
      concurrency: 1,
      batchMaxSize: 3,
      batchMaxWaitMs: 20,
      attempt: async (entries) => {
        batches.push(entries.map((e) => e.event.id));
        const outcomes = ok(entries);
        if (batches.length === 1) outcomes.set('y1', { kind: 'retry', delayMs: 1 });
        return outcomes;
      },
    });
    for (const id of ['x1', 'x2', 'y1', 'z1']) l.enqueue({ id, orderingKey: id[0]! });
    await waitFor(4);
    expect(batches[0]).toEqual(['x1', 'y1', 'z1']);
    expect(batches.slice(1).flat().sort()).toEqual(['x2', 'y1']);
  });

  it('adaptive batching: a partial batch goes at once while a slot is free; a burst leaves as full batches; more fill while requests are in flight', async () => {
    const batches: { ids: string[]; at: number }[] = [];
    const holds: (() => void)[] = [];
    const release = () => holds.shift()?.();
    const { l, waitFor } = lane({
      concurrency: 2,
      batchMaxSize: 10,
      attempt: async (entries) => {
        batches.push({ ids: entries.map((e) => e.event.id), at: Date.now() });
        if (batches.length <= 3) await new Promise<void>((resolve) => holds.push(resolve));
        return ok(entries);
      },
    });
    const t0 = Date.now();
    l.enqueue({ id: 'lone', orderingKey: 'lone' });
    await sleep(5);
    expect(batches.map((b) => b.ids)).toEqual([['lone']]); // no maxWait: the function is not kept waiting for company
    expect(batches[0]!.at - t0).toBeLessThan(20);
    for (let i = 0; i < 25; i++) l.enqueue({ id: `e${i}`, orderingKey: `k${i}` });
    await sleep(5);
    // One slot was free: the burst's first full batch took it; the rest waits for a slot and fills meanwhile.
    expect(batches.map((b) => b.ids.length)).toEqual([1, 10]);
    release();
    await sleep(5);
    expect(batches.map((b) => b.ids.length)).toEqual([1, 10, 10]);
    release();
    release();
    await waitFor(26);
    expect(batches.map((b) => b.ids.length)).toEqual([1, 10, 10, 5]);
  });

  it('stop() waits for attempts in flight and starts no new ones', async () => {
    const { l, settled } = lane({
      concurrency: 1,
      attempt: async (entries) => {
        await sleep(20);
        return ok(entries);
      },
    });
    l.enqueue({ id: 'a', orderingKey: 'a' });
    l.enqueue({ id: 'b', orderingKey: 'b' });
    await sleep(5);
    await l.stop(1000);
    expect(settled).toEqual(['a']);
  });
  it("orders an event that moved its row to a new key after the old key's earlier events, and the new key's later ones after it", async () => {
    const started: string[] = [];
    const tries = new Map<string, number>();
    const { l, settled, waitFor } = lane({
      concurrency: 8,
      attempt: async (entries) => {
        const id = entries[0]!.event.id;
        started.push(id);
        tries.set(id, (tries.get(id) ?? 0) + 1);
        await sleep(id === 'a1' ? 30 : 1);
        if (id === 'move' && tries.get(id)! < 2) return new Map([[id, { kind: 'retry', delayMs: 10 } as AttemptOutcome]]);
        return ok(entries);
      },
    });
    l.enqueue({ id: 'b0', orderingKey: 'b' }); // an earlier event of the new key (a row deleted before the move, say)
    l.enqueue({ id: 'a1', orderingKey: 'a' });
    l.enqueue({ id: 'move', orderingKey: 'b', previousOrderingKey: 'a' });
    l.enqueue({ id: 'b2', orderingKey: 'b' });
    l.enqueue({ id: 'a-new', orderingKey: 'a' }); // a new row that reuses the old key
    l.enqueue({ id: 'c1', orderingKey: 'c' });
    expect(l.size).toBe(6);
    await waitFor(6);
    expect(settled.indexOf('move')).toBeGreaterThan(settled.indexOf('a1'));
    expect(settled.indexOf('move')).toBeGreaterThan(settled.indexOf('b0'));
    expect(started.indexOf('move')).toBeGreaterThan(settled.indexOf('a1'));
    expect(started.indexOf('b2')).toBeGreaterThan(started.lastIndexOf('move'));
    expect(started.indexOf('a-new')).toBeGreaterThan(started.lastIndexOf('move'));
    expect(settled.indexOf('c1')).toBeLessThan(settled.indexOf('a1'));
    expect(started.filter((id) => id === 'move')).toEqual(['move', 'move']);
    expect(l.size).toBe(0);
  });
  it('runs a barrier (a truncate) after every earlier event and before every later one, while the rest stays concurrent', async () => {
    const started: string[] = [];
    const tries = new Map<string, number>();
    let inFlight = 0;
    let peak = 0;
    const { l, settled, waitFor } = lane({
      concurrency: 8,
      attempt: async (entries) => {
        const id = entries[0]!.event.id;
        started.push(id);
        tries.set(id, (tries.get(id) ?? 0) + 1);
        peak = Math.max(peak, ++inFlight);
        await sleep(id === 'a1' ? 30 : 2);
        inFlight--;
        if (id === 'b1' && tries.get(id)! < 2) return new Map([[id, { kind: 'retry', delayMs: 10 } as AttemptOutcome]]);
        return ok(entries);
      },
    });
    l.enqueue({ id: 't0', orderingKey: 't', barrier: true }); // nothing before it: runs at once
    for (const id of ['a1', 'b1', 'c1']) l.enqueue({ id, orderingKey: id[0]! });
    l.enqueue({ id: 't1', orderingKey: 't', barrier: true });
    l.enqueue({ id: 'd2', orderingKey: 'd' });
    l.enqueue({ id: 't2', orderingKey: 't', barrier: true });
    for (const id of ['a3', 'e3']) l.enqueue({ id, orderingKey: id[0]! });
    expect(l.size).toBe(9);
    await waitFor(9);
    expect(settled.slice(0, 1)).toEqual(['t0']);
    expect(new Set(settled.slice(1, 4))).toEqual(new Set(['a1', 'b1', 'c1']));
    expect(settled.slice(4, 7)).toEqual(['t1', 'd2', 't2']);
    expect(new Set(settled.slice(7))).toEqual(new Set(['a3', 'e3']));
    expect(started.indexOf('t1')).toBeGreaterThan(started.lastIndexOf('b1'));
    expect(peak).toBeGreaterThanOrEqual(2);
    expect(l.size).toBe(0);
  });

  it('evicts a failing key with every later event of it, and of a key it is linked to by a key change; other keys go on', async () => {
    const evicted: string[] = [];
    const attempted: string[] = [];
    const l = serialLane({
      attempt: async (entries) => {
        attempted.push(...entries.map((e) => e.event.id));
        const id = entries[0]!.event.id;
        return new Map([[id, id === 'a1' ? ({ kind: 'retry', delayMs: 1, reason: 'HTTP 503', status: 503 } as AttemptOutcome) : ({ kind: 'settled' } as AttemptOutcome)]]);
      },
      onRetry: (entry, outcome) => {
        expect(outcome).toMatchObject({ reason: 'HTTP 503', status: 503 });
        return entry.event.id === 'a1' ? 'evict' : 'retry';
      },
      onEvicted: (entries) => evicted.push(...entries.map((e) => `${e.event.id}:${e.attempts}`)),
    });
    l.enqueue({ id: 'a1', orderingKey: 'a' });
    l.enqueue({ id: 'b1', orderingKey: 'b' });
    l.enqueue({ id: 'a2', orderingKey: 'a' });
    l.enqueue({ id: 'c1', orderingKey: 'c', previousOrderingKey: 'a' }); // a's row moved to key c
    l.enqueue({ id: 'c2', orderingKey: 'c' });
    l.enqueue({ id: 'd1', orderingKey: 'd' });
    await sleep(30);
    expect(evicted).toEqual(['a1:1', 'a2:0', 'c1:0', 'c2:0']);
    expect(attempted).toEqual(['a1', 'b1', 'd1']);
    expect(l.size).toBe(0);
  });

  it('evictAll takes every event not in flight, a waiting barrier and what it holds, and keeps their progress', async () => {
    let release: () => void = () => undefined;
    const l = serialLane({
      attempt: async (entries) => {
        await new Promise<void>((r) => (release = r));
        return ok(entries);
      },
    });
    l.enqueue({ id: 'a1', orderingKey: 'a' }); // in flight
    l.enqueue({ id: 'b1', orderingKey: 'b' }, { attempts: 3, firstAttemptAt: 42 });
    l.enqueue({ id: 't', orderingKey: '*', barrier: true });
    l.enqueue({ id: 'a2', orderingKey: 'a' });
    await sleep(5);
    const out = l.evictAll();
    expect(out.map((e) => [e.event.id, e.attempts, e.firstAttemptAt ?? null])).toEqual([
      ['b1', 3, 42],
      ['t', 0, null],
      ['a2', 0, null],
    ]);
    expect(l.size).toBe(1);
    release();
    await sleep(5);
    expect(l.size).toBe(0);
  });

  it('counts the events waiting for a retry', async () => {
    let fail = true;
    const l = new TriggerLane<Ev>({
      concurrency: 4,
      ordering: 'none',
      batchMaxSize: 1,
      batchMaxWaitMs: 0,
      attempt: async (entries) => new Map(entries.map((e) => [e.event.id, fail ? ({ kind: 'retry', delayMs: 20 } as AttemptOutcome) : ({ kind: 'settled' } as AttemptOutcome)])),
      onSettled: () => undefined,
    });
    l.enqueue({ id: 'x', orderingKey: 'x' });
    l.enqueue({ id: 'y', orderingKey: 'y' });
    await sleep(5);
    expect(l.retrying).toBe(2);
    fail = false;
    await sleep(40);
    expect(l.retrying).toBe(0);
    expect(l.size).toBe(0);
  });
});
