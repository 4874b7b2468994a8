import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { EventTriggerSpec, FunctionSpec, eventTriggerRules, type CrossFieldRule, API_VERSION } from './schema.js';
import type { EventTriggerResource, FunctionResource, EventideResource } from './resources.js';
import { parse as parseCel } from '@marcbachmann/cel-js';

/** A resource that fails validation; `problems` name each field and what is wrong with it. */
export class InvalidResourceError extends Error {
  readonly code = 'EVENTIDE_INVALID_RESOURCE';
  override readonly name = 'InvalidResourceError';
  constructor(
    readonly resource: string,
    readonly problems: string[],
  ) {
    super(`${resource} is invalid: ${problems.join('; ')}`);
  }
}

/** JSON pointer "/spec/delivery/retries" -> "spec.delivery.retries", the form kubectl prints. */
function fieldPath(prefix: string, pointer: string): string {
  const parts = pointer.split('/').filter(Boolean);
  return [prefix, ...parts].map((p, i) => (i > 0 && /^\d+$/.test(p) ? `[${p}]` : p)).join('.').replace(/\.\[/g, '[');
}

function schemaProblems(schema: TSchema, value: unknown, prefix: string): string[] {
  return [...Value.Errors(schema, value)].map((e) => `${fieldPath(prefix, e.path)}: ${e.message}`);
}

function ruleProblems<T>(rules: CrossFieldRule<T>[], value: T): string[] {
  return rules.filter((r) => !r.holds(value)).map((r) => r.message);
}

/** Returns a copy of `spec` with every schema default filled in, as the API server would. */
function withDefaults<T>(schema: TSchema, spec: unknown): T {
  return Value.Default(schema, structuredClone(spec ?? {})) as T;
}

/** Compiles a filter to check its syntax; the error message says where the expression is wrong. */
export function filterProblem(filter: string | undefined): string | undefined {
  if (filter === undefined) return undefined;
  try {
    parseCel(filter);
    return undefined;
  } catch (error) {
    return `spec.filter: ${(error as Error).message.split('\n')[0]}`;
  }
}

function checkMeta(raw: Record<string, unknown>, label: string): string[] {
  const problems: string[] = [];
  if (raw.apiVersion !== API_VERSION) problems.push(`apiVersion: expected ${API_VERSION}, got ${String(raw.apiVersion)}`);
  const meta = raw.metadata as { name?: unknown } | undefined;
  if (typeof meta?.name !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(meta.name)) {
    problems.push(`metadata.name: must be a DNS-1123 label (lower-case letters, digits, "-") in ${label}`);
  }
  return problems;
}

/** Validates an EventTrigger manifest and fills in defaults; throws InvalidResourceError naming each bad field. */
export function parseEventTrigger(raw: Record<string, unknown>): EventTriggerResource {
  const label = `EventTrigger ${describe(raw)}`;
  const spec = withDefaults<EventTriggerResource['spec']>(EventTriggerSpec, raw.spec);
  const problems = [...checkMeta(raw, label), ...schemaProblems(EventTriggerSpec, spec, 'spec')];
  if (problems.length === 0) problems.push(...ruleProblems(eventTriggerRules, spec));
  const filter = filterProblem(spec.filter);
  if (filter) problems.push(filter);
  if (problems.length) throw new InvalidResourceError(label, problems);
  return { ...(raw as object), spec } as EventTriggerResource;
}

/** Validates a Function manifest and fills in defaults; throws InvalidResourceError naming each bad field. */
export function parseFunction(raw: Record<string, unknown>): FunctionResource {
  const label = `Function ${describe(raw)}`;
  const spec = withDefaults<FunctionResource['spec']>(FunctionSpec, raw.spec);
  const problems = [...checkMeta(raw, label), ...schemaProblems(FunctionSpec, spec, 'spec')];
  if (problems.length) throw new InvalidResourceError(label, problems);
  return { ...(raw as object), spec } as FunctionResource;
}

/** Parses any eventide resource by its kind. */
export function parseResource(raw: Record<string, unknown>): EventideResource {
  switch (raw.kind) {
    case 'EventTrigger':
      return parseEventTrigger(raw);
    case 'Function':
      return parseFunction(raw);
    default:
      throw new InvalidResourceError(describe(raw), [`kind: expected Function or EventTrigger, got ${String(raw.kind)}`]);
  }
}

function describe(raw: Record<string, unknown>): string {
  const meta = (raw.metadata ?? {}) as { name?: string; namespace?: string };
  return `${meta.namespace ?? 'default'}/${meta.name ?? '<unnamed>'}`;
}
