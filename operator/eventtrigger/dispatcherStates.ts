import { parseDispatcherState } from '../../common/dispatcherState.js';
import type { Logger } from '../../common/logger.js';
import type { DispatcherReading } from './serving.js';

/** A dispatcher to read: its namespace and name, and where its /state answers. */
export interface DispatcherEndpoint {
  namespace: string;
  name: string;
  url: string;
}

export interface DispatcherStatesOptions {
  /** The dispatchers that exist now (from the Deployment cache). */
  endpoints(): DispatcherEndpoint[];
  /** Called with `namespace/name` of each trigger whose reported state changed, and on a lag threshold crossing every trigger of the dispatcher. */
  changed(triggerKeys: string[]): void;
  /** Called with `namespace/name` of each Backfill whose reported entry changed, appeared or went, or whose dispatcher turned unreachable. */
  backfillsChanged?(backfillKeys: string[]): void;
  /** Called after every round of reads (the autoscaler decides on fresh numbers). */
  polled?(): void;
  intervalMs: number;
  timeoutMs: number;
  lagThresholdBytes: number;
  logger: Logger;
}

/**
 * Reads every dispatcher's /state on an interval (pull, as Knative's autoscaler scrapes its pods: the
 * operator needs no endpoint the dispatchers must know, and a dispatcher that cannot be reached is
 * itself a fact to report). Keeps the last reading per dispatcher and wakes the triggers whose part of
 * it changed, so their conditions follow within one interval.
 */
export class DispatcherStates {
  private readonly readings = new Map<string, DispatcherReading>();
  /** What each trigger's conditions depend on, to wake only triggers whose part changed. */
  private readonly fingerprints = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();
  private abort = new AbortController();

  constructor(private readonly options: DispatcherStatesOptions) {}

  get(namespace: string, name: string): DispatcherReading | undefined {
    return this.readings.get(`${namespace}/${name}`);
  }

  start(): void {
    if (this.timer) return;
    this.abort = new AbortController();
    const poll = () => {
      this.polling = this.pollOnce().catch((error: unknown) => this.options.logger.warn({ err: error }, 'reading dispatcher states failed'));
    };
    poll();
    this.timer = setInterval(() => void this.polling.then(poll), this.options.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.polling;
  }

  /** Reads every dispatcher once (concurrently) and wakes what changed. */
  async pollOnce(): Promise<void> {
    const endpoints = this.options.endpoints();
    const live = new Set(endpoints.map((e) => `${e.namespace}/${e.name}`));
    for (const key of this.readings.keys()) if (!live.has(key)) this.readings.delete(key);
    const changed: string[] = [];
    const backfills: string[] = [];
    await Promise.all(
      endpoints.map(async (endpoint) => {
        const reading = await this.read(endpoint);
        this.readings.set(`${endpoint.namespace}/${endpoint.name}`, reading);
        changed.push(...this.noteChanges(endpoint, reading));
        backfills.push(...this.noteBackfillChanges(endpoint, reading));
      }),
    );
    if (changed.length > 0) this.options.changed(changed);
    if (backfills.length > 0) this.options.backfillsChanged?.(backfills);
    this.options.polled?.();
  }

  private read(endpoint: DispatcherEndpoint): Promise<DispatcherReading> {
    return readDispatcherState(endpoint.url, this.options.timeoutMs, this.abort.signal);
  }

  /** The triggers of this dispatcher whose reported state (or lag side of the threshold) changed. */
  private noteChanges(endpoint: DispatcherEndpoint, reading: DispatcherReading): string[] {
    const changed: string[] = [];
    const prefix = `${endpoint.namespace}/${endpoint.name}`;
    const note = (id: string, fingerprint: string, keys: () => string[]) => {
      if (this.fingerprints.get(id) === fingerprint) return;
      this.fingerprints.set(id, fingerprint);
      changed.push(...keys());
    };
    if ('error' in reading) {
      note(`${prefix}#reachable`, 'no', () => this.knownTriggers(prefix));
      return changed;
    }
    const { report } = reading;
    const keys = Object.keys(report.triggers);
    const lagging = report.source.lagBytes > this.options.lagThresholdBytes;
    note(`${prefix}#reachable`, `yes/${lagging}`, () => keys);
    for (const [key, t] of Object.entries(report.triggers)) {
      note(`${prefix}@${key}`, JSON.stringify([t.state, t.generation, t.reason, t.message]), () => [key]);
    }
    // A Function past its activation timeout makes the triggers that target it not serving (few, rare: wake them all).
    for (const [fn, demand] of Object.entries(report.functions)) {
      note(`${prefix}#function@${fn}`, String(demand.activationTimedOut === true), () => keys);
    }
    return changed;
  }

  /**
   * The Backfills of this dispatcher whose entry changed (its counts move while it runs), appeared or
   * went; all it reported before when it cannot be read (their status says so).
   */
  private noteBackfillChanges(endpoint: DispatcherEndpoint, reading: DispatcherReading): string[] {
    const prefix = `${endpoint.namespace}/${endpoint.name}~`;
    const now = new Map<string, string>();
    if (!('error' in reading)) for (const [key, b] of Object.entries(reading.report.backfills ?? {})) now.set(key, JSON.stringify(b));
    const changed: string[] = [];
    for (const id of [...this.fingerprints.keys()]) {
      if (!id.startsWith(prefix)) continue;
      const key = id.slice(prefix.length);
      if (now.has(key)) continue;
      this.fingerprints.delete(id);
      changed.push(key);
    }
    for (const [key, fingerprint] of now) {
      if (this.fingerprints.get(prefix + key) === fingerprint) continue;
      this.fingerprints.set(prefix + key, fingerprint);
      changed.push(key);
    }
    return changed;
  }

  private knownTriggers(prefix: string): string[] {
    return [...this.fingerprints.keys()].filter((id) => id.startsWith(`${prefix}@`)).map((id) => id.slice(prefix.length + 1));
  }
}

/** Reads one dispatcher's GET /state; never throws: what went wrong is the reading (the demo's local scaler reads it so too). */
export async function readDispatcherState(url: string, timeoutMs: number, signal?: AbortSignal): Promise<DispatcherReading> {
  try {
    const response = await fetch(url, { signal: signal ? AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]) : AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return { error: `${url} answered HTTP ${response.status}`, at: Date.now() };
    return { report: parseDispatcherState(await response.json()), at: Date.now() };
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const why = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (cause?.code ?? cause?.message ?? (error as Error).message);
    return { error: `${url}: ${why}`, at: Date.now() };
  }
}
