import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { getHeapStatistics } from 'node:v8';
import pg from 'pg';
import { loadManifests, type ManifestSet, parseDuration, resourceKey } from '../api/v1alpha1/index.js';
import type { BackfillStateReport, DispatcherStateReport, FunctionDemandReport, TriggerServingState, TriggerStateReport } from '../common/dispatcherState.js';
import { createOpsApp, listen } from '../common/httpServer.js';
import { type Logger, redactUrl } from '../common/logger.js';
import { problemsHealByThemselves, recheckDelayMs } from './admission/recheck.js';
import type { TriggerProblem } from './admission/triggerProblem.js';
import type { ServedTrigger } from './backfill/backfillRunner.js';
import { Backfills, pendingReport } from './backfill/backfills.js';
import { BackfillWindows } from './backfill/backfillWindows.js';
import { BACKFILL_CHANNEL, BackfillStore } from './backfill/store.js';
import { BacklogNotifications } from './backlog/backlogNotifications.js';
import { BacklogWriter } from './backlog/backlogWriter.js';
import { BACKLOG_CONNECTION_OPTIONS, BacklogStore } from './backlog/store.js';
import { DeadLetterStore } from './deadletters/store.js';
import { RowDecoder } from './decode/rowDecoder.js';
import { createTextPgoutputPlugin, type PgoutputMessage } from './decode/textPgoutputPlugin.js';
import { TypeCatalog } from './decode/typeCatalog.js';
import { eventId } from './delivery/eventIds.js';
import { FailureSummary, type SummaryLine } from './delivery/failureSummary.js';
import { HttpSender } from './delivery/httpSender.js';
import { type Lsn, parseLsn } from './lsn.js';
import { createDispatcherMetrics, type DispatcherMetrics, tableChangeKey } from './metrics.js';
import { ChangeIntake } from './pipeline/changeIntake.js';
import { FunctionGates } from './pipeline/concurrencyGate.js';
import { attemptDelivery, type TriggerDelivery } from './pipeline/deliveryAttempt.js';
import { FunctionActivations } from './pipeline/functionActivation.js';
import type { PendingEvent } from './pipeline/pendingEvent.js';
import { type FlowObserver, type LaneSettings, TriggerFlow } from './pipeline/triggerFlow.js';
import { WindowShares } from './pipeline/windowShares.js';
import { columnsRead, routedTables } from './routing/triggerMatcher.js';
import { resolveConfig, type ServedConfig, type SourceNames, withProblems } from './servedConfig.js';
import type { DispatchSettings } from './settings.js';
import { connectionConfig } from './source/connectionConfig.js';
import { describeError, ReplicationStream } from './source/replicationStream.js';
import { checkRoutesAgainstTables, ensurePublication, ensureSlot, inspectTables, SourceProblemError } from './source/sourceSetup.js';
import { isUnreachable, unreachableMessage } from './source/unreachable.js';

/** Where a dispatcher is in its life; one value, so no combination of flags can contradict another. */
export type DispatcherState = 'connecting' | 'streaming' | 'stopping' | 'stopped';

/** Everything a running dispatcher opened; made in start(), closed in stop(), each with an error listener. */
interface Resources {
  pool: pg.Pool;
  /** The backlog's own connections (planner settings of their own, see BACKLOG_CONNECTION_OPTIONS). */
  backlogPool: pg.Pool;
  /** The same pool as `pool` unless dead letters live in another database. */
  deadLetterPool: pg.Pool;
  deadLetters: DeadLetterStore;
  backlog: BacklogStore;
  backfillStore: BackfillStore;
  writer: BacklogWriter;
  sender: HttpSender;
  /** Aborted at stop(), after the drain: dead-letter sink notifications still running give up. */
  sinkNotifications: AbortController;
}

/** What only exists once the database has been reached: the stream and what reads it. */
interface Streaming {
  intake: ChangeIntake<PgoutputMessage>;
  stream: ReplicationStream<PgoutputMessage>;
  done: Promise<void>;
  notifications: BacklogNotifications;
  backfills: Backfills;
}

/** start() was given up on (SIGTERM while the database could not be reached): not an error. */
export class StartAbortedError extends Error {
  readonly code = 'EVENTIDE_START_ABORTED';
  override readonly name = 'StartAbortedError';
}

const FAILURE_SUMMARY_INTERVAL_MS = 10_000;
/** How often the backfill table is looked at without a notification (a CLI cancel whose NOTIFY was missed). */
const BACKFILL_SYNC_MS = 5_000;
const BACKLOG_GAUGE_INTERVAL_MS = 5_000;
const TICK_MS = 1_000;
const FILE_CHECK_MS = 2_000;
const CONNECT_RETRY_MAX_MS = 30_000;

/**
 * One dispatcher: owns the source's slot and publication, reads the stream, and delivers every
 * matching change, each trigger on its own path (lane, and backlog when it cannot deliver now).
 * A trigger it cannot serve (missing table or column, invalid filter, ...) is set aside with its
 * reason and looked at again on a backoff; the others are served. Start with Dispatcher.start();
 * stop() drains and confirms what finished.
 */
export class Dispatcher {
  readonly metrics: DispatcherMetrics;
  /** Resolves when the manifests name another slot or publication: stop this dispatcher and start a new one (the new slot already exists). */
  readonly restartNeeded: Promise<SourceNames>;
  private requestRestart!: (names: SourceNames) => void;
  private restarting = false;
  private stateValue: DispatcherState = 'connecting';
  /** The triggers as the manifests resolve (before the database is consulted). */
  private desired: ServedConfig;
  /** What is served: `desired` less the triggers the database showed cannot be served. */
  private config: ServedConfig;
  private readonly flows = new Map<string, TriggerFlow>();
  /** Flows of triggers no longer served, kept until no event from the stream is left in them. */
  private readonly retiring = new Set<string>();
  private readonly shares: WindowShares;
  private readonly gates = new FunctionGates();
  private readonly activations: FunctionActivations;
  private readonly failures: FailureSummary;
  private streaming: Streaming | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private server: Server | undefined;
  private connected = false;
  private reloading: Promise<void> = Promise.resolve();
  private readonly connectAbort = new AbortController();
  /** The last reason the database could not be reached, while connecting. */
  private sourceProblem: string | undefined;
  /** Whether the last look at the backlog table found anything (until then: assume so). */
  private backlogSeen = true;
  private backlogCounts = new Map<string, number>();
  private readonly triggerStates = new Map<string, { state: TriggerServingState; reason?: string; since: string }>();
  private readonly lastDelivery = new Map<string, number>();
  private readonly lastError = new Map<string, { message: string; time: number }>();
  /** When set-aside triggers are looked at again (and, with none, when tables are checked for drift). */
  private recheck = { at: 0, attempt: 0, setAside: '' };
  /** Highest server WAL end seen: from keepalives, and asked for directly (a paused reader reads no keepalives). */
  private serverWalEnd: Lsn = 0n;
  private lagBytes = 0;
  private walEndPolledAt = 0;
  private lastGaugeUpdate = 0;
  private filesReadAt = 0;
  private backfillsSyncedAt = 0;

  private constructor(
    private readonly settings: DispatchSettings,
    private readonly logger: Logger,
    private readonly env: NodeJS.ProcessEnv,
    private readonly resources: Resources,
    config: ServedConfig,
  ) {
    this.metrics = createDispatcherMetrics();
    this.desired = config;
    this.config = config;
    this.shares = new WindowShares(settings.maxInflightEvents, settings.maxInflightBytes);
    this.activations = new FunctionActivations({
      started: (fn, timeoutMs) => {
        this.metrics.functionUnavailable.set({ function: fn }, 1);
        // At zero replicas this is how a pod gets started: info, not a warning (the timeout is the warning).
        this.logger.info({ function: fn, activationTimeoutMs: timeoutMs }, 'function refuses connections (no ready pod); its events wait for one without spending retries');
      },
      ended: (fn, afterMs, why) => {
        if (why === 'untargeted') {
          this.metrics.functionUnavailable.remove({ function: fn });
          return;
        }
        this.metrics.functionUnavailable.set({ function: fn }, 0);
        this.logger.info({ function: fn, afterMs }, 'function answers again; delivering');
      },
    });
    this.failures = new FailureSummary({ intervalMs: FAILURE_SUMMARY_INTERVAL_MS, emit: (line) => this.logFailureSummary(line) });
    this.restartNeeded = new Promise((resolve) => (this.requestRestart = resolve));
    this.updateTriggerStates();
  }

  /**
   * Loads the manifests, serves the ops endpoints (so /state answers while the database is out of
   * reach), reaches the database (retried while it refuses connections), sets up slot, publication,
   * dead-letter and backlog tables, and starts streaming. Fatal only for what stops every trigger.
   */
  static async start(settings: DispatchSettings, logger: Logger, env: NodeJS.ProcessEnv = process.env, signal?: AbortSignal): Promise<Dispatcher> {
    const manifests = loadManifests(settings.manifestPaths, { lenient: true });
    if (triggerCount(manifests) === 0) throw new SourceProblemError([`no EventTrigger found in ${settings.manifestPaths.join(', ')}`]);
    const config = resolveConfig(manifests, settings, env);
    const resources = openResources(settings, logger);
    const dispatcher = new Dispatcher(settings, logger, env, resources, config);
    const abort = () => dispatcher.connectAbort.abort();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      await dispatcher.serveOps();
      await dispatcher.connect();
      return dispatcher;
    } catch (error) {
      await dispatcher.close();
      throw error;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  private async serveOps(): Promise<void> {
    const app = createOpsApp(
      this.metrics.registry,
      {
        live: () => true,
        ready: () => (this.connected ? { ok: true } : { ok: false, reason: this.sourceProblem ?? 'replication stream not connected' }),
      },
      { '/state': () => this.state() },
    );
    this.server = await listen(app, this.settings.port, this.settings.host);
  }

  /** Sets up the source and starts streaming; while the database refuses connections, retries with backoff. */
  private async connect(): Promise<void> {
    let delayMs = 1000;
    for (;;) {
      try {
        await this.setUpAndStream();
        return;
      } catch (error) {
        if (!isUnreachable(error)) throw error;
        this.sourceProblem = unreachableMessage(this.settings.databaseUrl, error);
        this.updateTriggerStates();
        this.logger.warn({ retryInMs: delayMs }, `${this.sourceProblem}; retrying`);
        try {
          await sleep(delayMs, undefined, { signal: this.connectAbort.signal });
        } catch {
          throw new StartAbortedError('stopped while waiting for the database');
        }
        delayMs = Math.min(delayMs * 2, CONNECT_RETRY_MAX_MS);
      }
    }
  }

  private async setUpAndStream(): Promise<void> {
    const { pool, deadLetters, backlog } = this.resources;
    const names = this.desired.names;
    let startLsn: Lsn;
    let config: ServedConfig;
    const client = await pool.connect().catch((error: Error) => {
      if (isUnreachable(error)) throw error;
      // Refused rather than unreachable (a wrong password, no such database): no retry fixes that.
      throw new SourceProblemError([`cannot connect to the database at ${redactUrl(this.settings.databaseUrl)}: ${error.message}`]);
    });
    try {
      config = await this.checkAgainstDatabase(client, this.desired);
      if (config.routes.length === 0 && !this.settings.watchConfig) {
        // Nothing could ever be served without new manifests: say why, every trigger at once.
        throw new SourceProblemError([...config.setAside.values()].map((s) => s.problem.message));
      }
      await ensurePublication(client, names.publication, routedTables(config.routes));
      const confirmed = await ensureSlot(client, names.slot);
      startLsn = confirmed ? parseLsn(confirmed) : 0n;
    } finally {
      client.release();
    }
    await deadLetters.ensureSchema();
    await backlog.ensureSchema();
    this.beginStreaming(config, startLsn, await this.waitingByTrigger());
  }

  /** Events waiting in the backlog per trigger: a trigger starts (or comes back) behind them. */
  private async waitingByTrigger(): Promise<Map<string, number>> {
    return new Map((await this.resources.backlog.summary()).map((s) => [s.trigger, s.events]));
  }

  /** The desired config less the triggers whose tables do not fit them; logs what does not. */
  private async checkAgainstDatabase(client: pg.ClientBase, desired: ServedConfig): Promise<ServedConfig> {
    const facts = await inspectTables(client, routedTables(desired.routes), desired.names.publication);
    const { problems, warnings } = checkRoutesAgainstTables(desired.routes, facts);
    for (const warning of warnings) this.logger.warn(warning);
    return withProblems(desired, problems);
  }

  private beginStreaming(config: ServedConfig, startLsn: Lsn, waiting: ReadonlyMap<string, number>): void {
    const { settings, logger, resources } = this;
    const names = config.names;
    const catalog = new TypeCatalog((sql, params) => resources.pool.query(sql, params));
    const decoder = new RowDecoder(catalog, (sql, params) => resources.pool.query(sql, params));
    const windows = new BackfillWindows(logger);
    const intake = new ChangeIntake<PgoutputMessage>({
      decoder,
      routes: () => this.config.routes,
      eventId,
      startLsn,
      logger,
      dispatch: (event) => this.handOn(event),
      interceptor: windows,
      onChange: (change) => this.metrics.eventsReceived.inc(tableChangeKey(change.schema, change.table, change.op)),
      onMatch: (event) => this.metrics.eventsMatched.inc(event.triggerKey),
      onRelation: (message) => this.checkRelation(message),
    });
    const stream = new ReplicationStream<PgoutputMessage>(
      {
        connection: connectionConfig(settings.databaseUrl, settings.databaseTls),
        slotName: names.slot,
        createPlugin: () => createTextPgoutputPlugin([names.publication]),
        logger,
        onConnectionChange: (connected) => {
          this.connected = connected;
          this.metrics.connected.set(connected ? 1 : 0);
        },
        onStatus: ({ confirmed, walEnd }) => {
          if (walEnd > this.serverWalEnd) this.serverWalEnd = walEnd;
          this.metrics.confirmedLsn.set(Number(confirmed));
          this.lagBytes = Number(this.serverWalEnd > confirmed ? this.serverWalEnd - confirmed : 0n);
          this.metrics.replicationLagBytes.set(this.lagBytes);
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
    const backfills = new Backfills({
      pool: resources.pool,
      store: resources.backfillStore,
      windows,
      logger,
      served: (trigger) => this.servedTrigger(trigger),
      streamProgress: () => intake.progress(),
      observe: {
        rowsRead: (backfill, count) => this.metrics.backfillRowsRead.inc({ backfill }, count),
        readsSent: (backfill, count) => this.metrics.backfillReadsSent.inc({ backfill }, count),
      },
    });
    const notifications = new BacklogNotifications(
      connectionConfig(settings.databaseUrl, settings.databaseTls),
      logger,
      (trigger) => this.flows.get(trigger)?.backlogAdded(),
      async () => {
        for (const s of await resources.backlog.summary()) if (s.events > 0) this.flows.get(s.trigger)?.backlogAdded();
        void backfills.sync();
      },
      new Map([[BACKFILL_CHANNEL, () => void backfills.sync()]]),
    );
    this.streaming = { intake, stream, notifications, backfills, done: Promise.resolve() };
    this.sourceProblem = undefined;
    this.stateValue = 'streaming';
    this.applyConfig(config, waiting);
    this.streaming.done = stream.run();
    notifications.start();
    void backfills.sync(config);
    this.backfillsSyncedAt = Date.now();
    this.timers.push(setInterval(() => this.tick(), TICK_MS));
    this.scheduleRecheck();
    logger.info(
      {
        slot: names.slot,
        publication: names.publication,
        triggers: [...config.deliveries.keys()],
        setAside: Object.fromEntries([...config.setAside].map(([key, s]) => [key, s.problem.reason])),
        backlog: Object.fromEntries(waiting),
        startLsn: intake.confirmable().toString(16),
        port: this.port,
        // What the heap may grow to: V8's flags, or the limits of the worker the command runs in (launcher.ts).
        heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
      },
      'dispatcher started',
    );
  }

  /** The port the ops endpoints listen on. */
  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : this.settings.port;
  }

  /** Once a second: gauges, the failure summary, retiring flows, and (when due) a look at the manifests and tables. */
  private tick(): void {
    this.metrics.inflightEvents.set(this.shares.events);
    this.metrics.inflightBytes.set(this.shares.bytes);
    this.failures.flush();
    if (Date.now() - this.lastGaugeUpdate >= BACKLOG_GAUGE_INTERVAL_MS) {
      this.lastGaugeUpdate = Date.now();
      void this.updateBacklogGauges();
    }
    this.finishRetiring();
    if (this.streaming?.backfills.running && Date.now() - this.backfillsSyncedAt >= BACKFILL_SYNC_MS) {
      this.backfillsSyncedAt = Date.now();
      void this.streaming.backfills.sync();
    }
    // Reading the manifests parses and validates every trigger (filters compiled): every 2 s is soon enough.
    const filesDue = this.settings.watchConfig && Date.now() - this.filesReadAt >= FILE_CHECK_MS;
    if (filesDue || Date.now() >= this.recheck.at) this.scheduleReload(filesDue);
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

  /**
   * A table's description arrived (first change after connecting, or after an ALTER): a trigger whose
   * columns it no longer has is set aside before any row of the new shape is routed, instead of failing
   * its filter on every row or never matching its columns again.
   */
  private checkRelation(message: PgoutputMessage): void {
    if (message.tag !== 'relation') return;
    const have = new Set(message.columns.map((c) => c.name));
    const problems = new Map<string, TriggerProblem>();
    for (const route of this.config.routes) {
      const { table } = route.trigger.spec;
      if (table.schema !== message.schema || table.name !== message.name) continue;
      const missing = columnsRead(route).filter((c) => !have.has(c));
      if (missing.length === 0) continue;
      problems.set(route.key, {
        reason: 'ColumnNotFound',
        message: `EventTrigger ${route.key}: ${table.schema}.${table.name} no longer has column ${missing.map((c) => `"${c}"`).join(', ')} (dropped or renamed), which spec.columns or spec.filter reads`,
      });
    }
    if (problems.size === 0) return;
    for (const [trigger, problem] of problems) this.logger.error({ trigger, reason: problem.reason }, `trigger set aside: ${problem.message}`);
    this.applyConfig(withProblems(this.config, problems), new Map());
    this.recheck = { at: Date.now() + 1000, attempt: 0, setAside: '' };
  }

  /**
   * Makes the flows match a config: new triggers get a flow, changed ones are reconfigured, and a
   * trigger no longer served has its events in memory parked in its backlog, then its flow is freed.
   */
  private applyConfig(config: ServedConfig, waiting: ReadonlyMap<string, number>): void {
    this.config = config;
    const needs = new Map<string, number>();
    for (const [key, delivery] of config.deliveries) {
      const spec = delivery.trigger.spec;
      const lane: LaneSettings = { concurrency: spec.concurrency, ordering: spec.ordering, batchMaxSize: spec.batch.maxSize, batchMaxWaitMs: parseDuration(spec.batch.maxWait) };
      // What keeps the trigger's concurrency busy, twice over: room for the next requests while these run.
      needs.set(key, 2 * spec.concurrency * spec.batch.maxSize);
      const existing = this.flows.get(key);
      if (existing) {
        this.retiring.delete(key);
        existing.reconfigure(lane, spec.suspend);
        continue;
      }
      const flow = this.createFlow(key, delivery, lane, spec.suspend);
      this.flows.set(key, flow);
      flow.start(waiting.get(key) ?? 0);
    }
    for (const [key, flow] of this.flows) {
      if (config.deliveries.has(key) || this.retiring.has(key)) continue;
      this.retiring.add(key);
      // Suspending parks what is in memory; the flow goes once nothing of the stream is left in it.
      flow.setSuspended(true);
    }
    this.shares.configure(needs);
    this.gates.configure(config.functionLimits);
    this.activations.configure(config.activationTimeouts, new Set([...config.deliveries.values()].flatMap((d) => (d.functionKey !== undefined ? [d.functionKey] : []))));
    this.updateTriggerStates();
  }

  /** Hands an event of the stream (or a backfill's read in front of a change) to its trigger's flow. */
  private handOn(event: PendingEvent): void | Promise<void> {
    const flow = this.flows.get(event.triggerKey);
    if (flow) return flow.accept(event);
    // A read for a trigger no longer served: its backfill drops the chunk and reads it again later.
    if (event.readOf) return event.readOf.settled();
    throw new Error(`no flow for trigger ${event.triggerKey}: a routed event must have one`);
  }

  /** A trigger as a backfill may use it: served, not retiring, not suspended; else what it waits for. */
  private servedTrigger(key: string): ServedTrigger | { waiting: string } {
    const delivery = this.config.deliveries.get(key);
    const flow = this.flows.get(key);
    const route = this.config.routes.find((r) => r.key === key);
    if (!delivery || !flow || !route || this.retiring.has(key)) {
      const aside = this.config.setAside.get(key);
      return { waiting: aside ? `waiting: EventTrigger ${key} is set aside (${aside.problem.reason}): ${aside.problem.message}` : `waiting: this dispatcher serves no EventTrigger ${key}` };
    }
    if (flow.suspended) return { waiting: `waiting: EventTrigger ${key} is suspended (spec.suspend)` };
    const { concurrency, batch } = delivery.trigger.spec;
    return { route, capacity: concurrency * batch.maxSize, offerRead: (event) => flow.offerRead(event) };
  }

  private finishRetiring(): void {
    for (const key of this.retiring) {
      const flow = this.flows.get(key);
      if (flow?.holdsLiveEvents) continue;
      this.retiring.delete(key);
      this.flows.delete(key);
      if (flow) void flow.stop(this.settings.drainTimeoutMs);
      for (const gauge of [this.metrics.triggerParking, this.metrics.triggerSuspended, this.metrics.backlogEvents, this.metrics.backlogOldestAge]) gauge.remove({ trigger: key });
      this.logger.info({ trigger: key }, 'trigger no longer served; its events in memory are in its backlog');
    }
  }

  private createFlow(key: string, delivery: TriggerDelivery, lane: LaneSettings, suspended: boolean): TriggerFlow {
    const { sender, deadLetters, backlog, writer, sinkNotifications } = this.resources;
    const current = () => this.config.deliveries.get(key) ?? delivery;
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
      // Looked up per request: no key is built while no Function sets a concurrency.
      gate: () => {
        const fn = current().functionKey;
        return this.activations.gateFor(fn, this.gates.empty ? undefined : this.gates.gateFor(fn));
      },
      // The current delivery settings are looked up per attempt, so a reload changes URLs and retries at once.
      attempt: (entries, signal) =>
        attemptDelivery(current(), entries, signal, {
          sender,
          deadLetters,
          metrics: this.metrics,
          logger: this.logger,
          failures: this.failures,
          notifySignal: sinkNotifications.signal,
          activations: this.activations,
        }),
      // A backfill's read belongs to no transaction of the slot: its backfill counts it instead.
      settleLive: (event) => (event.readOf ? event.readOf.settled() : this.streaming!.intake.settle(event)),
      streamProgress: () => this.streaming!.intake.progress(),
    });
  }

  private readonly flowObserver: FlowObserver = {
    parked: (trigger, reason, count) => this.metrics.eventsParked.inc({ trigger, reason }, count),
    drained: (trigger) => this.metrics.eventsDrained.inc({ trigger }),
    delivered: (trigger) => this.lastDelivery.set(trigger, Date.now()),
    attemptFailed: (trigger, outcome, next) => {
      const reason = outcome.reason ?? 'unknown error';
      this.lastError.set(trigger, { message: outcome.status !== undefined ? `HTTP ${outcome.status}: ${reason}` : reason, time: Date.now() });
      this.failures.failed({ trigger, reason, ...(outcome.status !== undefined ? { status: outcome.status } : {}), outcome: next });
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
      this.backlogCounts = new Map([...summaries].map(([key, s]) => [key, s.events]));
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
  private scheduleReload(readFiles: boolean): void {
    if (readFiles) this.filesReadAt = Date.now();
    this.reloading = this.reloading.then(() => this.reconcile(readFiles));
  }

  /**
   * Level-based: re-reads the manifests (with --watch-config) and, when they changed or a look is due,
   * checks the triggers against the tables and serves what can be served. A database that cannot be
   * reached, or manifests that cannot be read, leave what is served as it is; a look is due again soon.
   */
  private async reconcile(readFiles: boolean): Promise<void> {
    if (this.stateValue !== 'streaming' || this.restarting) return;
    let desired = this.desired;
    if (readFiles) {
      try {
        const next = resolveConfig(loadManifests(this.settings.manifestPaths, { lenient: true }), this.settings, this.env);
        if (next.fingerprint !== desired.fingerprint) desired = next;
      } catch (error) {
        this.logger.error({ err: describeError(error) }, 'manifests could not be read; still serving the previous ones');
        return;
      }
    }
    const changed = desired !== this.desired;
    if (!changed && Date.now() < this.recheck.at) return;
    let next: ServedConfig;
    let waiting = new Map<string, number>();
    try {
      const client = await this.resources.pool.connect();
      try {
        next = await this.checkAgainstDatabase(client, desired);
        if (this.switchesSource(next)) {
          await this.prepareSourceSwitch(client, next);
          return;
        }
        await ensurePublication(client, next.names.publication, routedTables(next.routes));
      } finally {
        client.release();
      }
      // A trigger served again (or anew) may have events waiting from before: it starts behind them.
      if ([...next.deliveries.keys()].some((key) => !this.flows.has(key))) {
        waiting = await this.waitingByTrigger();
      }
    } catch (error) {
      this.logger.error({ err: describeError(error) }, 'could not check the triggers against the database; still serving the previous configuration');
      this.recheck = { ...this.recheck, at: Date.now() + recheckDelayMs(this.recheck.attempt++) };
      return;
    }
    if (this.stateValue !== 'streaming') return;
    this.desired = desired;
    const before = new Set(this.config.deliveries.keys());
    this.applyConfig(next, waiting);
    this.scheduleRecheck();
    if (changed) void this.streaming?.backfills.sync(next);
    const added = [...next.deliveries.keys()].filter((k) => !before.has(k));
    for (const [trigger, s] of next.setAside) if (before.has(trigger)) this.logger.error({ trigger, reason: s.problem.reason }, `trigger set aside: ${s.problem.message}`);
    if (changed || added.length > 0) {
      this.logger.info({ triggers: [...next.deliveries.keys()], setAside: Object.fromEntries([...next.setAside].map(([k, s]) => [k, s.problem.reason])) }, 'configuration applied');
    }
  }

  private switchesSource(next: ServedConfig): boolean {
    const { slot, publication } = this.config.names;
    return next.names.slot !== slot || next.names.publication !== publication;
  }

  /**
   * The manifests name another slot or publication. The new ones are made first, so every change
   * committed from now on is read by the new slot (the old one is read until this dispatcher stops:
   * events of that moment may arrive twice, never not at all); then the caller restarts on them.
   */
  private async prepareSourceSwitch(client: pg.ClientBase, next: ServedConfig): Promise<void> {
    await ensurePublication(client, next.names.publication, routedTables(next.routes));
    await ensureSlot(client, next.names.slot);
    this.restarting = true;
    const from = this.config.names;
    this.logger.warn(
      { from, to: next.names },
      `the triggers name another slot or publication: restarting on it. Slot "${from.slot}" is no longer read and holds WAL until it is dropped (the operator drops it with dropSlotOnDelete; by hand: SELECT pg_drop_replication_slot('${from.slot}'))`,
    );
    this.requestRestart(next.names);
  }

  /** When to look at set-aside triggers again (backoff while the same ones stay aside), or at the tables for drift. */
  private scheduleRecheck(): void {
    const healable = [...this.config.setAside.entries()].filter(([, s]) => problemsHealByThemselves(s.problem.reason));
    const signature = healable
      .map(([key]) => key)
      .sort()
      .join(',');
    const attempt = signature !== '' && signature === this.recheck.setAside ? this.recheck.attempt + 1 : 0;
    this.recheck = { at: Date.now() + recheckDelayMs(attempt, signature !== ''), attempt, setAside: signature };
  }

  /** Records when each trigger entered its current state (serving, suspended, set aside, waiting). */
  private updateTriggerStates(): void {
    const now = new Date().toISOString();
    const next = new Map<string, { state: TriggerServingState; reason?: string }>();
    if (this.stateValue === 'connecting') {
      for (const key of [...this.desired.deliveries.keys(), ...this.desired.setAside.keys()]) {
        const aside = this.desired.setAside.get(key);
        next.set(key, aside ? { state: 'set-aside', reason: aside.problem.reason } : { state: 'waiting', reason: this.sourceProblem ? 'DatabaseUnreachable' : 'Connecting' });
      }
    } else {
      for (const [key, delivery] of this.config.deliveries) next.set(key, { state: delivery.trigger.spec.suspend ? 'suspended' : 'serving' });
      for (const [key, aside] of this.config.setAside) next.set(key, { state: 'set-aside', reason: aside.problem.reason });
    }
    this.metrics.triggerSetAside.reset();
    for (const [trigger, value] of next) if (value.state === 'set-aside') this.metrics.triggerSetAside.set({ trigger, reason: value.reason ?? 'unknown' }, 1);
    for (const key of this.triggerStates.keys()) if (!next.has(key)) this.triggerStates.delete(key);
    for (const [key, value] of next) {
      const before = this.triggerStates.get(key);
      if (before && before.state === value.state && before.reason === value.reason) continue;
      this.triggerStates.set(key, { ...value, since: now });
    }
  }

  /** What GET /state answers: the source, and each trigger's state with its numbers. */
  state(): DispatcherStateReport {
    const config = this.stateValue === 'connecting' ? this.desired : this.config;
    const triggers: Record<string, TriggerStateReport> = {};
    for (const [key, recorded] of this.triggerStates) {
      const flow = this.flows.get(key);
      const aside = config.setAside.get(key);
      const generation = config.deliveries.get(key)?.trigger.metadata.generation ?? aside?.generation;
      const lastDelivery = this.lastDelivery.get(key);
      const lastError = this.lastError.get(key);
      const waitingMessage = recorded.state === 'waiting' ? (this.sourceProblem ?? 'connecting to the database') : undefined;
      triggers[key] = {
        state: recorded.state,
        ...(generation !== undefined ? { generation } : {}),
        ...(recorded.reason !== undefined ? { reason: recorded.reason } : {}),
        ...(aside ? { message: aside.problem.message } : waitingMessage ? { message: waitingMessage } : {}),
        since: recorded.since,
        inflight: flow?.inLane ?? 0,
        backlog: this.backlogCounts.get(key) ?? 0,
        parking: flow?.mode === 'parking',
        ...(lastDelivery !== undefined ? { lastDeliveryTime: new Date(lastDelivery).toISOString() } : {}),
        ...(lastError ? { lastError: { message: lastError.message, time: new Date(lastError.time).toISOString() } } : {}),
      };
    }
    return {
      source: {
        slot: config.names.slot,
        publication: config.names.publication,
        phase: this.stateValue === 'connecting' ? 'connecting' : this.stateValue === 'streaming' ? 'streaming' : 'stopping',
        connected: this.connected,
        ...(this.sourceProblem ? { problem: this.sourceProblem } : {}),
        lagBytes: this.lagBytes,
      },
      configFingerprint: config.fingerprint,
      triggers,
      functions: this.functionDemand(config),
      backfills: this.streaming ? this.streaming.backfills.state() : this.pendingBackfills(config),
    };
  }

  /** The manifests' backfills while the database has not been reached. */
  private pendingBackfills(config: ServedConfig): Record<string, BackfillStateReport> {
    const message = `waiting: ${this.sourceProblem ?? 'connecting to the database'}`;
    return Object.fromEntries(config.backfills.map((backfill) => [resourceKey(backfill.metadata), pendingReport(backfill, message)]));
  }

  /**
   * Per Function, what its triggers have for it now: requests in flight, events in memory, backlog, how
   * many it would send at once, and whether it refuses connections. A suspended trigger's backlog is no
   * demand: nothing is sent until it resumes.
   */
  private functionDemand(config: ServedConfig): Record<string, FunctionDemandReport> {
    const demand: Record<string, FunctionDemandReport> = {};
    const limits = this.gates.usage();
    const unavailable = this.activations.unavailable();
    const largestBatch = new Map<string, number>();
    const lastDelivery = new Map<string, number>();
    for (const [key, delivery] of config.deliveries) {
      const fn = delivery.functionKey;
      if (fn === undefined) continue;
      const flow = this.flows.get(key);
      const limit = limits.get(fn)?.limit;
      const entry = (demand[fn] ??= { inflight: 0, events: 0, backlog: 0, capacity: 0, ...(limit !== undefined ? { limit } : {}) });
      if (delivery.trigger.spec.suspend) continue;
      const { concurrency, batch } = delivery.trigger.spec;
      entry.inflight += flow?.lane.attemptsInFlight ?? 0;
      entry.events += flow?.inLane ?? 0;
      entry.backlog += this.backlogCounts.get(key) ?? 0;
      entry.capacity! += concurrency * batch.maxSize;
      const delivered = this.lastDelivery.get(key);
      if (delivered !== undefined) lastDelivery.set(fn, Math.max(lastDelivery.get(fn) ?? 0, delivered));
      largestBatch.set(fn, Math.max(largestBatch.get(fn) ?? 1, batch.maxSize));
    }
    for (const [fn, entry] of Object.entries(demand)) {
      // Function.spec.concurrency caps requests, each up to a batch of events.
      if (entry.limit !== undefined) entry.capacity = Math.min(entry.capacity!, entry.limit * (largestBatch.get(fn) ?? 1));
      const delivered = lastDelivery.get(fn);
      if (delivered !== undefined) entry.lastDeliveryTime = new Date(delivered).toISOString();
    }
    for (const [fn, { since, timedOut }] of unavailable) {
      const entry = demand[fn];
      if (!entry) continue;
      entry.unavailableSince = new Date(since).toISOString();
      if (timedOut) entry.activationTimedOut = true;
    }
    return demand;
  }

  /**
   * Stops reading, lets deliveries in flight finish until the drain deadline, writes what waits to be
   * parked, confirms exactly what finished, and closes everything it opened.
   */
  async stop(): Promise<void> {
    if (this.stateValue === 'stopping' || this.stateValue === 'stopped') return;
    this.connectAbort.abort();
    if (this.stateValue === 'connecting') {
      // start() is still trying to reach the database: it gives up and closes everything itself.
      return;
    }
    this.stateValue = 'stopping';
    for (const timer of this.timers) clearInterval(timer);
    const streaming = this.streaming!;
    streaming.stream.pauseReading();
    await this.reloading;
    await streaming.backfills.stop();
    await Promise.all([...this.flows.values()].map((flow) => flow.stop(this.settings.drainTimeoutMs)));
    await this.resources.writer.close(this.settings.drainTimeoutMs);
    await streaming.stream.stop();
    await streaming.done;
    await streaming.notifications.stop();
    await this.close();
    this.logger.info({ confirmed: streaming.intake.confirmable().toString(16) }, 'dispatcher stopped');
  }

  /** Closes what start() opened (the pools, the sender, the ops server). */
  private async close(): Promise<void> {
    const { sinkNotifications, sender, pool, backlogPool, deadLetterPool } = this.resources;
    sinkNotifications.abort(new Error('dispatcher shutting down'));
    await sender.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    this.failures.flush();
    await pool.end().catch(() => undefined);
    await backlogPool.end().catch(() => undefined);
    if (deadLetterPool !== pool) await deadLetterPool.end().catch(() => undefined);
    this.stateValue = 'stopped';
  }
}

function triggerCount(manifests: ManifestSet): number {
  return manifests.triggers.length + manifests.invalid.filter((i) => i.kind === 'EventTrigger').length;
}

/** The pools, stores and sender a dispatcher uses; none connects until used. */
function openResources(settings: DispatchSettings, logger: Logger): Resources {
  const source = (extra: pg.PoolConfig) => connectionConfig(settings.databaseUrl, settings.databaseTls, extra);
  const pool = new pg.Pool(source({ max: 4, application_name: 'eventide-dispatcher', connectionTimeoutMillis: 10_000 }));
  pool.on('error', (error) => logger.warn({ err: describeError(error) }, 'idle database connection failed'));
  let deadLetterPool = pool;
  if (settings.deadLetterDatabaseUrl) {
    deadLetterPool = new pg.Pool({ connectionString: settings.deadLetterDatabaseUrl, max: 4, application_name: 'eventide-dispatcher', connectionTimeoutMillis: 10_000 });
    deadLetterPool.on('error', (error) => logger.warn({ err: describeError(error) }, 'idle dead-letter database connection failed'));
  }
  const backlogPool = new pg.Pool(source({ max: 2, application_name: 'eventide-dispatcher-backlog', connectionTimeoutMillis: 10_000, options: BACKLOG_CONNECTION_OPTIONS }));
  backlogPool.on('error', (error) => logger.warn({ err: describeError(error) }, 'idle backlog connection failed'));
  const backlog = new BacklogStore(backlogPool);
  return {
    backfillStore: new BackfillStore(pool),
    pool,
    backlogPool,
    deadLetterPool,
    deadLetters: new DeadLetterStore(deadLetterPool),
    backlog,
    writer: new BacklogWriter(backlog, logger),
    sender: new HttpSender(),
    sinkNotifications: new AbortController(),
  };
}
