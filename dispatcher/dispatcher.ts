import type { Server } from 'node:http';
import pg from 'pg';
import { loadManifests, parseDuration } from '../api/v1alpha1/index.js';
import { createOpsApp, listen } from '../common/httpServer.js';
import type { Logger } from '../common/logger.js';
import { redactUrl } from '../common/logger.js';
import { BacklogNotifications } from './backlog/backlogNotifications.js';
import { BacklogWriter } from './backlog/backlogWriter.js';
import { BACKLOG_CONNECTION_OPTIONS, BacklogStore } from './backlog/store.js';
import { DeadLetterStore } from './deadletters/store.js';
import { RowDecoder } from './decode/rowDecoder.js';
import { createTextPgoutputPlugin, type PgoutputMessage } from './decode/textPgoutputPlugin.js';
import { TypeCatalog } from './decode/typeCatalog.js';
import { FailureSummary, type SummaryLine } from './delivery/failureSummary.js';
import { eventId } from './delivery/eventIds.js';
import { HttpSender } from './delivery/httpSender.js';
import { parseLsn, type Lsn } from './lsn.js';
import { createDispatcherMetrics, type DispatcherMetrics } from './metrics.js';
import { ChangeIntake } from './pipeline/changeIntake.js';
import { attemptDelivery, type TriggerDelivery } from './pipeline/deliveryAttempt.js';
import { TriggerFlow, type FlowObserver, type LaneSettings } from './pipeline/triggerFlow.js';
import { WindowShares } from './pipeline/windowShares.js';
import { routedTables, type Route } from './routing/triggerMatcher.js';
import { resolveConfig, sourceNames, type ServedConfig } from './servedConfig.js';
import type { DispatchSettings } from './settings.js';
import { ReplicationStream, describeError } from './source/replicationStream.js';
import { SourceProblemError, checkRoutesAgainstTables, ensurePublication, ensureSlot, inspectTables } from './source/sourceSetup.js';

/** Where a dispatcher is in its life; one value, so no combination of flags can contradict another. */
export type DispatcherState = 'streaming' | 'stopping' | 'stopped';

/** Everything a running dispatcher opened; made in start(), closed in stop(), each with an error listener. */
interface Resources {
  pool: pg.Pool;
  /** The backlog's own connections (planner settings of their own, see BACKLOG_CONNECTION_OPTIONS). */
  backlogPool: pg.Pool;
  /** The same pool as `pool` unless dead letters live in another database. */
  deadLetterPool: pg.Pool;
  deadLetters: DeadLetterStore;
  backlog: BacklogStore;
  writer: BacklogWriter;
  sender: HttpSender;
  notifications: BacklogNotifications;
  /** Aborted at stop(), after the drain: dead-letter sink notifications still running give up. */
  sinkNotifications: AbortController;
}

const FAILURE_SUMMARY_INTERVAL_MS = 10_000;
const BACKLOG_GAUGE_INTERVAL_MS = 5_000;

/**
 * One dispatcher: owns the source's slot and publication, reads the stream, and delivers every
 * matching change, each trigger on its own path (lane, and backlog when it cannot deliver now).
 * Start with Dispatcher.start(); stop() drains and confirms what finished.
 */
export class Dispatcher {
  readonly metrics: DispatcherMetrics;
  private stateValue: DispatcherState = 'streaming';
  private readonly flows = new Map<string, TriggerFlow>();
  private readonly shares: WindowShares;
  private readonly failures: FailureSummary;
  private readonly intake: ChangeIntake<PgoutputMessage>;
  private readonly stream: ReplicationStream<PgoutputMessage>;
  private streamDone: Promise<void> = Promise.resolve();
  private readonly timers: NodeJS.Timeout[] = [];
  private server: Server | undefined;
  private connected = false;
  private reloading: Promise<void> = Promise.resolve();
  /** Whether the last look at the backlog table found anything (until then: assume so). */
  private backlogSeen = true;
  /** Highest server WAL end seen: from keepalives, and asked for directly (a paused reader reads no keepalives). */
  private serverWalEnd: Lsn = 0n;
  private walEndPolledAt = 0;

  private constructor(
    private readonly settings: DispatchSettings,
    private readonly logger: Logger,
    private readonly env: NodeJS.ProcessEnv,
    private readonly resources: Resources,
    private config: ServedConfig,
    readonly sourceNames: { slot: string; publication: string },
    startLsn: Lsn,
  ) {
    this.metrics = createDispatcherMetrics();
    this.shares = new WindowShares(settings.maxInflightEvents, settings.maxInflightBytes);
    this.failures = new FailureSummary({ intervalMs: FAILURE_SUMMARY_INTERVAL_MS, emit: (line) => this.logFailureSummary(line) });
    const catalog = new TypeCatalog((sql, params) => resources.pool.query(sql, params));
    const decoder = new RowDecoder(catalog, (sql, params) => resources.pool.query(sql, params));
    this.intake = new ChangeIntake<PgoutputMessage>({
      decoder,
      routes: () => this.config.routes,
      eventId,
      startLsn,
      logger,
      dispatch: (event) => this.flows.get(event.triggerKey)!.accept(event),
      onChange: (change) => this.metrics.eventsReceived.inc({ table: `${change.schema}.${change.table}`, op: change.op }),
      onMatch: (event) => this.metrics.eventsMatched.inc({ trigger: event.triggerKey }),
    });
    const intake = this.intake;
    this.stream = new ReplicationStream<PgoutputMessage>(
      {
        connectionString: settings.databaseUrl,
        slotName: sourceNames.slot,
        createPlugin: () => createTextPgoutputPlugin([sourceNames.publication]),
        logger,
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
  }

  /** Checks the configuration and the database, sets up the slot, publication, dead-letter and backlog tables, and starts streaming. */
  static async start(settings: DispatchSettings, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<Dispatcher> {
    const manifests = loadManifests(settings.manifestPaths);
    if (manifests.triggers.length === 0) throw new SourceProblemError([`no EventTrigger found in ${settings.manifestPaths.join(', ')}`]);
    const config = resolveConfig(manifests, settings, env);
    const names = sourceNames(manifests.triggers, settings);
    const opened: { close(): Promise<unknown> }[] = [];
    try {
      const pool = new pg.Pool({ connectionString: settings.databaseUrl, max: 4, application_name: 'eventide-dispatcher', connectionTimeoutMillis: 10_000 });
      pool.on('error', (error) => logger.warn({ err: describeError(error) }, 'idle database connection failed'));
      opened.push({ close: () => pool.end() });
      let deadLetterPool = pool;
      if (settings.deadLetterDatabaseUrl) {
        const dlq = new pg.Pool({ connectionString: settings.deadLetterDatabaseUrl, max: 4, application_name: 'eventide-dispatcher', connectionTimeoutMillis: 10_000 });
        dlq.on('error', (error) => logger.warn({ err: describeError(error) }, 'idle dead-letter database connection failed'));
        opened.push({ close: () => dlq.end() });
        deadLetterPool = dlq;
      }
      const backlogPool = new pg.Pool({
        connectionString: settings.databaseUrl,
        max: 2,
        application_name: 'eventide-dispatcher-backlog',
        connectionTimeoutMillis: 10_000,
        options: BACKLOG_CONNECTION_OPTIONS,
      });
      backlogPool.on('error', (error) => logger.warn({ err: describeError(error) }, 'idle backlog connection failed'));
      opened.push({ close: () => backlogPool.end() });
      const sender = new HttpSender();
      opened.push({ close: () => sender.close() });
      const startLsn = await Dispatcher.setUpSource(pool, settings, names, config.routes, logger);
      const deadLetters = new DeadLetterStore(deadLetterPool);
      await deadLetters.ensureSchema();
      const backlog = new BacklogStore(backlogPool);
      await backlog.ensureSchema();
      const waiting = new Map((await backlog.summary()).map((s) => [s.trigger, s.events]));
      const writer = new BacklogWriter(backlog, logger);
      let dispatcher: Dispatcher | undefined;
      const notifications = new BacklogNotifications(
        settings.databaseUrl,
        logger,
        (trigger) => dispatcher?.backlogAdded(trigger),
        async () => {
          for (const s of await backlog.summary()) if (s.events > 0) dispatcher?.backlogAdded(s.trigger);
        },
      );
      const resources: Resources = { pool, backlogPool, deadLetterPool, deadLetters, backlog, writer, sender, notifications, sinkNotifications: new AbortController() };
      dispatcher = new Dispatcher(settings, logger, env, resources, config, names, startLsn);
      await dispatcher.run(waiting);
      return dispatcher;
    } catch (error) {
      for (const resource of opened.reverse()) await resource.close().catch(() => undefined);
      const code = (error as { code?: string }).code;
      if (code === 'ECONNREFUSED' || (error as Error).message?.includes('ECONNREFUSED')) {
        throw new SourceProblemError([`cannot connect to the database at ${redactUrl(settings.databaseUrl)}: connection refused`]);
      }
      throw error;
    }
  }

  /** Checks the tables, makes the publication and slot; returns the slot's confirmed LSN (0 for a new slot). */
  private static async setUpSource(pool: pg.Pool, settings: DispatchSettings, names: { slot: string; publication: string }, routes: Route[], logger: Logger): Promise<Lsn> {
    const client = await pool.connect().catch((error: Error) => {
      throw new SourceProblemError([`cannot connect to the database at ${redactUrl(settings.databaseUrl)}: ${error.message}`]);
    });
    try {
      await checkTables(client, routes, logger);
      await ensurePublication(client, names.publication, routedTables(routes));
      const confirmed = await ensureSlot(client, names.slot);
      return confirmed ? parseLsn(confirmed) : 0n;
    } finally {
      client.release();
    }
  }

  private async run(waiting: ReadonlyMap<string, number>): Promise<void> {
    this.applyConfig(this.config, waiting);
    this.streamDone = this.stream.run();
    this.resources.notifications.start();
    this.timers.push(
      setInterval(() => {
        this.metrics.inflightEvents.set(this.shares.events);
        this.metrics.inflightBytes.set(this.shares.bytes);
      }, 1000),
      setInterval(() => this.failures.flush(), 1000),
      setInterval(() => void this.updateBacklogGauges(), BACKLOG_GAUGE_INTERVAL_MS),
    );
    if (this.settings.watchConfig) this.timers.push(setInterval(() => this.scheduleReload(), 2000));
    const app = createOpsApp(this.metrics.registry, {
      live: () => true,
      ready: () => (this.connected ? { ok: true } : { ok: false, reason: 'replication stream not connected' }),
    });
    this.server = await listen(app, this.settings.port, this.settings.host);
    this.logger.info(
      {
        slot: this.sourceNames.slot,
        publication: this.sourceNames.publication,
        triggers: [...this.config.deliveries.keys()],
        backlog: Object.fromEntries(waiting),
        startLsn: this.intake.confirmable().toString(16),
        port: this.port,
      },
      'dispatcher started',
    );
  }

  /** The port the ops endpoints listen on. */
  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : this.settings.port;
  }

  /** Asks the server where its WAL ends, every few seconds, so the lag metric shows a backlog the stream is not reading. */
  private pollServerWalEnd(): void {
    if (Date.now() - this.walEndPolledAt < 5000) return;
    this.walEndPolledAt = Date.now();
    this.resources.pool
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

  private backlogAdded(trigger: string): void {
    this.flows.get(trigger)?.backlogAdded();
  }

  private applyConfig(config: ServedConfig, waiting: ReadonlyMap<string, number> = new Map()): void {
    this.config = config;
    const needs = new Map<string, number>();
    for (const [key, delivery] of config.deliveries) {
      const spec = delivery.trigger.spec;
      const lane: LaneSettings = { concurrency: spec.concurrency, ordering: spec.ordering, batchMaxSize: spec.batch.maxSize, batchMaxWaitMs: parseDuration(spec.batch.maxWait) };
      // What keeps the trigger's concurrency busy, twice over: room for the next requests while these run.
      needs.set(key, 2 * spec.concurrency * spec.batch.maxSize);
      const existing = this.flows.get(key);
      if (existing) {
        existing.reconfigure(lane, spec.suspend);
        continue;
      }
      const flow = this.createFlow(key, delivery, lane, spec.suspend);
      this.flows.set(key, flow);
      flow.start(waiting.get(key) ?? 0);
    }
    this.shares.configure(needs);
  }

  private createFlow(key: string, delivery: TriggerDelivery, lane: LaneSettings, suspended: boolean): TriggerFlow {
    const { sender, deadLetters, backlog, writer, sinkNotifications } = this.resources;
    return new TriggerFlow({
      key,
      lane,
      shares: this.shares,
      writer,
      store: backlog,
      logger: this.logger,
      observer: this.flowObserver,
      suspended,
      retryInMemoryMs: this.settings.retryInMemoryMs,
      // The current delivery settings are looked up per attempt, so a reload changes URLs and retries at once.
      attempt: (entries, signal) =>
        attemptDelivery(this.config.deliveries.get(key) ?? delivery, entries, signal, {
          sender,
          deadLetters,
          metrics: this.metrics,
          logger: this.logger,
          failures: this.failures,
          notifySignal: sinkNotifications.signal,
        }),
      settleLive: (event) => this.intake.settle(event),
      streamProgress: () => this.intake.progress(),
    });
  }

  private readonly flowObserver: FlowObserver = {
    parked: (trigger, reason, count) => this.metrics.eventsParked.inc({ trigger, reason }, count),
    drained: (trigger) => this.metrics.eventsDrained.inc({ trigger }),
    attemptFailed: (trigger, outcome, next) => {
      this.failures.failed({ trigger, reason: outcome.reason ?? 'unknown error', ...(outcome.status !== undefined ? { status: outcome.status } : {}), outcome: next });
    },
  };

  /**
   * Backlog size and the age of its oldest event, per trigger, from the table (it is the truth after
   * restarts and CLI changes). The table is read only while something waits in it: the query counts rows.
   */
  private async updateBacklogGauges(): Promise<void> {
    for (const [key, flow] of this.flows) {
      this.metrics.triggerParking.set({ trigger: key }, flow.mode === 'parking' ? 1 : 0);
      this.metrics.triggerSuspended.set({ trigger: key }, flow.suspended ? 1 : 0);
    }
    const parking = [...this.flows.values()].some((flow) => flow.mode === 'parking');
    if (!parking && !this.backlogSeen) return;
    try {
      const summaries = new Map((await this.resources.backlog.summary()).map((s) => [s.trigger, s]));
      this.backlogSeen = summaries.size > 0;
      for (const key of this.flows.keys()) {
        const s = summaries.get(key);
        this.metrics.backlogEvents.set({ trigger: key }, s?.events ?? 0);
        this.metrics.backlogOldestAge.set({ trigger: key }, s?.oldestCommitTime ? Math.max(0, (Date.now() - s.oldestCommitTime.getTime()) / 1000) : 0);
      }
    } catch (error) {
      this.logger.debug({ err: describeError(error) }, 'could not read the backlog sizes');
    }
  }

  private logFailureSummary(line: SummaryLine): void {
    const { kind, trigger, ...rest } = line;
    if (kind === 'first-failure') this.logger.warn({ trigger, ...rest }, 'delivery failing');
    else if (kind === 'still-failing') this.logger.warn({ trigger, ...rest }, 'delivery still failing');
    else this.logger.info({ trigger, ...rest }, 'delivery recovered');
  }

  /** Reloads run one at a time, in order: a slow check of one must not let an older one apply after it. */
  private scheduleReload(): void {
    this.reloading = this.reloading.then(() => this.reloadIfChanged());
  }

  /** Re-reads the manifests; a broken new config is logged and the current one kept. */
  private async reloadIfChanged(): Promise<void> {
    if (this.stateValue !== 'streaming') return;
    let next: ServedConfig;
    try {
      const manifests = loadManifests(this.settings.manifestPaths);
      next = resolveConfig(manifests, this.settings, this.env);
      if (next.fingerprint === this.config.fingerprint) return;
      const names = sourceNames(manifests.triggers, this.settings);
      if (names.slot !== this.sourceNames.slot || names.publication !== this.sourceNames.publication) {
        throw new SourceProblemError([`changing the slot or publication needs a restart (serving ${this.sourceNames.slot}/${this.sourceNames.publication})`]);
      }
      const client = await this.resources.pool.connect();
      try {
        await checkTables(client, next.routes, this.logger);
        await ensurePublication(client, this.sourceNames.publication, routedTables(next.routes));
      } finally {
        client.release();
      }
    } catch (error) {
      this.logger.error({ err: describeError(error) }, 'new configuration rejected; still serving the previous one');
      return;
    }
    if (this.stateValue !== 'streaming') return;
    this.applyConfig(next);
    this.logger.info({ triggers: [...next.deliveries.keys()] }, 'configuration reloaded');
  }

  /**
   * Stops reading, lets deliveries in flight finish until the drain deadline, writes what waits to be
   * parked, confirms exactly what finished, and closes everything it opened.
   */
  async stop(): Promise<void> {
    if (this.stateValue !== 'streaming') return;
    this.stateValue = 'stopping';
    for (const timer of this.timers) clearInterval(timer);
    this.stream.pauseReading();
    await this.reloading;
    const { writer, notifications, sinkNotifications, sender, pool, backlogPool, deadLetterPool } = this.resources;
    await Promise.all([...this.flows.values()].map((flow) => flow.stop(this.settings.drainTimeoutMs)));
    await writer.close(this.settings.drainTimeoutMs);
    await this.stream.stop();
    await this.streamDone;
    await notifications.stop();
    sinkNotifications.abort(new Error('dispatcher shutting down'));
    await sender.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    this.failures.flush();
    await pool.end().catch(() => undefined);
    await backlogPool.end().catch(() => undefined);
    if (deadLetterPool !== pool) await deadLetterPool.end().catch(() => undefined);
    this.stateValue = 'stopped';
    this.logger.info({ confirmed: this.intake.confirmable().toString(16) }, 'dispatcher stopped');
  }
}

async function checkTables(client: pg.PoolClient, routes: Route[], logger: Logger): Promise<void> {
  const facts = await inspectTables(client, routedTables(routes));
  const { problems, warnings } = checkRoutesAgainstTables(routes, facts);
  for (const warning of warnings) logger.warn(warning);
  if (problems.length) throw new SourceProblemError(problems);
}
