import { createHash } from 'node:crypto';
import type { EventTriggerResource, ManifestSet } from '../api/v1alpha1/index.js';
import { secretEnvName } from '../common/secretEnv.js';
import { retryConfigFromDelivery } from './delivery/retryRules.js';
import type { TriggerDelivery } from './pipeline/deliveryAttempt.js';
import { buildRoutes, type Route } from './routing/triggerMatcher.js';
import type { DispatchSettings } from './settings.js';
import { SourceProblemError } from './source/sourceSetup.js';
import { resolveTarget } from './targets.js';

/** The triggers a dispatcher serves, resolved and checked. */
export interface ServedConfig {
  routes: Route[];
  deliveries: Map<string, TriggerDelivery>;
  fingerprint: string;
}

/** The slot and publication the triggers (or flags) name. */
export function sourceNames(triggers: EventTriggerResource[], settings: Pick<DispatchSettings, 'slotName' | 'publicationName'>): { slot: string; publication: string } {
  const slots = new Set(triggers.map((t) => t.spec.source.slotName).filter((s): s is string => !!s));
  if (slots.size > 1) throw new SourceProblemError([`the triggers name different slots (${[...slots].join(', ')}); one dispatcher serves one slot`]);
  const slot = settings.slotName ?? [...slots][0] ?? 'eventide';
  const pubs = new Set(triggers.map((t) => t.spec.source.publicationName).filter((s): s is string => !!s));
  return { slot, publication: settings.publicationName ?? [...pubs][0] ?? slot };
}

/** Resolves triggers into routes and delivery targets; throws naming the first trigger it cannot serve. */
export function resolveConfig(manifests: ManifestSet, settings: Pick<DispatchSettings, 'functionUrls' | 'functionUrlTemplate'>, env: NodeJS.ProcessEnv): ServedConfig {
  const routes = buildRoutes(manifests.triggers);
  const deliveries = new Map<string, TriggerDelivery>();
  for (const route of routes) {
    const spec = route.trigger.spec;
    const target = resolveTarget(route.trigger, settings.functionUrls, settings.functionUrlTemplate);
    const delivery: TriggerDelivery = { key: route.key, trigger: route.trigger, url: target.url, retry: retryConfigFromDelivery(spec.delivery) };
    const ref = spec.delivery.signingSecretRef;
    if (ref) {
      const secret = env[secretEnvName(ref)];
      if (!secret) throw new SourceProblemError([`EventTrigger ${route.key}: signing secret ${ref.name}/${ref.key} is not set (environment variable ${secretEnvName(ref)})`]);
      delivery.signingSecret = secret;
    }
    if (spec.delivery.deadLetterSink) delivery.deadLetterSinkUrl = spec.delivery.deadLetterSink.url;
    deliveries.set(route.key, delivery);
  }
  const fingerprint = createHash('sha256').update(JSON.stringify(manifests.triggers.map((t) => [t.metadata, t.spec]))).digest('hex');
  return { routes, deliveries, fingerprint };
}

