/**
 * What a dispatcher serves on GET /state, and the operator reads: the contract between the data plane
 * and the control plane. Field names are stable; new fields may be added, so readers ignore unknown ones.
 */

/** serving: events are delivered. suspended: spec.suspend, events wait in the backlog. set-aside: the dispatcher cannot serve it (see reason). waiting: the dispatcher has not reached the database yet. */
export type TriggerServingState = 'serving' | 'suspended' | 'set-aside' | 'waiting';

export interface TriggerStateReport {
  state: TriggerServingState;
  /** metadata.generation of the manifest this state is about (absent in local files without one). */
  generation?: number;
  /** Why it is set aside or waiting: a stable CamelCase word (TableNotFound, InvalidFilter, ...). */
  reason?: string;
  message?: string;
  /** When the trigger entered this state (RFC 3339). */
  since: string;
  /** Events in memory for this trigger: queued, in flight or waiting for a retry. */
  inflight: number;
  /** Events waiting in the trigger's durable backlog (as of the last look at the table). */
  backlog: number;
  /** Whether new events go through the backlog now (the function fell behind or fails). */
  parking: boolean;
  lastDeliveryTime?: string;
  lastError?: { message: string; time: string };
}

export interface SourceStateReport {
  slot: string;
  publication: string;
  /** connecting: the database has not been reached yet; streaming; stopping. */
  phase: 'connecting' | 'streaming' | 'stopping';
  connected: boolean;
  /** The last reason the database could not be reached or set up, while connecting. */
  problem?: string;
  /** WAL the slot holds back: the server's WAL end minus the slot's confirmed position, in bytes. */
  lagBytes: number;
}

export interface DispatcherStateReport {
  source: SourceStateReport;
  /** Changes with every change of the loaded manifests. */
  configFingerprint: string;
  triggers: Record<string, TriggerStateReport>;
  /** Demand per Function (`namespace/name`) across the triggers this dispatcher serves for it: what autoscaling reads. */
  functions: Record<string, FunctionDemandReport>;
  /** Backfills this dispatcher knows of (`namespace/name`): from its manifests and from `eventide backfill start`. */
  backfills?: Record<string, BackfillStateReport>;
}

/** One backfill as the dispatcher runs it; eventide.backfills in the source database holds the same, durably. */
export interface BackfillStateReport {
  /** `namespace/name` of the EventTrigger it sends rows through. */
  trigger: string;
  /** metadata.uid of the Backfill resource it runs (absent for one started by the CLI). */
  uid?: string;
  phase: 'Pending' | 'Running' | 'Complete' | 'Failed' | 'Cancelled';
  /** Rows read and settled (delivered, dead-lettered, in the backlog, or filtered out). */
  rowsRead: number;
  /** Of those, rows sent as events (they passed the filters). */
  rowsSent: number;
  rowsEstimate?: number;
  /** Primary key of the last row of the last completed chunk, as Postgres prints it (columns joined by ","). */
  cursor?: string;
  startTime?: string;
  completionTime?: string;
  /** What it waits for, or why it failed. */
  message?: string;
}

export interface FunctionDemandReport {
  /** Requests to the function in flight now. */
  inflight: number;
  /** Events in memory for it: in flight, ready to send, or waiting for a retry. */
  events: number;
  /** Events waiting in its triggers' backlogs (as of the dispatcher's last look at the table). */
  backlog: number;
  /** Function.spec.concurrency, when set: the cap on `inflight`. */
  limit?: number;
  /** The most requests this dispatcher would have in flight to the function: its triggers' concurrency (times batch size), within `limit`. */
  capacity?: number;
  /**
   * Since when (RFC 3339) the function has refused connections: no ready endpoints (scaled to zero, a rollout).
   * Its events wait without spending retries until `activationTimedOut`.
   */
  unavailableSince?: string;
  /** The function stayed unavailable past its activation timeout: retries and dead-lettering apply again. */
  activationTimedOut?: boolean;
  /**
   * The last delivery to the function (RFC 3339). The counts above are an instant: light traffic that is
   * served in milliseconds is rarely caught pending, but it is not idleness.
   */
  lastDeliveryTime?: string;
}

const STATES: readonly string[] = ['serving', 'suspended', 'set-aside', 'waiting'];
const BACKFILL_PHASES: readonly string[] = ['Pending', 'Running', 'Complete', 'Failed', 'Cancelled'] satisfies BackfillStateReport['phase'][];

/** Throws naming the entry when a backfill entry of /state is not one the operator can mirror into status. */
function checkBackfill(key: string, value: unknown): void {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error(`backfill ${key}: not an object`);
  const entry = value as Partial<Record<keyof BackfillStateReport, unknown>>;
  if (typeof entry.phase !== 'string' || !BACKFILL_PHASES.includes(entry.phase)) throw new Error(`backfill ${key}: phase must be one of ${BACKFILL_PHASES.join(', ')}`);
  if (typeof entry.trigger !== 'string') throw new Error(`backfill ${key}: trigger must be a string`);
  for (const field of ['rowsRead', 'rowsSent'] as const) {
    if (typeof entry[field] !== 'number' || !Number.isFinite(entry[field])) throw new Error(`backfill ${key}: ${field} must be a number`);
  }
  if (entry.rowsEstimate !== undefined && (typeof entry.rowsEstimate !== 'number' || !Number.isFinite(entry.rowsEstimate))) {
    throw new Error(`backfill ${key}: rowsEstimate must be a number when present`);
  }
}

/** Reads a /state answer; throws naming what is wrong, so a broken or foreign endpoint is reported, never trusted. */
export function parseDispatcherState(value: unknown): DispatcherStateReport {
  const doc = value as Partial<DispatcherStateReport> | null;
  if (!doc || typeof doc !== 'object' || typeof doc.source !== 'object' || doc.source === null || typeof doc.triggers !== 'object' || doc.triggers === null) {
    throw new Error('not a dispatcher state document (no source or triggers)');
  }
  for (const [key, trigger] of Object.entries(doc.triggers)) {
    if (!trigger || typeof trigger !== 'object' || !STATES.includes((trigger as TriggerStateReport).state)) {
      throw new Error(`trigger ${key}: state must be one of ${STATES.join(', ')}`);
    }
  }
  // Absent (a dispatcher from before backfills) reads as none.
  if (doc.backfills !== undefined && doc.backfills !== null) {
    if (typeof doc.backfills !== 'object' || Array.isArray(doc.backfills)) throw new Error('backfills must be an object keyed by namespace/name');
    for (const [key, backfill] of Object.entries(doc.backfills)) checkBackfill(key, backfill);
  }
  if (typeof doc.source.slot !== 'string' || typeof doc.source.lagBytes !== 'number') throw new Error('source: slot and lagBytes are required');
  const report = doc as DispatcherStateReport;
  return { ...report, configFingerprint: report.configFingerprint ?? '', functions: report.functions ?? {}, backfills: report.backfills ?? {} };
}
