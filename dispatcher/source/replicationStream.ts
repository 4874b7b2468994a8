import type pg from 'pg';
import { LogicalReplicationService } from 'pg-logical-replication';
import type { AbstractPlugin } from 'pg-logical-replication/dist/output-plugins/abstract.plugin.js';
import type { Logger } from '../../common/logger.js';
import { formatLsn, type Lsn, parseLsn } from '../lsn.js';

/** An item of the stream, handed to the consumer strictly in server order. */
export type StreamItem<M> = { kind: 'message'; lsn: Lsn; message: M } | { kind: 'keepalive'; walEnd: Lsn };

/** What the stream asks of its consumer. */
export interface StreamConsumer<M> {
  /** Handles one item; the next item is not handed over until this resolves (that is the backpressure). */
  handle(item: StreamItem<M>): void | Promise<void>;
  /** Highest LSN safe to confirm to the server. */
  confirmable(): Lsn;
  /** Where to resume after a reconnect: the end of the last transaction fully received. */
  resumeFrom(): Lsn;
  /** Called before every (re)connection: the consumer forgets per-connection state (relations). */
  connecting(): void;
}

export interface ReplicationStreamOptions<M> {
  /** How to connect (see connectionConfig). */
  connection: pg.ClientConfig;
  slotName: string;
  /** A fresh pgoutput plugin per connection: relation caches do not survive a reconnect. */
  createPlugin(): AbstractPlugin & { parse(buffer: Buffer): M };
  logger: Logger;
  /** How often the confirmed LSN is reported, moved or not (it is also the client's sign of life). */
  statusIntervalMs?: number;
  /** Items buffered before the socket is paused. */
  highWater?: number;
  onConnectionChange?(connected: boolean): void;
  onStatus?(status: { confirmed: Lsn; walEnd: Lsn }): void;
}

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30_000;

/**
 * Reads a logical replication slot and confirms only what the consumer says is safe. The library's
 * automatic acknowledgement (on receipt, and on a timer) is switched off: it would confirm events
 * that were never delivered.
 */
export class ReplicationStream<M> {
  private service: LogicalReplicationService | undefined;
  private readonly queue: StreamItem<M>[] = [];
  /**
   * Where the stream is in its life: reading; reading stopped before a drain (nothing more reaches the
   * consumer); stopped. One value, so no combination of flags can contradict another.
   */
  private lifecycle: 'reading' | 'reading-stopped' | 'stopped' = 'reading';
  /** A method, not a field read: the checks sit across awaits, where stop() may have run meanwhile. */
  private isStopped(): boolean {
    return this.lifecycle === 'stopped';
  }
  /** Flow control, apart from the lifecycle: the socket is paused while the consumer is behind. */
  private socketPaused = false;
  /** Re-entrancy guard: the loop handing items to the consumer is running. */
  private handing = false;
  private walEnd: Lsn = 0n;
  private statusTimer: NodeJS.Timeout | undefined;
  private drained: (() => void)[] = [];
  private failure: ((error: Error) => void) | undefined;
  /** Ends the wait between reconnects early (on stop). */
  private wakeUp: (() => void) | undefined;

  constructor(
    private readonly options: ReplicationStreamOptions<M>,
    private readonly consumer: StreamConsumer<M>,
  ) {}

  /** Streams until stop(), reconnecting with backoff whenever the connection fails. */
  async run(): Promise<void> {
    let delay = RECONNECT_MIN_MS;
    // Sent even when nothing moved: the server drops a client that is silent for wal_sender_timeout,
    // and while reading is paused (window full) the client never sees the server's keepalive requests.
    this.statusTimer = setInterval(() => this.sendStatus(), this.options.statusIntervalMs ?? 1000);
    try {
      while (!this.isStopped()) {
        const startedAt = Date.now();
        try {
          await this.streamOnce();
        } catch (error) {
          if (this.isStopped()) break;
          this.options.logger.warn({ err: describeError(error), retryInMs: delay }, 'replication stream failed; reconnecting');
        }
        this.options.onConnectionChange?.(false);
        if (this.isStopped()) break;
        if (Date.now() - startedAt > 10_000) delay = RECONNECT_MIN_MS;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => this.wakeUp?.(), delay);
          this.wakeUp = () => {
            clearTimeout(timer);
            this.wakeUp = undefined;
            resolve();
          };
        });
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      }
    } finally {
      clearInterval(this.statusTimer);
    }
  }

  /** Stops reading; what was handed to the consumer stays its business. Sends a last status first. */
  async stop(): Promise<void> {
    if (this.isStopped()) return;
    this.lifecycle = 'stopped';
    this.sendStatus();
    // Not waiting for a reconnect delay, nor for a consumer that waits for room no one will make.
    this.wakeUp?.();
    for (const resolve of this.drained.splice(0)) resolve();
    await this.service?.stop().catch(() => undefined);
  }

  /** Stops reading from the socket (before a drain); nothing more reaches the consumer. */
  pauseReading(): void {
    if (this.lifecycle === 'reading') this.lifecycle = 'reading-stopped';
    this.setPaused(true);
  }

  /** Reports the current confirmable LSN to the server now (used after a drain). */
  flushStatus(): void {
    this.sendStatus();
  }

  private async streamOnce(): Promise<void> {
    await this.waitUntilDrained();
    if (this.isStopped()) return;
    this.consumer.connecting();
    const service = new LogicalReplicationService({ ...this.options.connection, application_name: 'eventide-dispatcher' }, { acknowledge: { auto: false, timeoutSeconds: 0 } });
    this.service = service;
    const failed = new Promise<never>((_, reject) => {
      this.failure = reject;
      service.on('error', (error: Error) => reject(error));
    });
    service.on('start', () => {
      this.options.logger.info({ slot: this.options.slotName }, 'replication stream started');
      this.options.onConnectionChange?.(true);
    });
    service.on('data', (lsn: string, message: M) => this.push({ kind: 'message', lsn: parseLsn(lsn), message }));
    service.on('heartbeat', (lsn: string, _time: number, shouldRespond: boolean) => {
      this.walEnd = parseLsn(lsn);
      this.push({ kind: 'keepalive', walEnd: this.walEnd });
      // The server asks for an answer to know we are alive; answer with what is safe, right now.
      if (shouldRespond) this.sendStatus();
    });
    const start = this.consumer.resumeFrom();
    const plugin = this.options.createPlugin();
    try {
      await Promise.race([service.subscribe(plugin, this.options.slotName, formatLsn(start)), failed]);
      if (!this.isStopped()) throw new Error('replication stream ended by the server');
    } finally {
      this.failure = undefined;
      this.service = undefined;
      await service.stop().catch(() => undefined);
      service.removeAllListeners();
    }
  }

  private push(item: StreamItem<M>): void {
    this.queue.push(item);
    if (!this.socketPaused && this.queue.length >= (this.options.highWater ?? 256)) this.setPaused(true);
    if (!this.handing) void this.drain();
  }

  private async drain(): Promise<void> {
    this.handing = true;
    try {
      while (this.queue.length > 0 && this.lifecycle === 'reading') {
        const item = this.queue.shift()!;
        // Awaited only when the consumer has to wait: awaiting nothing still costs a microtask hop per message.
        const handling = this.consumer.handle(item);
        if (handling) await handling;
        if (this.socketPaused && this.lifecycle === 'reading' && this.queue.length < (this.options.highWater ?? 256) / 4) this.setPaused(false);
      }
    } catch (error) {
      // A consumer failure is a broken invariant: drop the connection so the stream restarts from a safe point.
      this.queue.length = 0;
      this.failure?.(error as Error);
      this.options.logger.error({ err: describeError(error) }, 'failed to handle replication message');
    } finally {
      this.handing = false;
      if (this.socketPaused && this.lifecycle === 'reading') this.setPaused(false);
      for (const resolve of this.drained.splice(0)) resolve();
    }
  }

  private waitUntilDrained(): Promise<void> {
    if (!this.handing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  private setPaused(paused: boolean): void {
    this.socketPaused = paused;
    // The library exposes no pause; its connection's socket is where TCP backpressure starts.
    const connection = (this.service as unknown as { _connection?: { stream?: { pause(): void; resume(): void } } } | undefined)?._connection;
    if (paused) connection?.stream?.pause();
    else connection?.stream?.resume();
  }

  private sendStatus(): void {
    const confirmed = this.consumer.confirmable();
    // biome-ignore lint/complexity/useMathMinMax: LSNs are bigints, which Math.max does not take
    this.options.onStatus?.({ confirmed, walEnd: this.walEnd > confirmed ? this.walEnd : confirmed });
    if (!this.service || confirmed === 0n) return;
    // The library reports lsn + 1; confirming one byte past a commit could skip a transaction whose
    // commit record starts exactly there, so hand it lsn - 1 and the server gets the exact commit end.
    void this.service.acknowledge(formatLsn(confirmed - 1n)).catch((error: unknown) => {
      this.options.logger.warn({ err: describeError(error) }, 'failed to send standby status');
    });
  }
}

/** An error as a log-safe object (no connection strings: pg errors do not carry them). */
export function describeError(error: unknown): { message: string; code?: string } {
  if (error instanceof Error) return { message: error.message, ...((error as { code?: string }).code ? { code: (error as { code?: string }).code } : {}) };
  return { message: String(error) };
}
