import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { DispatcherStateReport, FunctionDemandReport } from '../../common/dispatcherState.js';
import { listenOnLoopback } from '../../common/loopback.js';
import type { DispatcherReading } from '../../operator/eventtrigger/serving.js';
import type { ScaleSpec } from '../../operator/function/scaleDecision.js';
import { decideLocalReplicas, type FunctionScale, LocalScaler, scaleSpecOf } from './localScaler.js';

const KEY = 'food/validate-order';

function report(functions: Record<string, FunctionDemandReport>): DispatcherStateReport {
  return {
    source: { slot: 'eventide', publication: 'eventide', phase: 'streaming', connected: true, lagBytes: 0 },
    configFingerprint: 'x',
    triggers: {},
    functions,
  };
}
const reading = (functions: Record<string, FunctionDemandReport>, at = 0): DispatcherReading => ({ report: report(functions), at });
const demand = (events: number, inflight = 0, backlog = 0): FunctionDemandReport => ({ events, inflight, backlog });

const scale: FunctionScale = { min: 0, max: 4, target: 5, scaleDownDelay: '10s', idleTimeout: '30s', activationTimeout: '2m' };

describe("the decider's spec from spec.scale", () => {
  it.each([
    { name: 'durations in milliseconds', given: { scale, overrides: {} }, expect: { min: 0, max: 4, target: 5, scaleDownDelayMs: 10_000, idleTimeoutMs: 30_000 } },
    {
      name: 'a shorter local idle timeout caps the scale-down delay too, or zero would still wait for the delay',
      given: { scale, overrides: { idleTimeoutMs: 3000 } },
      expect: { min: 0, max: 4, target: 5, scaleDownDelayMs: 3000, idleTimeoutMs: 3000 },
    },
    {
      name: 'a longer local idle timeout leaves the delay alone',
      given: { scale, overrides: { idleTimeoutMs: 60_000 } },
      expect: { min: 0, max: 4, target: 5, scaleDownDelayMs: 10_000, idleTimeoutMs: 60_000 },
    },
  ])('$name', ({ given, expect: expected }) => {
    expect(scaleSpecOf(given.scale, given.overrides)).toEqual(expected);
  });
});

describe('one local decision, as the operator decides', () => {
  const spec = scaleSpecOf(scale);
  const decide = (current: number, r: DispatcherReading | undefined, now = 100_000) => decideLocalReplicas({ functionKey: KEY, spec, current, reading: r, memory: { recent: [] }, now, since: 0 });

  it.each([
    { name: 'events waiting for a Function at zero: up to ceil(events / target)', given: { current: 0, reading: reading({ [KEY]: demand(12) }) }, expect: [3, 'ScaleUp'] },
    { name: 'the backlog counts as demand', given: { current: 0, reading: reading({ [KEY]: demand(0, 0, 7) }) }, expect: [2, 'ScaleUp'] },
    { name: 'never above max', given: { current: 1, reading: reading({ [KEY]: demand(500) }) }, expect: [4, 'ScaleUp'] },
    { name: 'a Function the dispatcher does not list has no demand', given: { current: 0, reading: reading({}) }, expect: [0, 'Steady'] },
    { name: "other Functions' demand is theirs", given: { current: 0, reading: reading({ 'food/assign-agent': demand(40) }) }, expect: [0, 'Steady'] },
    { name: 'a dispatcher that cannot be read holds the count', given: { current: 2, reading: { error: 'ECONNREFUSED', at: 0 } }, expect: [2, 'DemandUnknown'] },
    { name: 'a dispatcher not read yet holds the count', given: { current: 2, reading: undefined }, expect: [2, 'DemandUnknown'] },
    { name: 'idle long enough: to zero', given: { current: 1, reading: reading({ [KEY]: demand(0) }) }, expect: [0, 'Idle'] },
  ])('$name', ({ given, expect: expected }) => {
    const decision = decide(given.current, given.reading);
    expect([decision.replicas, decision.reason]).toEqual(expected);
  });
});

describe('the local scaler loop', () => {
  const servers: (() => void)[] = [];
  afterEach(() => {
    for (const close of servers.splice(0)) close();
  });

  it('reads /state every interval and sets the replicas: up under demand, back to zero once idle', async () => {
    let current: Record<string, FunctionDemandReport> = { [KEY]: demand(12) };
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(report(current))));
    const port = await listenOnLoopback(server);
    servers.push(() => server.close());
    const spec: ScaleSpec = { min: 0, max: 4, target: 5, scaleDownDelayMs: 150, idleTimeoutMs: 300 };
    const asked: [number, string | undefined][] = [];
    const target = { desired: 0, scaleTo: (n: number) => void asked.push([(target.desired = n), scaler.lastDecision(KEY)?.reason]) };
    const scaler = new LocalScaler([{ key: KEY, spec, target }], { stateUrl: `http://127.0.0.1:${port}/state`, intervalMs: 25 });
    scaler.start();
    try {
      await expect.poll(() => target.desired).toBe(3);
      current = { [KEY]: demand(0) };
      await expect.poll(() => target.desired, { timeout: 5000 }).toBe(0);
      // Down through one warm replica (the idle timeout), never straight from three to zero.
      expect(asked).toEqual([
        [3, 'ScaleUp'],
        [1, 'ScaleDown'],
        [0, 'Idle'],
      ]);
      expect(scaler.problem).toBeUndefined();
    } finally {
      await scaler.stop();
    }
  });

  it('a dispatcher that does not answer holds the replicas and says why', async () => {
    const server = createServer();
    const port = await listenOnLoopback(server);
    server.close();
    const target = { desired: 2, scaleTo: (n: number) => void (target.desired = n) };
    const scaler = new LocalScaler([{ key: KEY, spec: scaleSpecOf(scale), target }], { stateUrl: `http://127.0.0.1:${port}/state`, intervalMs: 25 });
    scaler.start();
    try {
      await expect.poll(() => scaler.problem).toMatch(/^cannot read the dispatcher's state: /);
      expect(target.desired).toBe(2);
      expect(scaler.lastDecision(KEY)?.reason).toBe('DemandUnknown');
    } finally {
      await scaler.stop();
    }
  });
});
