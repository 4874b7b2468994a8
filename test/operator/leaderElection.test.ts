import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoordinationV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.js';
import { decideLease, type LeaderElectionConfig, LeaderElector, type LeaseDecision, type LeaseRecord, leaseCallTimeoutMs, nextLeaseSpec } from '../../operator/leaderElection.js';

const ME = 'op-a';
const NOW = 1_000_000;

describe('decideLease', () => {
  const cases: { name: string; given: { record: LeaseRecord | undefined; observedAtMs: number }; expect: LeaseDecision }[] = [
    { name: 'no Lease yet: create it', given: { record: undefined, observedAtMs: 0 }, expect: { action: 'create' } },
    { name: 'we hold it: renew', given: { record: { holderIdentity: ME, leaseDurationSeconds: 15 }, observedAtMs: NOW }, expect: { action: 'renew' } },
    {
      name: 'another holder renewed within the lease duration (by our clock): wait',
      given: { record: { holderIdentity: 'op-b', leaseDurationSeconds: 15 }, observedAtMs: NOW - 14_000 },
      expect: { action: 'wait', holder: 'op-b', remainingMs: 1_000 },
    },
    {
      name: 'another holder has not renewed for the lease duration: take over',
      given: { record: { holderIdentity: 'op-b', leaseDurationSeconds: 15 }, observedAtMs: NOW - 15_000 },
      expect: { action: 'takeOver', previousHolder: 'op-b' },
    },
    {
      name: 'a released Lease (holder cleared) is free at once',
      given: { record: { holderIdentity: '', leaseDurationSeconds: 1 }, observedAtMs: NOW },
      expect: { action: 'takeOver', previousHolder: undefined },
    },
  ];
  it.each(cases)('$name', ({ given, expect: want }) => {
    expect(decideLease(given.record, given.observedAtMs, NOW, ME)).toEqual(want);
  });

  it("judges expiry by when we saw the record change, not by the holder's renewTime (clock skew)", () => {
    const record = { holderIdentity: 'op-b', leaseDurationSeconds: 15, renewTime: new Date(NOW - 3_600_000) };
    expect(decideLease(record, NOW, NOW, ME).action).toBe('wait');
  });
});

describe('nextLeaseSpec', () => {
  const now = new Date(NOW);
  it('taking over counts a transition and sets acquireTime', () => {
    const spec = nextLeaseSpec({ holderIdentity: 'op-b', leaseTransitions: 4, acquireTime: new Date(0) }, ME, now, 15_000);
    expect(spec).toMatchObject({ holderIdentity: ME, leaseDurationSeconds: 15, leaseTransitions: 5 });
    expect(new Date(spec.acquireTime!).getTime()).toBe(NOW);
    expect(new Date(spec.renewTime!).getTime()).toBe(NOW);
  });
  it('renewing keeps acquireTime and the transition count', () => {
    const acquired = new Date(NOW - 60_000);
    const spec = nextLeaseSpec({ holderIdentity: ME, leaseTransitions: 2, acquireTime: acquired }, ME, now, 15_000);
    expect(spec.leaseTransitions).toBe(2);
    expect(new Date(spec.acquireTime!).getTime()).toBe(acquired.getTime());
  });
  it('a new Lease starts at zero transitions', () => {
    expect(nextLeaseSpec(undefined, ME, now, 15_000).leaseTransitions).toBe(0);
  });
  it('writes times as MicroTime (microsecond precision, as the API requires)', () => {
    expect(JSON.stringify(nextLeaseSpec(undefined, ME, now, 15_000).renewTime)).toMatch(/\.\d{6}Z"$/);
  });
});

/**
 * An API server holding one Lease that answers get/create/replace like the real one until `hang()`;
 * from then on it accepts each request and never answers, as an overloaded or partitioned server does.
 */
class FakeLeaseServer {
  private lease: Record<string, unknown> | undefined;
  private version = 0;
  private hanging = false;
  /** Requests accepted but never answered, and whether the client has since closed each one. */
  readonly unanswered: { method: string; closed: boolean }[] = [];
  /** When each renewal (a replace) was answered. */
  readonly renewedAt: number[] = [];
  private readonly server: Server = createServer((req, res) => void this.handle(req, res));

  async start(): Promise<KubeConfig> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`, skipTLSVerify: true }], // client-node refuses http:// otherwise
      users: [{ name: 'fake' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    });
    return config;
  }

  hang(hanging = true): void {
    this.hanging = hanging;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    if (this.hanging) {
      const entry = { method: req.method ?? '', closed: false };
      this.unanswered.push(entry);
      res.once('close', () => (entry.closed = true));
      return;
    }
    const reply = (status: number, object: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(object));
    };
    if (req.method === 'GET') {
      if (this.lease) return reply(200, this.lease);
      return reply(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'leases "op" not found' });
    }
    const written = JSON.parse(body) as { metadata?: Record<string, unknown> };
    this.lease = { ...written, metadata: { ...written.metadata, resourceVersion: String(++this.version) } };
    if (req.method === 'PUT') this.renewedAt.push(Date.now());
    return reply(req.method === 'POST' ? 201 : 200, this.lease);
  }
}

describe('LeaderElector against an API server that stops answering', () => {
  const CONFIG: LeaderElectionConfig = { namespace: 'eventide', name: 'op', identity: ME, leaseDurationMs: 4_000, renewDeadlineMs: 1_000, retryPeriodMs: 100 };
  /** Timer and scheduling slack allowed on top of the renew deadline. */
  const MARGIN_MS = 500;
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(server: FakeLeaseServer) {
    const api = (await server.start()).makeApiClient(CoordinationV1Api);
    const elector = new LeaderElector(api, CONFIG, silentLogger());
    const stop = new AbortController();
    let startedLeading!: () => void;
    const leading = new Promise<void>((resolve) => (startedLeading = resolve));
    let stoppedLeading!: (reason: 'lost' | 'released') => void;
    const stopped = new Promise<{ reason: 'lost' | 'released'; atMs: number }>((resolve) => (stoppedLeading = (reason) => resolve({ reason, atMs: Date.now() })));
    const running = elector.run(stop.signal, { onStartedLeading: startedLeading, onStoppedLeading: stoppedLeading });
    cleanups.push(async () => {
      stop.abort();
      await server.close();
      await running;
    });
    return { elector, leading, stopped, running };
  }

  /** `promise`, or "timed out" after `ms`: a test of something that used to hang must fail, not wait forever. */
  const within = <T>(promise: Promise<T>, ms: number) => Promise.race([promise, new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), ms).unref())]);

  it('a leader whose renewals hang steps down by the renew deadline, and the hung requests are cancelled', async () => {
    const server = new FakeLeaseServer();
    const { elector, leading, stopped, running } = await start(server);
    expect(await within(leading, 5_000)).not.toBe('timed out');
    // Renewing works while the server answers.
    await expect.poll(() => server.renewedAt.length, { timeout: 2_000 }).toBeGreaterThanOrEqual(2);

    server.hang();
    const lastRenewal = server.renewedAt.at(-1)!;
    const outcome = await within(stopped, CONFIG.renewDeadlineMs + 3_000);
    expect(outcome, 'still leading while its renew calls hang').not.toBe('timed out');
    const { reason, atMs } = outcome as { reason: string; atMs: number };
    expect(reason).toBe('lost');
    expect(atMs - lastRenewal).toBeLessThanOrEqual(CONFIG.renewDeadlineMs + MARGIN_MS);
    expect(elector.isLeader()).toBe(false);
    expect(await within(running, 1_000)).not.toBe('timed out');

    // Cancelled, not abandoned: the client closed every request the server left hanging.
    expect(server.unanswered.length).toBeGreaterThan(0);
    await expect.poll(() => server.unanswered.every((r) => r.closed), { timeout: 1_000 }).toBe(true);
  });

  it('a candidate whose read hangs gives it up after the call timeout and acquires on the next try', async () => {
    const server = new FakeLeaseServer();
    server.hang();
    const hungAt = Date.now();
    const { leading } = await start(server);
    await expect.poll(() => server.unanswered.length, { timeout: 2_000 }).toBe(1);
    server.hang(false);
    expect(await within(leading, leaseCallTimeoutMs(CONFIG.renewDeadlineMs) + 3_000)).not.toBe('timed out');
    expect(Date.now() - hungAt).toBeLessThanOrEqual(leaseCallTimeoutMs(CONFIG.renewDeadlineMs) + CONFIG.retryPeriodMs * 1.2 + MARGIN_MS);
    await expect.poll(() => server.unanswered[0]!.closed, { timeout: 1_000 }).toBe(true);
  });
});
