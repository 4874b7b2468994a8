import { controllerOf } from '../ownerRefs.js';

/** The `namespace/name` key of the Function that controls a child object (its Deployment or Service), if one does. */
export function functionKeyOfChild(obj: { metadata?: { namespace?: string; ownerReferences?: { kind: string; name: string; controller?: boolean }[] } }): string | undefined {
  const fn = controllerOf(obj.metadata as Parameters<typeof controllerOf>[0], 'Function');
  return fn ? `${obj.metadata?.namespace ?? ''}/${fn.name}` : undefined;
}

/** The `namespace/name` key of the Function a trigger delivers to, if it names one. */
export function functionKeyOfTrigger(trigger: { metadata?: { namespace?: string }; spec?: unknown }): string | undefined {
  const name = (trigger.spec as { function?: { name?: unknown } } | undefined)?.function?.name;
  return typeof name === 'string' ? `${trigger.metadata?.namespace ?? 'default'}/${name}` : undefined;
}
