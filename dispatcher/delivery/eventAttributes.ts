import type { RowOperation } from '../../api/v1alpha1/index.js';

/** The trigger a source names: its namespace (default when unset) and name. */
interface TriggerIdentity {
  metadata: { namespace?: string; name: string };
}

const sources = new WeakMap<TriggerIdentity, string>();

/**
 * The CloudEvents `source` of a trigger's events, `/eventide/<namespace>/<name>`. Every event carries
 * it, so it is made once per trigger resource (a reload brings new objects, hence new entries).
 */
export function eventSource(trigger: TriggerIdentity): string {
  let source = sources.get(trigger);
  if (source === undefined) {
    source = `/eventide/${trigger.metadata.namespace ?? 'default'}/${trigger.metadata.name}`;
    sources.set(trigger, source);
  }
  return source;
}

const TYPES: { [Op in RowOperation]: `dev.eventide.row.${Op}` } = {
  insert: 'dev.eventide.row.insert',
  update: 'dev.eventide.row.update',
  delete: 'dev.eventide.row.delete',
  truncate: 'dev.eventide.row.truncate',
  manual: 'dev.eventide.row.manual',
  read: 'dev.eventide.row.read',
};

/** The CloudEvents `type` of a row event: `dev.eventide.row.<op>`. */
export function eventType<Op extends RowOperation>(op: Op): `dev.eventide.row.${Op}` {
  return TYPES[op];
}
