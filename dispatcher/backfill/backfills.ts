import { type BackfillResource, resourceKey } from '../../api/v1alpha1/index.js';
import type { BackfillStateReport } from '../../common/dispatcherState.js';
import type { ServedConfig } from '../servedConfig.js';
import { describeError } from '../source/replicationStream.js';
import { type BackfillHost, BackfillRunner, backfillReport } from './backfillRunner.js';
import { type BackfillRecord, type BackfillRequest, FINISHED_PHASES } from './store.js';

/** A Backfill resource as a row of eventide.backfills asks for it. */
export function requestOf(backfill: BackfillResource): BackfillRequest {
  const namespace = backfill.metadata.namespace ?? 'default';
  return {
    name: resourceKey(backfill.metadata),
    ...(backfill.metadata.uid ? { uid: backfill.metadata.uid } : {}),
    origin: 'manifest',
    trigger: `${namespace}/${backfill.spec.trigger.name}`,
    ...(backfill.spec.filter !== undefined ? { filter: backfill.spec.filter } : {}),
    batchSize: backfill.spec.batchSize,
    ...(backfill.spec.rowsPerSecond !== undefined ? { rowsPerSecond: backfill.spec.rowsPerSecond } : {}),
  };
}

/** A Backfill of the manifests that no run reports yet (the database not reached, the table not written yet), with why. */
export function pendingReport(backfill: BackfillResource, message: string): BackfillStateReport {
  const request = requestOf(backfill);
  return { trigger: request.trigger, ...(request.uid !== undefined ? { uid: request.uid } : {}), phase: 'Pending', rowsRead: 0, rowsSent: 0, message };
}

/**
 * What to do with the backfills of the table, given the config. Pure. This dispatcher owns a backfill
 * whose trigger is one of its own (served or set aside); a Backfill resource that left the manifests
 * is cancelled; an unfinished one of its own runs.
 */
export function planBackfills(
  records: readonly BackfillRecord[],
  config: Pick<ServedConfig, 'backfills' | 'deliveries' | 'setAside'>,
  /** Backfills this dispatcher is running now: its own, even once their trigger left the manifests with them. */
  running: ReadonlySet<string> = new Set(),
): { run: BackfillRecord[]; cancel: BackfillRecord[]; owned: BackfillRecord[] } {
  const inManifests = new Set(config.backfills.map((b) => resourceKey(b.metadata)));
  const ownTrigger = (trigger: string) => config.deliveries.has(trigger) || config.setAside.has(trigger);
  const owned = records.filter((r) => inManifests.has(r.name) || ownTrigger(r.trigger) || running.has(r.name));
  const cancel = owned.filter((r) => r.origin === 'manifest' && !inManifests.has(r.name) && !FINISHED_PHASES.has(r.phase));
  const run = owned.filter((r) => !FINISHED_PHASES.has(r.phase) && !cancel.includes(r));
  return { run, cancel, owned };
}

/**
 * The backfills of one dispatcher: keeps eventide.backfills in step with the Backfill resources of the
 * manifests, runs the unfinished ones of its triggers (also those `eventide backfill start` added), and
 * reports them all. Synced at start, on every config change, when the CLI notifies, and every few seconds.
 */
export class Backfills {
  private readonly runners = new Map<string, { runner: BackfillRunner; done: Promise<void> }>();
  private owned: BackfillRecord[] = [];
  private invalid: ServedConfig['invalidBackfills'] = [];
  /** Why the table could not be read or written at the last sync. */
  private problem: string | undefined;
  private syncing: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastConfig: ServedConfig | undefined;
  /** The config whose Backfill resources are in the table. */
  private written: ServedConfig | undefined;

  constructor(private readonly host: BackfillHost) {}

  /** Serialised: a slow sync never lets an older view of the table apply after a newer one. */
  sync(config: ServedConfig | undefined = this.lastConfig): Promise<void> {
    if (!config) return this.syncing;
    this.lastConfig = config;
    this.syncing = this.syncing.then(() => this.syncOnce(config));
    return this.syncing;
  }

  private async syncOnce(config: ServedConfig): Promise<void> {
    if (this.stopped) return;
    const { store, logger } = this.host;
    this.invalid = config.invalidBackfills;
    try {
      // The table is made when a Backfill first needs it (the CLI makes it too): a dispatcher without
      // backfills needs no more privileges than before.
      // Written once per config: the periodic sync only reads (a CLI cancel whose notification was missed).
      if (config !== this.written) {
        if (config.backfills.length > 0) await store.ensureSchema();
        for (const backfill of config.backfills) await store.upsertResource(requestOf(backfill));
        this.written = config;
      }
      const plan = planBackfills(await this.list(), config, new Set(this.runners.keys()));
      for (const record of plan.cancel) {
        logger.info({ backfill: record.name }, 'Backfill resource removed: cancelling it');
        await store.cancel(record.name, 'cancelled: its Backfill resource was deleted');
      }
      const records = plan.cancel.length > 0 ? planBackfills(await this.list(), config, new Set(this.runners.keys())) : plan;
      this.owned = records.owned;
      for (const record of records.owned) {
        const running = this.runners.get(record.name)?.runner;
        if (running && running.currentRun !== record.run) {
          // Started afresh (another trigger or filter): the old run stops; its reads in flight are delivered as usual.
          running.stop();
          this.runners.delete(record.name);
        } else running?.update(record);
      }
      for (const record of records.run) if (!this.runners.has(record.name)) this.startRunner(record);
    } catch (error) {
      this.problem = describeError(error).message;
      logger.warn({ err: describeError(error) }, 'could not read or write eventide.backfills; trying again shortly');
      return;
    }
    this.problem = undefined;
  }

  private async list(): Promise<BackfillRecord[]> {
    try {
      return await this.host.store.list();
    } catch (error) {
      if ((error as { code?: string }).code === '42P01') return [];
      throw error;
    }
  }

  private startRunner(record: BackfillRecord): void {
    if (this.stopped) return;
    const runner = new BackfillRunner(record, this.host);
    const done = runner.run().finally(() => {
      if (this.runners.get(record.name)?.runner === runner) this.runners.delete(record.name);
      // Read its final record back, so /state shows it finished.
      void this.sync();
    });
    this.runners.set(record.name, { runner, done });
  }

  /** Whether a backfill runs here: only then is the table looked at without a notification. */
  get running(): boolean {
    return this.runners.size > 0;
  }

  /** Every backfill this dispatcher owns, by `namespace/name`, as it is now. */
  state(): Record<string, BackfillStateReport> {
    const out: Record<string, BackfillStateReport> = {};
    for (const record of this.owned) out[record.name] = this.runners.get(record.name)?.runner.report() ?? backfillReport(record, undefined);
    for (const backfill of this.lastConfig?.backfills ?? []) {
      // Not in the table (yet): it could not be written, or the first sync is still running.
      out[resourceKey(backfill.metadata)] ??= pendingReport(backfill, this.problem ? `cannot use eventide.backfills: ${this.problem}` : 'starting');
    }
    for (const invalid of this.invalid) {
      if (!invalid.key) continue;
      out[invalid.key] = { trigger: '', phase: 'Failed', rowsRead: 0, rowsSent: 0, message: invalid.message };
    }
    return out;
  }

  /** Stops every runner (reads handed on are delivered as usual; a restart resumes from the cursors). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.syncing;
    for (const { runner } of this.runners.values()) runner.stop();
    await Promise.all([...this.runners.values()].map((r) => r.done));
  }
}
