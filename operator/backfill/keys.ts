import type { StoredBackfill, StoredEventTrigger } from '../cache.js';
import type { InformerEvent } from '../informer.js';

/**
 * Which keys a change concerns, for the informer handlers (they map each event to keys and only
 * enqueue). They sit beside the Backfill reconciler, which reads the same fields.
 */

/** The EventTrigger a stored Backfill names, read leniently (the spec may be invalid). */
export function triggerNameOf(backfill: StoredBackfill): string | undefined {
  const name = (backfill.spec as { trigger?: { name?: unknown } } | undefined)?.trigger?.name;
  return typeof name === 'string' && name.length > 0 ? name : undefined;
}

/** The `namespace/name` keys of the Backfills that name this trigger (its change changes their status). */
export function backfillKeysOfTrigger(backfills: readonly StoredBackfill[], trigger: StoredEventTrigger): string[] {
  const name = trigger.metadata?.name;
  const namespace = trigger.metadata?.namespace ?? '';
  return backfills.filter((b) => b.metadata?.namespace === namespace && triggerNameOf(b) === name).map((b) => `${namespace}/${b.metadata?.name ?? ''}`);
}

/** What of a Backfill its trigger's dispatcher config depends on. */
interface Seen {
  trigger: string | undefined;
  generation: number | undefined;
}

/**
 * The EventTriggers whose dispatcher config a Backfill change touches: the trigger it names (and the one
 * it named before) when it appears, goes, or its spec changes. A status write (the dispatcher's counts,
 * every second while it runs) changes neither, and wakes no trigger. Remembers what it last saw of
 * each Backfill, which is why it is a class and not a function.
 */
export class BackfillTriggerIndex {
  private readonly seen = new Map<string, Seen>();

  triggerKeys(event: InformerEvent, backfill: StoredBackfill): string[] {
    const namespace = backfill.metadata?.namespace ?? '';
    const id = `${namespace}/${backfill.metadata?.name ?? ''}`;
    const before = this.seen.get(id);
    const now: Seen = { trigger: triggerNameOf(backfill), generation: backfill.metadata?.generation };
    if (event === 'delete') this.seen.delete(id);
    else this.seen.set(id, now);
    if (event === 'update' && before && before.trigger === now.trigger && before.generation === now.generation) return [];
    const names = new Set([before?.trigger, now.trigger].filter((n): n is string => n !== undefined));
    return [...names].map((name) => `${namespace}/${name}`);
  }
}
