import { createHash } from 'node:crypto';
import { type BackfillResource, type EventTriggerResource, type InvalidManifest, type ManifestSet, parseDuration, resourceKey } from '../api/v1alpha1/index.js';
import { secretEnvName } from '../common/secretEnv.js';
import { combineProblems, type TriggerProblem } from './admission/triggerProblem.js';
import { retryConfigFromDelivery } from './delivery/retryRules.js';
import type { TriggerDelivery } from './pipeline/deliveryAttempt.js';
import { buildRoute, type Route } from './routing/triggerMatcher.js';
import type { DispatchSettings } from './settings.js';
import { resolveTarget, UnresolvedTargetError } from './targets.js';

/** A trigger the dispatcher does not serve now, and which generation of it was looked at. */
export interface SetAsideTrigger {
  problem: TriggerProblem;
  generation?: number;
}

/** The slot and publication a dispatcher reads. */
export interface SourceNames {
  slot: string;
  publication: string;
}

/** The triggers a dispatcher serves, resolved and checked; those it cannot serve, with why. */
export interface ServedConfig {
  routes: Route[];
  deliveries: Map<string, TriggerDelivery>;
  setAside: Map<string, SetAsideTrigger>;
  /** Deliveries in flight a Function accepts across all its triggers (`Function.spec.concurrency`), by `namespace/name`. */
  functionLimits: Map<string, number>;
  /** How long a Function's events wait for it to have a ready pod (`Function.spec.scale.activationTimeout`), by `namespace/name`. */
  activationTimeouts: Map<string, number>;
  names: SourceNames;
  /** The Backfill resources of the manifests, and those that failed validation. */
  backfills: BackfillResource[];
  invalidBackfills: InvalidManifest[];
  /** Changes whenever the manifests do: a reload with the same fingerprint is a no-op. */
  fingerprint: string;
}

/**
 * The slot and publication: the flags, else the first trigger (by namespace/name) that names one, else
 * "eventide". Triggers naming another slot are set aside by resolveConfig: one dispatcher reads one slot.
 */
export function sourceNames(triggers: readonly EventTriggerResource[], settings: Pick<DispatchSettings, 'slotName' | 'publicationName'>): SourceNames {
  const sorted = [...triggers].sort((a, b) => resourceKey(a.metadata).localeCompare(resourceKey(b.metadata)));
  const slot = settings.slotName ?? sorted.find((t) => t.spec.source.slotName)?.spec.source.slotName ?? 'eventide';
  const publication = settings.publicationName ?? sorted.find((t) => t.spec.source.publicationName)?.spec.source.publicationName ?? slot;
  return { slot, publication };
}

/** The problem that keeps one trigger from being served, judged by the trigger alone (no database). */
function triggerProblem(
  trigger: EventTriggerResource,
  names: SourceNames,
  settings: Pick<DispatchSettings, 'functionUrls' | 'functionUrlTemplate'>,
  env: NodeJS.ProcessEnv,
): TriggerProblem | undefined {
  const key = resourceKey(trigger.metadata);
  const problems: TriggerProblem[] = [];
  const { slotName, publicationName } = trigger.spec.source;
  if ((slotName && slotName !== names.slot) || (publicationName && publicationName !== names.publication)) {
    problems.push({
      reason: 'SlotConflict',
      message: `EventTrigger ${key} names slot "${slotName ?? names.slot}" / publication "${publicationName ?? names.publication}", but this dispatcher reads "${names.slot}" / "${names.publication}"; one dispatcher serves one slot: give the triggers of a source the same names, or none`,
    });
  }
  try {
    resolveTarget(trigger, settings.functionUrls, settings.functionUrlTemplate);
  } catch (error) {
    if (!(error instanceof UnresolvedTargetError)) throw error;
    problems.push({ reason: 'UnresolvedTarget', message: error.message });
  }
  const ref = trigger.spec.delivery.signingSecretRef;
  if (ref && !env[secretEnvName(ref)]) {
    problems.push({
      reason: 'SigningSecretMissing',
      message: `EventTrigger ${key}: signing secret ${ref.name}/${ref.key} is not set (environment variable ${secretEnvName(ref)})`,
    });
  }
  return combineProblems(problems);
}

/**
 * Resolves each trigger into a route and a delivery target on its own: one that cannot be served
 * (an invalid manifest, a filter that does not compile, no URL, a missing secret, another slot) is set
 * aside with its reason and the others are served. Pure.
 */
export function resolveConfig(manifests: ManifestSet, settings: Pick<DispatchSettings, 'functionUrls' | 'functionUrlTemplate' | 'slotName' | 'publicationName'>, env: NodeJS.ProcessEnv): ServedConfig {
  const names = sourceNames(manifests.triggers, settings);
  const routes: Route[] = [];
  const deliveries = new Map<string, TriggerDelivery>();
  const setAside = new Map<string, SetAsideTrigger>();
  for (const invalid of manifests.invalid) {
    if (invalid.kind !== 'EventTrigger' || !invalid.key) continue;
    const filterOnly = invalid.problems.every((p) => p.startsWith('spec.filter'));
    setAside.set(invalid.key, {
      problem: { reason: filterOnly ? 'InvalidFilter' : 'InvalidSpec', message: invalid.message },
      ...(invalid.generation !== undefined ? { generation: invalid.generation } : {}),
    });
  }
  for (const trigger of manifests.triggers) {
    const key = resourceKey(trigger.metadata);
    const generation = trigger.metadata.generation;
    let problem = triggerProblem(trigger, names, settings, env);
    let route: Route | undefined;
    if (!problem) {
      try {
        route = buildRoute(trigger);
      } catch (error) {
        problem = { reason: 'InvalidFilter', message: (error as Error).message };
      }
    }
    if (problem || !route) {
      setAside.set(key, { problem: problem!, ...(generation !== undefined ? { generation } : {}) });
      continue;
    }
    const spec = trigger.spec;
    const target = resolveTarget(trigger, settings.functionUrls, settings.functionUrlTemplate);
    const delivery: TriggerDelivery = { key, trigger, url: target.url, retry: retryConfigFromDelivery(spec.delivery) };
    const fn = functionKeyOf(trigger);
    if (fn !== undefined) delivery.functionKey = fn;
    const ref = spec.delivery.signingSecretRef;
    if (ref) delivery.signingSecret = env[secretEnvName(ref)]!;
    if (spec.delivery.deadLetterSink) delivery.deadLetterSinkUrl = spec.delivery.deadLetterSink.url;
    routes.push(route);
    deliveries.set(key, delivery);
  }
  const functionLimits = new Map<string, number>();
  const activationTimeouts = new Map<string, number>();
  for (const fn of manifests.functions) {
    if (fn.spec.concurrency !== undefined) functionLimits.set(resourceKey(fn.metadata), fn.spec.concurrency);
    if (fn.spec.scale) activationTimeouts.set(resourceKey(fn.metadata), parseDuration(fn.spec.scale.activationTimeout));
  }
  const fingerprint = createHash('sha256')
    .update(
      JSON.stringify([
        manifests.triggers.map((t) => [t.metadata, t.spec]),
        manifests.functions.map((f) => [f.metadata, f.spec.concurrency, f.spec.scale]),
        manifests.backfills.map((b) => [b.metadata, b.spec]),
        manifests.invalid,
      ]),
    )
    .digest('hex');
  const invalidBackfills = manifests.invalid.filter((i) => i.kind === 'Backfill');
  return { routes, deliveries, setAside, functionLimits, activationTimeouts, names, backfills: manifests.backfills, invalidBackfills, fingerprint };
}

/** The config with these triggers set aside too (problems found in the database). Pure. */
export function withProblems(config: ServedConfig, problems: ReadonlyMap<string, TriggerProblem>): ServedConfig {
  if (problems.size === 0) return config;
  const setAside = new Map(config.setAside);
  const deliveries = new Map(config.deliveries);
  for (const [key, problem] of problems) {
    const generation = config.deliveries.get(key)?.trigger.metadata.generation;
    setAside.set(key, { problem, ...(generation !== undefined ? { generation } : {}) });
    deliveries.delete(key);
  }
  return { ...config, routes: config.routes.filter((r) => !problems.has(r.key)), deliveries, setAside };
}

/** The function a trigger delivers to, as `namespace/name` (its concurrency limit's key); none for a sink. */
export function functionKeyOf(trigger: EventTriggerResource): string | undefined {
  const fn = trigger.spec.function;
  return fn ? `${trigger.metadata.namespace ?? 'default'}/${fn.name}` : undefined;
}
