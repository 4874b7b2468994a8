/** One failed delivery attempt, as the summary needs it. */
export interface FailureRecord {
  trigger: string;
  reason: string;
  /** HTTP status, absent for network errors and timeouts. */
  status?: number;
  /** What became of the attempt's events: retried later, parked, or dead-lettered. */
  outcome: 'retry' | 'parked' | 'dead_letter';
}

/**
 * A line to log. Counts are those since the trigger's previous line: the first-failure line reports
 * the first failure, so a still-failing line after it counts the ones that followed.
 */
export type SummaryLine =
  | { kind: 'first-failure'; trigger: string; reason: string; status?: number; outcome: FailureRecord['outcome'] }
  | {
      kind: 'still-failing';
      trigger: string;
      failures: number;
      retries: number;
      parked: number;
      deadLettered: number;
      lastReason: string;
      lastStatus?: number;
      /** Since the first failure of this run of failures. */
      failingForMs: number;
      /** Time the counts cover: since the trigger's previous line, so at least the configured interval. */
      intervalMs: number;
    }
  | { kind: 'recovered'; trigger: string; failures: number; retries: number; parked: number; deadLettered: number; failingForMs: number };

interface Counts {
  failures: number;
  retries: number;
  parked: number;
  deadLettered: number;
}

interface FailingTrigger extends Counts {
  since: number;
  lastLineAt: number;
  lastReason: string;
  lastStatus: number | undefined;
}

const COUNTED_AS = { retry: 'retries', parked: 'parked', dead_letter: 'deadLettered' } as const satisfies Record<FailureRecord['outcome'], keyof Counts>;

/**
 * Turns delivery failures into log lines an outage cannot flood: per trigger, the first failure at
 * once (it carries the reason someone has to act on), then at most one still-failing line per
 * interval with counts, and one line when it recovers. A down function once produced half a million
 * lines in three minutes when every attempt logged.
 *
 * Pure apart from the clock: the caller owns the timer that calls flush, and where lines go.
 */
export class FailureSummary {
  private readonly failing = new Map<string, FailingTrigger>();
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly emit: (line: SummaryLine) => void;

  /**
   * `now` only ever measures durations, so the default is monotonic: a wall-clock step back would
   * otherwise silence a trigger's summaries until the clock caught up.
   */
  constructor(options: { intervalMs: number; now?: () => number; emit: (line: SummaryLine) => void }) {
    // NaN would compare false forever and silently drop every summary after the first failure.
    if (!(options.intervalMs >= 0)) throw new RangeError(`intervalMs must be a non-negative number, got ${options.intervalMs}`);
    this.intervalMs = options.intervalMs;
    this.now = options.now ?? (() => performance.now());
    this.emit = options.emit;
  }

  /** A delivery attempt failed: logged at once if the trigger was healthy, otherwise counted for the next summary. */
  failed(record: FailureRecord): void {
    const state = this.failing.get(record.trigger);
    if (state === undefined) {
      const now = this.now();
      this.failing.set(record.trigger, { since: now, lastLineAt: now, failures: 0, retries: 0, parked: 0, deadLettered: 0, lastReason: record.reason, lastStatus: record.status });
      const { trigger, reason, status, outcome } = record;
      this.emit({ kind: 'first-failure', trigger, reason, ...(status !== undefined && { status }), outcome });
      return;
    }
    state.failures += 1;
    state[COUNTED_AS[record.outcome]] += 1;
    state.lastReason = record.reason;
    state.lastStatus = record.status;
  }

  /** A delivery succeeded. Called for every delivered batch, so a healthy trigger costs one Map lookup. */
  succeeded(trigger: string): void {
    const state = this.failing.get(trigger);
    if (state === undefined) return;
    this.failing.delete(trigger);
    this.emit({ kind: 'recovered', trigger, ...counts(state), failingForMs: this.now() - state.since });
  }

  /**
   * Emits a still-failing line for each trigger that failed since its last line, once the interval
   * has passed since that line. Quiet failing triggers stay failing: only a success ends the run.
   */
  flush(): void {
    if (this.failing.size === 0) return;
    const now = this.now();
    for (const [trigger, state] of this.failing) {
      const sinceLastLine = now - state.lastLineAt;
      if (state.failures === 0 || sinceLastLine < this.intervalMs) continue;
      const line: SummaryLine = {
        kind: 'still-failing',
        trigger,
        ...counts(state),
        lastReason: state.lastReason,
        ...(state.lastStatus !== undefined && { lastStatus: state.lastStatus }),
        failingForMs: now - state.since,
        intervalMs: sinceLastLine,
      };
      // Reset before emitting so that an emit that throws cannot get the same counts reported twice.
      state.lastLineAt = now;
      state.failures = state.retries = state.parked = state.deadLettered = 0;
      this.emit(line);
    }
  }

  /** The trigger was removed by a config reload: its failures end without a recovered line. */
  forget(trigger: string): void {
    this.failing.delete(trigger);
  }
}

function counts(state: Counts): Counts {
  return { failures: state.failures, retries: state.retries, parked: state.parked, deadLettered: state.deadLettered };
}
