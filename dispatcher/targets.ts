import type { EventTriggerResource } from '../api/v1alpha1/index.js';
import { resourceKey } from '../api/v1alpha1/index.js';
import { EventideError } from '../common/errors.js';

/** Where a trigger's events go. */
export interface DeliveryTarget {
  url: string;
  /** "function <ns>/<name>" or "sink", for logs and status. */
  describe: string;
}

/** A trigger whose destination cannot be resolved; names the trigger and the fix. */
export class UnresolvedTargetError extends EventideError {
  override readonly code = 'EVENTIDE_UNRESOLVED_TARGET';
  override readonly name = 'UnresolvedTargetError';
}

/**
 * Resolves a trigger to the URL its events are POSTed to. Pure: a `sink` is used as is; a `function`
 * is looked up in the local map (by namespace/name, then name) or filled into the cluster template.
 */
export function resolveTarget(trigger: EventTriggerResource, functionUrls: ReadonlyMap<string, string>, template: string | undefined): DeliveryTarget {
  const { sink, function: fn } = trigger.spec;
  if (sink) return { url: sink.url, describe: 'sink' };
  if (!fn) throw new UnresolvedTargetError(`EventTrigger ${resourceKey(trigger.metadata)}: set spec.function or spec.sink`);
  const namespace = trigger.metadata.namespace ?? 'default';
  const url = functionUrls.get(`${namespace}/${fn.name}`) ?? functionUrls.get(fn.name) ?? template?.replaceAll('{name}', fn.name).replaceAll('{namespace}', namespace);
  if (!url) {
    throw new UnresolvedTargetError(`EventTrigger ${resourceKey(trigger.metadata)}: function "${fn.name}" has no URL: pass --function-url ${fn.name}=http://host:port`);
  }
  return { url, describe: `function ${namespace}/${fn.name}` };
}
