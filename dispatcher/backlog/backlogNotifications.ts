import pg from 'pg';
import type { Logger } from '../../common/logger.js';
import { describeError } from '../source/replicationStream.js';

/** The channel on which writers other than the dispatcher (the CLI) announce events they added to a trigger's backlog. */
export const BACKLOG_CHANNEL = 'eventide_backlog';

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30_000;

/**
 * Listens for backlog additions made by others (`eventide invoke`, `eventide events redeliver`), so a
 * trigger on the fast path notices them at once. Notifications sent while the listener was
 * disconnected are lost, so every (re)connection also calls `resync`, which reads the backlog itself.
 */
export class BacklogNotifications {
  private client: pg.Client | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private delay = RECONNECT_MIN_MS;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly connection: pg.ClientConfig,
    private readonly logger: Logger,
    private readonly onAdded: (trigger: string) => void,
    private readonly resync: () => Promise<void>,
    /** Other channels listened to on the same connection (the CLI's backfill requests), with what to do on a notification. */
    private readonly others: ReadonlyMap<string, (payload: string) => void> = new Map(),
  ) {}

  start(): void {
    this.running = this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ ...this.connection, application_name: 'eventide-dispatcher-backlog' });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    client.on('notification', (message) => {
      if (message.channel === BACKLOG_CHANNEL && message.payload) this.onAdded(message.payload);
      else this.others.get(message.channel)?.(message.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${BACKLOG_CHANNEL}`);
      for (const channel of this.others.keys()) await client.query(`LISTEN ${channel}`);
      if (this.stopped) {
        await client.end().catch(() => undefined);
        return;
      }
      this.client = client;
      this.delay = RECONNECT_MIN_MS;
      await this.resync();
    } catch (error) {
      await client.end().catch(() => undefined);
      this.lost(client, error);
    }
  }

  private lost(client: pg.Client, error: unknown): void {
    if (this.stopped || (this.client !== undefined && this.client !== client) || this.timer) return;
    this.client = undefined;
    this.logger.warn({ err: describeError(error), retryInMs: this.delay }, 'backlog listener disconnected; reconnecting');
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.connect();
    }, this.delay);
    this.delay = Math.min(RECONNECT_MAX_MS, this.delay * 2);
  }
}
