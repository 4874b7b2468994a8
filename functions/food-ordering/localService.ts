/**
 * A Function's Service on a laptop: one stable address the dispatcher is given once, in front of the
 * replicas that come and go as the Function scales.
 *
 * It behaves as kube-proxy does for a ClusterIP Service: while no replica is ready nothing listens on
 * the address, so a connection is refused (kube-proxy REJECTs a Service without endpoints) and the
 * dispatcher knows the function is at zero rather than failing; once a replica is ready it listens
 * and spreads requests over the ready replicas. A replica removed from the rotation takes no new
 * request but finishes those it has, like a pod whose endpoint is removed before it is stopped.
 */
import { Agent, createServer, type IncomingHttpHeaders, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { freeListenPort } from './localPorts.js';
import { pickReplica } from './replicaChoice.js';

/** A replica the Service sends requests to. */
interface Endpoint {
  id: number;
  port: number;
  /** Keep-alive connections to this replica only, so that removing it closes exactly its connections. */
  agent: Agent;
  inflight: number;
  /** Set once the endpoint has left the rotation: called when its last request has finished. */
  onIdle?: () => void;
}

/** A listen that failed (the port taken by another program meanwhile) is tried again after this long. */
const LISTEN_RETRY_MS = 200;

/**
 * The runtime closes idle keep-alive connections after 5 s; reusing one at that moment fails the
 * request, so the Service lets its own go a second earlier.
 */
const UPSTREAM_IDLE_MS = 4000;

/** Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

/** The headers of a message minus the hop-by-hop ones, including those its Connection header names. */
export function endToEndHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = String(headers.connection ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase());
  const kept: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(name) && !named.includes(name)) kept[name] = value;
  return kept;
}

/** One Function's stable local address, listening only while a replica is ready. */
export class LocalService {
  private readonly rotation: Endpoint[] = [];
  /** The listener, while one is open. */
  private server: Server | undefined;
  /** Listeners already closed whose connections are finishing their last requests, and when they are gone. */
  private readonly retiring = new Map<Server, Promise<void>>();
  /** Listen and close run one after the other, so the listening state always follows the latest rotation. */
  private transition: Promise<void> = Promise.resolve();
  private retry: NodeJS.Timeout | undefined;
  private turn = 0;
  private closed = false;
  private listenProblem: string | undefined;

  private constructor(
    /** `namespace/name` of the Function, for messages. */
    readonly name: string,
    readonly port: number,
  ) {}

  /** Reserves a free loopback port for the Function; nothing listens on it until a replica is added. */
  static async reserve(name: string): Promise<LocalService> {
    return new LocalService(name, await freeListenPort());
  }

  /** The URL the dispatcher is given (`--function-url`). */
  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  /** Replicas in the rotation: the ready ones. */
  get ready(): number {
    return this.rotation.length;
  }

  /** Requests a replica in the rotation is serving now (0 for one not in it). */
  inflight(id: number): number {
    return this.rotation.find((endpoint) => endpoint.id === id)?.inflight ?? 0;
  }

  /** Whether the address accepts connections now. */
  get listening(): boolean {
    return this.server !== undefined;
  }

  /** Why the address is not listening although a replica is ready (its port was taken), while that lasts. */
  get problem(): string | undefined {
    return this.listenProblem;
  }

  /** Puts a ready replica, listening on `port`, into the rotation; the address listens from now on. */
  add(id: number, port: number): void {
    if (this.closed) return;
    this.rotation.push({ id, port, inflight: 0, agent: new Agent({ keepAlive: true, timeout: UPSTREAM_IDLE_MS }) });
    this.sync();
  }

  /**
   * Takes a replica out of the rotation at once (the last one out closes the address) and resolves
   * when the requests it was serving have finished, so it can be stopped without cutting any.
   */
  remove(id: number): Promise<void> {
    const index = this.rotation.findIndex((endpoint) => endpoint.id === id);
    if (index < 0) return Promise.resolve();
    const endpoint = this.rotation.splice(index, 1)[0]!;
    this.sync();
    return new Promise<void>((resolve) => {
      endpoint.onIdle = () => {
        endpoint.agent.destroy();
        resolve();
      };
      if (endpoint.inflight === 0) endpoint.onIdle();
    });
  }

  /** Stops listening and closes every connection; call it once the replicas are gone. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    for (const endpoint of this.rotation.splice(0)) endpoint.agent.destroy();
    this.sync();
    await this.transition;
    for (const server of this.retiring.keys()) server.closeAllConnections();
    await Promise.all(this.retiring.values());
  }

  private sync(): void {
    this.transition = this.transition.then(() => this.applyListening());
  }

  private async applyListening(): Promise<void> {
    const wanted = !this.closed && this.rotation.length > 0;
    if (wanted && !this.server) {
      try {
        this.server = await this.listen();
        this.listenProblem = undefined;
      } catch (error) {
        this.listenProblem = `cannot listen on 127.0.0.1:${this.port}: ${(error as Error).message}; retrying`;
        clearTimeout(this.retry);
        this.retry = setTimeout(() => this.sync(), LISTEN_RETRY_MS);
      }
    } else if (!wanted && this.server) {
      const server = this.server;
      this.server = undefined;
      // New connections are refused from now on; idle keep-alive ones close now, so the dispatcher's
      // next request opens a new connection and is refused too, rather than waiting on a dead one.
      this.retiring.set(
        server,
        new Promise<void>((resolve) => server.close(() => resolve())).then(() => void this.retiring.delete(server)),
      );
      server.closeIdleConnections();
    }
  }

  private async listen(): Promise<Server> {
    const server = createServer((req, res) => this.forward(server, req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server;
  }

  private forward(server: Server, req: IncomingMessage, res: ServerResponse): void {
    // A connection to a listener closed since (the last replica left) serves no further request: its
    // answer says so, so that the dispatcher's next request opens a connection, and is refused.
    const markLastIfListenerClosed = () => {
      if (server !== this.server) res.setHeader('connection', 'close');
    };
    res.once('finish', () => {
      if (server !== this.server) server.closeIdleConnections();
    });
    const index = pickReplica(this.rotation, this.turn++);
    if (index === undefined) {
      // Only a request sent on a kept-alive connection just as the last replica left gets here.
      markLastIfListenerClosed();
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end(`${this.name}: no replica is ready\n`);
      return;
    }
    const endpoint = this.rotation[index]!;
    endpoint.inflight += 1;
    const upstream = request({
      host: '127.0.0.1',
      port: endpoint.port,
      method: req.method,
      path: req.url,
      headers: endToEndHeaders(req.headers),
      agent: endpoint.agent,
    });
    upstream.on('response', (answer) => {
      markLastIfListenerClosed();
      res.writeHead(answer.statusCode ?? 502, endToEndHeaders(answer.headers));
      answer.pipe(res);
    });
    upstream.on('error', (error) => {
      // The replica died or reset the connection: what a client of a crashed pod sees, as an answer.
      if (res.headersSent) return void res.destroy(error);
      markLastIfListenerClosed();
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`${this.name}: replica ${endpoint.id} failed: ${error.message}\n`);
    });
    res.once('close', () => {
      // The dispatcher gave up (its attempt timed out): the replica's handler is told through its signal.
      if (!res.writableFinished) upstream.destroy();
      endpoint.inflight -= 1;
      if (endpoint.inflight === 0) endpoint.onIdle?.();
    });
    // A dispatcher that hangs up mid-body: the close above ends the attempt; the error needs a listener.
    req.on('error', () => upstream.destroy());
    req.pipe(upstream);
  }
}
