/**
 * The operator's autoscaler, for Functions run on a laptop: every second it reads the dispatcher's
 * GET /state, sums each Function's demand and decides its replicas with the very functions the operator
 * uses (operator/function/demand.ts, operator/function/scaleDecision.ts), then asks its LocalDeployment
 * for that count. Only the reading and the asking are local.
 */
import type { FunctionSpecT } from '../../api/v1alpha1/schema.js';
import { readDispatcherState } from '../../operator/eventtrigger/dispatcherStates.js';
import type { DispatcherReading } from '../../operator/eventtrigger/serving.js';
import { sumDemand } from '../../operator/function/demand.js';
import { decideScale, scaleSpecOf as operatorScaleSpec, type ScaleDecision, type ScaleMemory, type ScaleSpec } from '../../operator/function/scaleDecision.js';

/** A Function's spec.scale with its defaults applied. */
export type FunctionScale = NonNullable<FunctionSpecT['scale']>;

/** Local changes to a Function's spec.scale. */
export interface LocalScaleOverrides {
  /**
   * Replaces spec.scale.idleTimeout, and caps spec.scale.scaleDownDelay at it: a Function reaches zero
   * only once both have passed, so a shorter idle timeout alone would change nothing.
   */
  idleTimeoutMs?: number;
}

/** The operator's spec for a Function's spec.scale, with the demo's local overrides. Pure. */
export function scaleSpecOf(scale: FunctionScale, overrides: LocalScaleOverrides = {}): ScaleSpec {
  const spec = operatorScaleSpec(scale);
  if (overrides.idleTimeoutMs === undefined) return spec;
  return { ...spec, idleTimeoutMs: overrides.idleTimeoutMs, scaleDownDelayMs: Math.min(spec.scaleDownDelayMs, overrides.idleTimeoutMs) };
}

/** One decision for one Function from the local dispatcher's reading, as the operator makes it. Pure. */
export function decideLocalReplicas(input: {
  functionKey: string;
  spec: ScaleSpec;
  current: number;
  reading: DispatcherReading | undefined;
  memory: ScaleMemory;
  now: number;
  /** When the scaler started: like a new leader, it has seen no demand before. */
  since: number;
}): ScaleDecision {
  const summed = sumDemand(input.functionKey, [{ name: 'local', reading: input.reading }]);
  return decideScale({
    spec: input.spec,
    now: input.now,
    current: input.current,
    demand: 'unknown' in summed ? undefined : summed.demand,
    leadingSince: input.since,
    memory: input.memory,
  });
}

/** A Function the scaler sizes: its key in /state, its spec, and what sets its replicas. */
export interface ScaledFunction {
  /** `namespace/name`, as /state lists it. */
  key: string;
  spec: ScaleSpec;
  target: { readonly desired: number; scaleTo(replicas: number): void };
}

export interface LocalScalerOptions {
  /** The dispatcher's GET /state. */
  stateUrl: string;
  intervalMs?: number;
  now?: () => number;
}

/** Decides every Function's replicas once a second until stopped. */
export class LocalScaler {
  private readonly memories = new Map<string, ScaleMemory>();
  private readonly decisions = new Map<string, ScaleDecision>();
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly since: number;
  private timer: NodeJS.Timeout | undefined;
  private tick: Promise<void> = Promise.resolve();
  private stopped = false;
  private reading: DispatcherReading | undefined;
  private failure: string | undefined;

  constructor(
    private readonly functions: readonly ScaledFunction[],
    private readonly options: LocalScalerOptions,
  ) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.now = options.now ?? Date.now;
    this.since = this.now();
  }

  /** The last decision for a Function, with its reason. */
  lastDecision(key: string): ScaleDecision | undefined {
    return this.decisions.get(key);
  }

  /** Why the last round could not decide (the dispatcher did not answer), if it could not. */
  get problem(): string | undefined {
    return this.failure ?? (this.reading && 'error' in this.reading ? `cannot read the dispatcher's state: ${this.reading.error}` : undefined);
  }

  /** Decides now, then every interval. */
  start(): void {
    this.schedule(0);
  }

  /** Stops deciding; resolves once a decision under way has been applied. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.tick;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.tick = this.decideAll()
        .then(() => (this.failure = undefined))
        // A bug in a round must not end the loop: it shows as the scaler's problem, and the next round runs.
        .catch((error: unknown) => void (this.failure = `scaling failed: ${(error as Error).message}`))
        .finally(() => this.schedule(this.intervalMs));
    }, delayMs);
  }

  private async decideAll(): Promise<void> {
    this.reading = await readDispatcherState(this.options.stateUrl, this.intervalMs);
    if (this.stopped) return;
    const now = this.now();
    for (const fn of this.functions) {
      const decision = decideLocalReplicas({
        functionKey: fn.key,
        spec: fn.spec,
        current: fn.target.desired,
        reading: this.reading,
        memory: this.memories.get(fn.key) ?? { recent: [] },
        now,
        since: this.since,
      });
      this.memories.set(fn.key, decision.memory);
      this.decisions.set(fn.key, decision);
      if (decision.replicas !== fn.target.desired) fn.target.scaleTo(decision.replicas);
    }
  }
}
