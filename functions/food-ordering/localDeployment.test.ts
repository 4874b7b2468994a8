import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type LaunchReplica, LocalDeployment } from './localDeployment.js';
import { LocalService } from './localService.js';

/** In-process replicas: an HTTP server per replica, started and stopped as the deployment asks. */
function inProcessReplicas() {
  const live = new Map<number, { server: Server; held: (() => void)[]; stopAsked: boolean; crash: () => void }>();
  const launch: LaunchReplica = (port, id) => {
    let exit!: () => void;
    const exited = new Promise<void>((resolve) => (exit = resolve));
    const server = createServer((req, res) => {
      const answer = () => res.writeHead(200).end(`replica ${id}`);
      if (req.headers['x-hold']) entry.held.push(answer);
      else answer();
    });
    const entry = {
      server,
      held: [] as (() => void)[],
      stopAsked: false,
      crash: () => {
        server.closeAllConnections();
        server.close(() => exit());
      },
    };
    live.set(id, entry);
    const ready = new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return {
      ready,
      exited: exited.then(() => void live.delete(id)),
      stop: async () => {
        entry.stopAsked = true;
        server.close(() => exit());
        await exited;
      },
    };
  };
  return { launch, live };
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function setUp(signal?: AbortSignal) {
  const service = await LocalService.reserve('food/validate-order');
  const replicas = inProcessReplicas();
  const deployment = new LocalDeployment(service, replicas.launch, signal);
  cleanup.push(async () => {
    await deployment.stop();
    await service.close();
  });
  return { service, deployment, ...replicas };
}

const post = (url: string, headers: Record<string, string> = {}) => fetch(url, { method: 'POST', body: '{}', headers }).then((r) => r.text());

describe("a Function's local replicas", () => {
  it('scaled up: replicas start and join the Service once ready; scaled to zero: they stop and the Service closes', async () => {
    const { service, deployment, live } = await setUp();
    expect(deployment.status()).toEqual({ desired: 0, ready: 0, peakReady: 0, running: 0, restarts: 0 });
    deployment.scaleTo(2);
    await expect.poll(() => deployment.status().ready).toBe(2);
    expect(service.listening).toBe(true);
    expect(await post(service.url)).toMatch(/^replica \d$/);
    deployment.scaleTo(0);
    await expect.poll(() => deployment.status().running).toBe(0);
    expect(live.size).toBe(0);
    expect(deployment.status()).toEqual({ desired: 0, ready: 0, peakReady: 2, running: 0, restarts: 0 });
    await expect.poll(() => service.listening).toBe(false);
  });

  it('a replica scaled away finishes its requests before it is asked to stop', async () => {
    const { service, deployment, live } = await setUp();
    deployment.scaleTo(1);
    await expect.poll(() => service.listening).toBe(true);
    const replica = [...live.values()][0]!;
    const slow = post(service.url, { 'x-hold': '1' });
    await expect.poll(() => replica.held.length).toBe(1);
    deployment.scaleTo(0);
    // Out of the rotation at once: the address refuses new connections while the request finishes.
    await expect.poll(() => service.listening).toBe(false);
    await new Promise((r) => setTimeout(r, 100));
    expect(replica.stopAsked).toBe(false);
    replica.held.shift()!();
    expect(await slow).toBe('replica 1');
    await expect.poll(() => replica.stopAsked).toBe(true);
    await expect.poll(() => live.size).toBe(0);
  });

  it('scaling down stops the replica with the least to finish', async () => {
    const { service, deployment, live } = await setUp();
    deployment.scaleTo(2);
    await expect.poll(() => deployment.status().ready).toBe(2);
    const slow = post(service.url, { 'x-hold': '1' });
    await expect.poll(() => [...live.values()].some((r) => r.held.length === 1)).toBe(true);
    const [busyId] = [...live.entries()].find(([, r]) => r.held.length === 1)!;
    deployment.scaleTo(1);
    await expect.poll(() => live.size).toBe(1);
    expect([...live.keys()]).toEqual([busyId]);
    live.get(busyId)!.held.shift()!();
    expect(await slow).toBe(`replica ${busyId}`);
  });

  it('a replica that dies unasked is replaced', async () => {
    const { deployment, live } = await setUp();
    deployment.scaleTo(1);
    await expect.poll(() => deployment.status().ready).toBe(1);
    live.get(1)!.crash();
    await expect.poll(() => deployment.status().restarts).toBe(1);
    await expect.poll(() => deployment.status().ready, { timeout: 5000 }).toBe(1);
    expect([...live.keys()]).toEqual([2]);
  });

  it('once its signal is aborted (Ctrl-C reached the replicas), nothing is started or replaced', async () => {
    const stopping = new AbortController();
    const { deployment, live } = await setUp(stopping.signal);
    deployment.scaleTo(1);
    await expect.poll(() => deployment.status().ready).toBe(1);
    stopping.abort();
    live.get(1)!.crash();
    deployment.scaleTo(3);
    await new Promise((r) => setTimeout(r, 1500));
    expect(live.size).toBe(0);
    expect(deployment.status().ready).toBe(0);
  });
});
