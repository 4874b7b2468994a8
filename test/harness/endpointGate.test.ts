import { connect } from 'node:net';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeConfigFrom } from '../operator/support.js';
import { type ControlPlane, startControlPlane } from './controlPlane.js';
import { countReadyEndpoints, EndpointGatedServer } from './endpointGate.js';

const TIMEOUT = 120_000;
const NS = 'gate';
// An address no other test uses, so "refused" means the gate is shut, not someone else's listener.
const HOST = '127.0.0.177';
const PORT = 80;
const READY_DELAY_MS = 2_000;

const slice = (...endpoints: { addresses: string[]; ready?: boolean }[]): V1EndpointSlice => ({
  addressType: 'IPv4',
  endpoints: endpoints.map(({ addresses, ready }) => ({ addresses, ...(ready === undefined ? {} : { conditions: { ready } }) })),
});

describe('countReadyEndpoints', () => {
  const cases: { name: string; given: V1EndpointSlice[]; expect: number }[] = [
    { name: 'no slices: none', given: [], expect: 0 },
    { name: 'a slice without endpoints (a Deployment at 0 replicas): none', given: [slice()], expect: 0 },
    { name: 'an endpoint not ready (pod Running, not Ready) does not count', given: [slice({ addresses: ['10.244.0.2'], ready: false })], expect: 0 },
    { name: 'ready endpoints count', given: [slice({ addresses: ['10.244.0.2'], ready: true }, { addresses: ['10.244.0.3'], ready: true })], expect: 2 },
    { name: 'an unset ready condition means ready', given: [slice({ addresses: ['10.244.0.2'] })], expect: 1 },
    {
      name: 'an endpoint listed in two slices counts once',
      given: [slice({ addresses: ['10.244.0.2'], ready: true }), slice({ addresses: ['10.244.0.2'], ready: true })],
      expect: 1,
    },
  ];
  it.each(cases)('$name', ({ given, expect: expected }) => {
    expect(countReadyEndpoints(given)).toBe(expected);
  });
});

/** Connects to HOST:PORT; resolves with 'connected' (and closes) or the error code. */
function tryConnect(): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port: PORT });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Polls `fn` until it returns a truthy value. */
async function eventually<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('EndpointGatedServer against a control plane with kwok', () => {
  let cp: ControlPlane;
  let gate: EndpointGatedServer | undefined;

  const kubectlOk = async (args: string[], input?: string): Promise<string> => {
    const r = await cp.kubectl(args, input);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };

  /** Ready condition of the single pod of the Deployment, or undefined while it has none. */
  const podReady = async (): Promise<boolean | undefined> => {
    const out = await kubectlOk(['get', 'pods', '-n', NS, '-l', 'app=fn', '-o', 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}']);
    const first = out.split('\n').filter(Boolean)[0];
    return first === undefined ? undefined : first === 'True';
  };

  beforeAll(async () => {
    cp = await startControlPlane({ controllerManager: true, kwok: true, podReadyDelayMs: READY_DELAY_MS, build: false });
    await cp.addFakeNodes(1);
    await kubectlOk(['create', 'namespace', NS]);
    await kubectlOk(['create', 'deployment', 'fn', '-n', NS, '--image=registry.invalid/fn:1', '--replicas=0']);
    await kubectlOk(['create', 'service', 'clusterip', 'fn', '-n', NS, '--tcp=80:8080']);
  }, TIMEOUT);

  afterAll(async () => {
    await gate?.close();
    await cp?.stop();
  }, TIMEOUT);

  it('refuses connections without a Ready pod, answers once one is Ready, refuses again at 0 replicas', async () => {
    // `kubectl create service` selects app=fn, the label `kubectl create deployment` puts on its pods.
    gate = await EndpointGatedServer.start({
      kubeConfig: kubeConfigFrom(cp.kubeconfigPath),
      namespace: NS,
      service: 'fn',
      host: HOST,
      port: PORT,
      handler: (_req, res) => res.end('hello from fn'),
    });
    expect(gate.isOpen).toBe(false);
    expect(gate.readyEndpoints).toBe(0);
    expect(await tryConnect()).toBe('ECONNREFUSED');

    const scaledUpAt = Date.now();
    await kubectlOk(['scale', 'deployment', 'fn', '-n', NS, '--replicas=1']);
    // Running with an IP but not Ready: the endpointslice controller lists it as not ready.
    await eventually(async () => (await podReady()) === false, 30_000, 'a Running, not Ready pod');
    expect(await tryConnect()).toBe('ECONNREFUSED');
    expect(gate.isOpen).toBe(false);

    const openedAt = await gate.waitFor('open', READY_DELAY_MS + 15_000);
    expect(await podReady()).toBe(true);
    expect(openedAt - scaledUpAt).toBeGreaterThanOrEqual(0.8 * READY_DELAY_MS);
    expect(gate.readyEndpoints).toBe(1);
    const res = await fetch(`http://${HOST}:${PORT}/`, { signal: AbortSignal.timeout(5_000) });
    expect(await res.text()).toBe('hello from fn');

    // A connection held open across scale-down is reset, as the pod's would be.
    const held = connect({ host: HOST, port: PORT });
    const heldClosed = new Promise<void>((resolve) => held.once('close', () => resolve()));
    held.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => held.once('connect', resolve).once('error', reject));

    const scaledDownAt = Date.now();
    await kubectlOk(['scale', 'deployment', 'fn', '-n', NS, '--replicas=0']);
    await gate.waitFor('closed', 30_000, scaledDownAt);
    expect(await tryConnect()).toBe('ECONNREFUSED');
    expect(gate.readyEndpoints).toBe(0);
    await heldClosed;
    expect(gate.transitions.map((t) => t.state)).toEqual(['open', 'closed']);
    expect(gate.firstOpenedAt).toBe(openedAt);
  }, 60_000);
});
