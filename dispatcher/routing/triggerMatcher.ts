import type { EventTriggerResource, OperationT } from '../../api/v1alpha1/index.js';
import { resourceKey } from '../../api/v1alpha1/index.js';
import { type CompiledFilter, compileFilter, FilterEvaluationError, type FilterInput, InvalidFilterError } from './filter.js';

/** A row change as routing sees it. */
export interface RoutableChange extends FilterInput {
  op: OperationT;
  schema: string;
  table: string;
  /**
   * Whether a column's value differs between old and new; undefined when it cannot be told
   * (no full old row because the table lacks REPLICA IDENTITY FULL).
   */
  columnChanged(column: string): boolean | undefined;
}

/** A trigger prepared for matching: its filter compiled once. */
export interface Route {
  readonly key: string;
  readonly trigger: EventTriggerResource;
  readonly filter?: CompiledFilter;
}

/** Why a change matched a route: a plain match, or a filter that could not be evaluated (dead-lettered, never dropped). */
export type RouteMatch = { route: Route; filterError?: string };

/** Prepares one trigger for matching: compiles its filter; throws naming the trigger when it does not compile. */
export function buildRoute(trigger: EventTriggerResource): Route {
  const key = resourceKey(trigger.metadata);
  try {
    return { key, trigger, ...(trigger.spec.filter ? { filter: compileFilter(trigger.spec.filter) } : {}) };
  } catch (error) {
    throw new InvalidFilterError(`EventTrigger ${key}: invalid spec.filter: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
}

/** Compiles every trigger's filter; throws on the first invalid one, naming the trigger. */
export function buildRoutes(triggers: EventTriggerResource[]): Route[] {
  return triggers.map(buildRoute);
}

/** The columns a route reads from its table: spec.columns and those its filter names. */
export function columnsRead(route: Route): string[] {
  return [...new Set([...(route.trigger.spec.columns ?? []), ...(route.filter?.columns ?? [])])];
}

/** Whether an update touched one of the trigger's watched columns; unknown counts as touched so nothing is lost. */
function touchesWatchedColumns(route: Route, change: RoutableChange): boolean {
  const watched = route.trigger.spec.columns;
  if (!watched || change.op !== 'update') return true;
  return watched.some((column) => change.columnChanged(column) !== false);
}

/** Picks the routes a change fires, in trigger order. Pure. */
export function matchRoutes(routes: readonly Route[], change: RoutableChange): RouteMatch[] {
  const matches: RouteMatch[] = [];
  for (const route of routes) {
    const spec = route.trigger.spec;
    if (spec.table.schema !== change.schema || spec.table.name !== change.table) continue;
    if (!spec.operations.includes(change.op)) continue;
    if (!touchesWatchedColumns(route, change)) continue;
    if (route.filter && change.op !== 'truncate') {
      try {
        if (!route.filter.matches(change)) continue;
      } catch (error) {
        if (!(error instanceof FilterEvaluationError)) throw error;
        matches.push({ route, filterError: error.message });
        continue;
      }
    }
    matches.push({ route });
  }
  return matches;
}

/** The distinct tables the routes read, for the publication. */
export function routedTables(routes: readonly Route[]): { schema: string; name: string }[] {
  const seen = new Map<string, { schema: string; name: string }>();
  for (const { trigger } of routes) seen.set(`${trigger.spec.table.schema}.${trigger.spec.table.name}`, trigger.spec.table);
  return [...seen.values()].sort((a, b) => `${a.schema}.${a.name}`.localeCompare(`${b.schema}.${b.name}`));
}
