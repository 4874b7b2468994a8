import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { listenOnLoopback } from '../../common/loopback.js';

/** One CloudEvent (binary mode) the sink received, with what became of its answer. */
export interface SinkDelivery {
  id: string;
  type: string;
  subject: string;
  data: Record<string, unknown>;
  receivedAt: number;
  /** When the answer was handed to the socket; absent while held or when the client gave up first. */
  answeredAt?: number;
  status?: number;
}

/** What the sink answers one delivery. */
export interface SinkAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * A function stand-in whose answers may be asynchronous: the test decides per delivery when (and
 * whether) it is answered, e.g. by awaiting a Gate. Tracks how many requests are open at once.
 */
export interface ControlledSink {
  url: string;
  deliveries: SinkDelivery[];
  /** Requests received and not yet answered. */
  readonly open: number;
  /** Highest `open` seen since start (or the last resetPeak()). */
  readonly peakOpen: number;
  resetPeak(): void;
  close(): Promise<void>;
}

export async function startControlledSink(answer: (delivery: SinkDelivery) => SinkAnswer | Promise<SinkAnswer>): Promise<ControlledSink> {
  const deliveries: SinkDelivery[] = [];
  let open = 0;
  let peakOpen = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const delivery: SinkDelivery = {
        id: String(req.headers['ce-id']),
        type: String(req.headers['ce-type']),
        subject: String(req.headers['ce-subject']),
        data: body ? (JSON.parse(body) as Record<string, unknown>) : {},
        receivedAt: Date.now(),
      };
      deliveries.push(delivery);
      open += 1;
      peakOpen = Math.max(peakOpen, open);
      let counted = true;
      const uncount = () => {
        if (counted) open -= 1;
        counted = false;
      };
      res.once('close', uncount);
      void Promise.resolve(answer(delivery)).then(
        (reply) => {
          if (res.destroyed) return;
          res.once('finish', () => {
            delivery.answeredAt = Date.now();
            delivery.status = reply.status;
          });
          uncount();
          res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
          res.end(reply.body ?? '');
        },
        () => res.destroy(),
      );
    });
  });
  server.keepAliveTimeout = 30_000;
  const port = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}/`,
    deliveries,
    get open() {
      return open;
    },
    get peakOpen() {
      return peakOpen;
    },
    resetPeak() {
      peakOpen = open;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A latch deliveries can wait on: closed holds them, open lets them (and every later one) through. */
export class Gate {
  private waiters: (() => void)[] = [];
  constructor(private isOpen = false) {}
  wait(): Promise<void> {
    if (this.isOpen) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  open(): void {
    this.isOpen = true;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
  close(): void {
    this.isOpen = false;
  }
  get waiting(): number {
    return this.waiters.length;
  }
}

/** Resident set size of a process, from /proc/<pid>/status (bytes). */
export function processRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** One sample of the Prometheus text format. */
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (enough of it for prom-client's output). */
export function parsePrometheusText(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!.replace(/\\(.)/g, '$1');
    const raw = match[3]!;
    samples.push({ name: match[1]!, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return samples;
}

/** Sum of the samples named `name` whose labels include `labels`; undefined when there is none. */
export function metricSum(samples: MetricSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const matching = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return matching.length ? matching.reduce((sum, s) => sum + s.value, 0) : undefined;
}

/** Metric family names declared (# TYPE lines) in a Prometheus text exposition, with their types. */
export function metricFamilies(text: string): Map<string, string> {
  const families = new Map<string, string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(match[1]!, match[2]!);
  return families;
}

/** Parses "16/B374D848" into a bigint. */
export function lsnToBigInt(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}
