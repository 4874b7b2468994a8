/**
 * The bench's function: a minimal node:http server in a child process of its own (so it never shares
 * an event loop with what it measures) that answers every request at once, 200 unless told otherwise,
 * counts events (binary, structured and batched CloudEvents) and, when asked, records each event's latency:
 * receipt time minus its ce-time or `time` (the commit time), or minus x-bench-sent-at for the bare clients. A backfill's
 * reads (type dev.eventide.row.read) are counted among the events and apart, and have no latency (their
 * time is when their chunk was read, not a commit).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import { ATTEMPT_HEADER, EVENT_TYPE_PREFIX } from '../api/v1alpha1/index.js';

const SELF = fileURLToPath(import.meta.url);
const READ_TYPE = `${EVENT_TYPE_PREFIX}read`;

type SinkCommand = { cmd: 'reset'; recordLatency: boolean } | { cmd: 'stats' } | { cmd: 'answer'; status: number };

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface SinkStats {
  /** Events received, a backfill's reads included. */
  events: number;
  /** Of those, a backfill's reads. */
  reads: number;
  requests: number;
  /** Date.now() of the first and last receipt since the last reset. */
  firstAt: number;
  lastAt: number;
  /** Of the events that are not reads. */
  latency: LatencySummary | null;
  /** The first request since the reset, to replay from the bare client. */
  sample: { headers: Record<string, string>; body: string } | null;
}

type SinkMessage = { id: number; reply: SinkStats | null } | { ready: number };

/** A request as the sink received it: what a bare client sends again. */
export type SinkRequest = NonNullable<SinkStats['sample']>;

/** The request a bare client replays: the first one the sink received since its reset (a bare JSON POST when none came). */
export function replayOf(stats: SinkStats): SinkRequest {
  return stats.sample ?? { headers: { 'content-type': 'application/json' }, body: '{}' };
}

/** The bare clients' undici Agent: the dispatcher's HttpSender settings (keep-alive 30 s, no pipelining), 128 connections. */
export function bareAgent(): Agent {
  return new Agent({ connections: 128, keepAliveTimeout: 30_000, pipelining: 1 });
}

export function summarize(values: number[]): LatencySummary | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]! };
}

function countOccurrences(text: string, needle: string): number {
  let n = 0;
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + needle.length)) n++;
  return n;
}

/** Runs in the child: answers 200 to everything (or the status set by `answer`), counts events, measures latency. */
function runSink(): void {
  let events = 0;
  let reads = 0;
  let requests = 0;
  let firstAt = 0;
  let lastAt = 0;
  let recordLatency = false;
  let latencies: number[] = [];
  let sample: SinkStats['sample'] = null;
  let status = 200;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const now = Date.now();
      const body = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
      const contentType = req.headers['content-type'] ?? '';
      let n = 1;
      // Structured mode (application/cloudevents+json): one event, or a JSON array of them as Debezium
      // Server's HTTP sink sends a batch (without the batch content type).
      const structured = contentType.startsWith('application/cloudevents+json');
      if (contentType.startsWith('application/cloudevents-batch+json') || (structured && body.startsWith('['))) {
        if (recordLatency) {
          const items = JSON.parse(body) as { time: string; type: string }[];
          for (const item of items) {
            if (item.type === READ_TYPE) reads += 1;
            else latencies.push(now - Date.parse(item.time));
          }
          n = items.length;
        } else {
          n = countOccurrences(body, '"specversion"');
          reads += countOccurrences(body, `"${READ_TYPE}"`);
        }
      } else if (req.headers['ce-type'] === READ_TYPE) {
        reads += 1;
      } else if (structured && recordLatency) {
        const item = JSON.parse(body) as { time?: string; type?: string };
        if (item.type === READ_TYPE) reads += 1;
        else if (typeof item.time === 'string') latencies.push(now - Date.parse(item.time));
      } else if (recordLatency) {
        const sentAt = req.headers['x-bench-sent-at'];
        const time = req.headers['ce-time'];
        if (typeof sentAt === 'string') latencies.push(now - Number(sentAt));
        else if (typeof time === 'string') latencies.push(now - Date.parse(time));
      }
      if (!sample) {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) {
          if (typeof v === 'string' && (k === 'content-type' || k === ATTEMPT_HEADER || k.startsWith('ce-'))) headers[k] = v;
        }
        sample = { headers, body };
      }
      events += n;
      requests += 1;
      if (firstAt === 0) firstAt = now;
      lastAt = now;
      res.writeHead(status, { 'content-length': '0' });
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  process.on('message', (message: { id: number } & SinkCommand) => {
    let reply: SinkStats | null = null;
    switch (message.cmd) {
      case 'reset':
        events = reads = requests = firstAt = lastAt = 0;
        latencies = [];
        sample = null;
        recordLatency = message.recordLatency;
        break;
      case 'stats':
        reply = { events, reads, requests, firstAt, lastAt, latency: summarize(latencies), sample };
        break;
      case 'answer':
        status = message.status;
        break;
    }
    process.send!({ id: message.id, reply } satisfies SinkMessage);
  });
  process.on('disconnect', () => process.exit(0));
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.send!({ ready: typeof address === 'object' && address ? address.port : 0 } satisfies SinkMessage);
  });
}

export interface Sink {
  url: string;
  child: ChildProcess;
  reset(recordLatency?: boolean): Promise<void>;
  stats(): Promise<SinkStats>;
  /** The status every request is answered with from now on (200 at start). */
  answer(status: number): Promise<void>;
  stop(): void;
}

export async function startSink(): Promise<Sink> {
  const child = fork(SELF, ['--sink-child'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map<number, (reply: SinkStats | null) => void>();
  let nextId = 1;
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`sink exited with ${code}`)));
    child.on('message', (message: SinkMessage) => {
      if ('ready' in message) resolve(message.ready);
      else pending.get(message.id)?.(message.reply);
    });
  });
  const call = (command: SinkCommand) =>
    new Promise<SinkStats | null>((resolve) => {
      const id = nextId++;
      pending.set(id, (reply) => {
        pending.delete(id);
        resolve(reply);
      });
      child.send({ id, ...command });
    });
  return {
    url: `http://127.0.0.1:${port}/`,
    child,
    reset: async (recordLatency = false) => void (await call({ cmd: 'reset', recordLatency })),
    stats: async () => (await call({ cmd: 'stats' }))!,
    answer: async (status) => void (await call({ cmd: 'answer', status })),
    stop: () => void child.kill('SIGTERM'),
  };
}

if (process.argv[1] === SELF && process.argv[2] === '--sink-child') runSink();
