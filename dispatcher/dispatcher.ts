import type { Server } from 'node:http';
import pg from 'pg';
import { loadManifests, type ManifestSet } from '../api/v1alpha1/index.js';
import { createOpsApp, listen } from '../common/httpServer.js';
import type { Logger } from '../common/logger.js';
import { redactUrl } from '../common/logger.js';
import { DeadLetterStore } from './deadletters/store.js';
import { RowDecoder } from './decode/rowDecoder.js';
import { createTextPgoutputPlugin, type PgoutputMessage } from './decode/textPgoutputPlugin.js';
import { TypeCatalog } from './decode/typeCatalog.js';
import { eventId } from './delivery/eventIds.js';
import { HttpSender } from './delivery/httpSender.js';
import { parseLsn, type Lsn } from './lsn.js';
import { createDispatcherMetrics, type DispatcherMetrics } from './metrics.js';
import { ChangeIntake } from './pipeline/changeIntake.js';
import { attemptDelivery } from './pipeline/deliveryAttempt.js';
import { InflightWindow } from './pipeline/inflightWindow.js';
import type { PendingEvent } from './pipeline/pendingEvent.js';
import { TriggerLane } from './pipeline/triggerLane.js';
import { routedTables, type Route } from './routing/triggerMatcher.js';
import type { DispatchSettings } from './settings.js';
import { ReplicationStream, describeError } from './source/replicationStream.js';
import { SourceProblemError, checkRoutesAgainstTables, ensurePublication, ensureSlot, inspectTables } from './source/sourceSetup.js';
import { parseDuration } from '../api/v1alpha1/index.js';
import { resolveConfig, sourceNames, type ServedConfig } from './servedConfig.js';

/**
 * One dispatcher: owns the source's slot and publication, reads the stream, and delivers every
 * matching change. Start with Dispatcher.start(); stop() drains and confirms what finished.
 */
export class Dispatcher {
  readonly metrics: DispatcherMetrics;
  private config!: ServedConfig;
  private readonly lanes = new Map<string, TriggerLane<PendingEvent>>();
  private readonly sender = new HttpSender();
  /** Aborted at stop(), after the drain: dead-letter sink notifications still running give up. */
  private readonly notifications = new AbortController();
  private readonly window: InflightWindow;
  private stream!: ReplicationStream<PgoutputMessage>;
  private intake!: ChangeIntake<PgoutputMessage>;
  private server: Server | undefined;
  private connected = false;
  private streamDone: Promise<void> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private names!: { slot: string; publication: string };
  /** Highest server WAL end seen: from keepalives, and asked for directly (a paused reader reads no keepalives). */
  private serverWalEnd: Lsn = 0n;
  private walEndPolledAt = 0;

  private constructor(
    private readonly settings: DispatchSettings,
    private readonly logger: Logger,
    private readonly pool: pg.Pool,
    private readonly deadLetters: DeadLetterStore,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.metrics = createDispatcherMetrics();
    this.window = new InflightWindow(settings.maxInflightEvents, settings.maxInflightBytes);
  }

  /** Checks the configuration and the database, sets up the slot, publication and dead-letter table, and starts streaming. */
  static async start(settings: DispatchSettings, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<Dispatcher> {
    const manifests = loadManifests(settings.manifestPaths);
    if (manifests.triggers.length === 0) throw new SourceProblemError([`no EventTrigger found in ${settings.manifestPaths.join(', ')}`]);
    const pool = new pg.Pool({ connectionString: settings.databaseUrl, max: 4, application_name: 'eventide-dispatcher', connectionTimeoutMillis: 10_000 });
    pool.on('error', (error) => logger.warn({ err: describeError(error) }, 'idle database connection failed'));
    const dlqPool = settings.deadLetterDatabaseUrl ? new pg.Pool({ connectionString: settings.deadLetterDatabaseUrl, max: 4 }) : pool;
    const dispatcher = new Dispatcher(settings, logger, pool, new DeadLetterStore(dlqPool), env);
    try {
      await dispatcher.setUp(manifests);
    } catch (error) {
      await pool.end().catch(() => undefined);
      if (dlqPool !== pool) await dlqPool.end().catch(() => undefined);
      await dispatcher.sender.close();
      if ((error as { code?: string }).code === 'ECONNREFUSED' || (error as Error).message?.includes('ECONNREFUSED')) {
        throw new SourceProblemError([`cannot connect to the database at ${redactUrl(settings.databaseUrl)}: connection refused`]);
      }
      throw error;
    }
    return dispatcher;
  }

  private async setUp(manifests: ManifestSet): Promise<void> {
    const config = resolveConfig(manifests, this.settings, this.env);
    this.names = sourceNames(manifests.triggers, this.settings);
    const client = await this.pool.connect().catch((error: Error) => {
      throw new SourceProblemError([`cannot connect to the database at ${redactUrl(this.settings.databaseUrl)}: ${error.message}`]);
    });
    let startLsn: Lsn = 0n;
    try {
      await this.checkTables(client, config.routes);
      await ensurePublication(client, this.names.publication, routedTables(config.routes));
      const confirmed = await ensureSlot(client, this.names.slot);
      if (confirmed) startLsn = parseLsn(confirmed);
    } finally {
      client.release();
    }
    await this.deadLetters.ensureSchema();
    this.applyConfig(config);

    const catalog = new TypeCatalog((sql, params) => this.pool.query(sql, params));
    const decoder = new RowDecoder(catalog, (sql, params) => this.pool.query(sql, params));
    this.intake = new ChangeIntake<PgoutputMessage>({
      decoder,
      routes: () => this.config.routes,
      window: this.window,
      eventId,
      startLsn,
      logger: this.logger,
      dispatch: (event) => this.lanes.get(event.triggerKey)!.enqueue(event),
      onChange: (change) => this.metrics.eventsReceived.inc({ table: `${change.schema}.${change.table}`, op: change.op }),
      onMatch: (event) => this.metrics.eventsMatched.inc({ trigger: event.triggerKey }),
    });
    const intake = this.intake;
    this.stream = new ReplicationStream<PgoutputMessage>(
      {
        connectionString: this.settings.databaseUrl,
        slotName: this.names.slot,
        createPlugin: () => createTextPgoutputPlugin([this.names.publication]),
        logger: this.logger,
        onConnectionChange: (connected) => {
          this.connected = connected;
          this.metrics.connected.set(connected ? 1 : 0);
        },
        onStatus: ({ confirmed, walEnd }) => {
          if (walEnd > this.serverWalEnd) this.serverWalEnd = walEnd;
          this.metrics.confirmedLsn.set(Number(confirmed));
          this.metrics.replicationLagBytes.set(Number(this.serverWalEnd > confirmed ? this.serverWalEnd - confirmed : 0n));
          this.pollServerWalEnd();
        },
      },
      {
        handle: (item) => intake.handle(item),
        confirmable: () => intake.confirmable(),
        resumeFrom: () => intake.resumeFrom(),
        connecting: () => {
          decoder.reset();
          intake.connecting();
        },
      },
    );
    this.streamDone = this.stream.run();
    this.timers.push(
      setInterval(() => {
        this.metrics.inflightEvents.set(this.window.heldEvents);
        this.metrics.inflightBytes.set(this.window.heldBytes);
      }, 1000),
    );
    if (this.settings.watchConfig) this.timers.push(setInterval(() => void this.reloadIfChanged(), 2000));
    const app = createOpsApp(this.metrics.registry, {
      live: () => true,
      ready: () => (this.connected ? { ok: true } : { ok: false, reason: 'replication stream not connected' }),
    });
    this.server = await listen(app, this.settings.port, this.settings.host);
    this.logger.info(
      { slot: this.names.slot, publication: this.names.publication, triggers: [...this.config.deliveries.keys()], startLsn: startLsn.toString(16), port: this.port },
      'dispatcher started',
    );
  }

  /** Asks the server where its WAL ends, every few seconds, so the lag metric shows a backlog the stream is not reading. */
  private pollServerWalEnd(): void {
    if (Date.now() - this.walEndPolledAt < 5000) return;
    this.walEndPolledAt = Date.now();
    this.pool
      .query<{ lsn: string | null }>('SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn')
      .then(({ rows }) => {
        const text = rows[0]?.lsn;
        if (text) {
          const lsn = parseLsn(text);
          if (lsn > this.serverWalEnd) this.serverWalEnd = lsn;
        }
      })
      .catch((error: unknown) => this.logger.debug({ err: describeError(error) }, 'could not read the server WAL position'));
  }

  /** The port the ops endpoints listen on. */
  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : this.settings.port;
  }

  /** The slot and publication this dispatcher owns. */
  get sourceNames(): { slot: string; publication: string } {
    return this.names;
  }

  private async checkTables(client: pg.PoolClient, routes: Route[]): Promise<void> {
    const facts = await inspectTables(client, routedTables(routes));
    const { problems, warnings } = checkRoutesAgainstTables(routes, facts);
    for (const warning of warnings) this.logger.warn(warning);
    if (problems.length) throw new SourceProblemError(problems);
  }

  private applyConfig(config: ServedConfig): void {
    this.config = config;
    for (const [key, delivery] of config.deliveries) {
      const spec = delivery.trigger.spec;
      const laneSettings = {
        concurrency: spec.concurrency,
        ordering: spec.ordering,
        batchMaxSize: spec.batch.maxSize,
        batchMaxWaitMs: parseDuration(spec.batch.maxWait),
      };
      const existing = this.lanes.get(key);
      if (existing) {
        existing.reconfigure(laneSettings);
        continue;
      }
      this.lanes.set(
        key,
        new TriggerLane<PendingEvent>({
          ...laneSettings,
          // The current delivery settings are looked up per attempt, so a reload changes URLs and retries at once.
          attempt: (entries, signal) =>
            attemptDelivery(this.config.deliveries.get(key) ?? delivery, entries, signal, {
              sender: this.sender,
              deadLetters: this.deadLetters,
              metrics: this.metrics,
              logger: this.logger,
              notifySignal: this.notifications.signal,
            }),
          onSettled: (event) => this.intake.settle(event),
          onAttemptError: (error) => this.logger.error({ trigger: key, err: describeError(error) }, 'delivery attempt failed to complete; retrying'),
        }),
      );
    }
  }

  /** Re-reads the manifests; a broken new config is logged and the current one kept. */
  private async reloadIfChanged(): Promise<void> {
    let next: ServedConfig;
    try {
      const manifests = loadManifests(this.settings.manifestPaths);
      next = resolveConfig(manifests, this.settings, this.env);
      if (next.fingerprint === this.config.fingerprint) return;
      const names = sourceNames(manifests.triggers, this.settings);
      if (names.slot !== this.names.slot || names.publication !== this.names.publication) {
        throw new SourceProblemError([`changing the slot or publication needs a restart (serving ${this.names.slot}/${this.names.publication})`]);
      }
      const client = await this.pool.connect();
      try {
        await this.checkTables(client, next.routes);
        await ensurePublication(client, this.names.publication, routedTables(next.routes));
      } finally {
        client.release();
      }
    } catch (error) {
      this.logger.error({ err: describeError(error) }, 'new configuration rejected; still serving the previous one');
      return;
    }
    this.applyConfig(next);
    this.logger.info({ triggers: [...next.deliveries.keys()] }, 'configuration reloaded');
  }

  /**
   * Stops reading, lets deliveries in flight finish until the drain deadline, confirms exactly what
   * finished, and closes everything.
   */
  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.stream.pauseReading();
    await Promise.all([...this.lanes.values()].map((lane) => lane.stop(this.settings.drainTimeoutMs)));
    await this.stream.stop();
    await this.streamDone;
    this.notifications.abort(new Error('dispatcher shutting down'));
    await this.sender.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.pool.end().catch(() => undefined);
    this.logger.info({ confirmed: this.intake.confirmable().toString(16) }, 'dispatcher stopped');
  }
}
