import { describe, expect, it } from 'vitest';
import { TriggerLane, type AttemptOutcome, type LaneEntry } from './triggerLane.js';

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
  it('orders an event that moved its row to a new key after the old key\'s earlier events, and the new key\'s later ones after it', async () => {
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
});
