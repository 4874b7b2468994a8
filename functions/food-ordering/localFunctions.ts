/**
 * The Functions of a manifest set run on a laptop as the operator runs them in a cluster: per Function a
 * stable address standing in for its Service (LocalService), replicas kept at a count (LocalDeployment),
 * and, for a Function with spec.scale, that count decided from the dispatcher's demand (LocalScaler).
 * A Function without spec.scale runs spec.replicas replicas (1 when unset, as a new Deployment does).
 */
import type { FunctionResource } from '../../api/v1alpha1/resources.js';
import { resourceKey } from '../../api/v1alpha1/resources.js';
import type { ScaleSpec } from '../../operator/function/scaleDecision.js';
import { type DeploymentStatus, LocalDeployment, nodeReplicaLauncher } from './localDeployment.js';
import type { LocalProcesses } from './localProcesses.js';
import { type LocalScaleOverrides, LocalScaler, scaleSpecOf } from './localScaler.js';
import { LocalService } from './localService.js';

/** One Function run locally. */
export interface LocalFunction {
  /** `namespace/name`. */
  key: string;
  name: string;
  /** The decider's spec, for a Function with spec.scale. */
  scale?: ScaleSpec;
  service: LocalService;
  deployment: LocalDeployment;
}

export interface LocalFunctionsOptions {
  functions: readonly FunctionResource[];
  processes: LocalProcesses;
  /** The node arguments that run the Function named `name`. */
  args: (name: string) => string[];
  /** Environment of every replica (PORT is set per replica). */
  env: NodeJS.ProcessEnv;
  overrides?: LocalScaleOverrides;
  /** Once aborted, no replica is started or replaced (Ctrl-C has reached them). */
  signal?: AbortSignal;
}

/** Every Function of the demo, its Service, replicas and autoscaling. */
export class LocalFunctions {
  private scaler: LocalScaler | undefined;

  private constructor(readonly functions: readonly LocalFunction[]) {}

  /** Reserves each Function's address and starts its minimum replicas (none at min 0). */
  static async start(options: LocalFunctionsOptions): Promise<LocalFunctions> {
    const functions: LocalFunction[] = [];
    for (const resource of options.functions) {
      const key = resourceKey(resource.metadata);
      const name = resource.metadata.name;
      const service = await LocalService.reserve(key);
      const launch = nodeReplicaLauncher(options.processes, { name, args: options.args(name), env: options.env, readinessPath: resource.spec.readinessPath });
      const deployment = new LocalDeployment(service, launch, options.signal);
      const scale = resource.spec.scale ? scaleSpecOf(resource.spec.scale, options.overrides) : undefined;
      deployment.scaleTo(scale ? scale.min : (resource.spec.replicas ?? 1));
      functions.push({ key, name, service, deployment, ...(scale ? { scale } : {}) });
    }
    return new LocalFunctions(functions);
  }

  /** The dispatcher's `--function-url` flags: each Function at its stable address. */
  functionUrlFlags(): string[] {
    return this.functions.flatMap((fn) => ['--function-url', `${fn.key}=${fn.service.url}`]);
  }

  /** Starts deciding the replicas of the Functions with spec.scale from the dispatcher's GET /state. */
  startScaling(stateUrl: string, intervalMs = 1000): void {
    const scaled = this.functions.flatMap((fn) => (fn.scale ? [{ key: fn.key, spec: fn.scale, target: fn.deployment }] : []));
    this.scaler = new LocalScaler(scaled, { stateUrl, intervalMs });
    this.scaler.start();
  }

  /** Each Function's replicas, by name. */
  status(): Map<string, DeploymentStatus> {
    return new Map(this.functions.map((fn) => [fn.name, fn.deployment.status()]));
  }

  /** Whether every Function that scales is at zero replicas, none of them still leaving. */
  scaledToZero(): boolean {
    return this.functions.every((fn) => !fn.scale || (fn.deployment.desired === 0 && fn.deployment.status().running === 0 && !fn.service.listening));
  }

  /** What is wrong now, for the live view: the scaler's reading, a Service that cannot listen. */
  problems(): string[] {
    return [...(this.scaler?.problem ? [this.scaler.problem] : []), ...this.functions.flatMap((fn) => (fn.service.problem ? [`${fn.key}: ${fn.service.problem}`] : []))];
  }

  /** Stops deciding; then, once the dispatcher is stopped, `stop()`. */
  async stopScaling(): Promise<void> {
    await this.scaler?.stop();
  }

  /** Retires every replica (each finishes its requests first) and closes every address. */
  async stop(): Promise<void> {
    await this.stopScaling();
    await Promise.all(this.functions.map((fn) => fn.deployment.stop()));
    await Promise.all(this.functions.map((fn) => fn.service.close()));
  }
}
