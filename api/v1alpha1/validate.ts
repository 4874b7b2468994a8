import { parse as parseCel } from '@marcbachmann/cel-js';
import type { TSchema } from '@sinclair/typebox';
import { Value, type ValueError, ValueErrorType } from '@sinclair/typebox/value';
import { EventideError } from '../../common/errors.js';
import { DURATION_PATTERN } from './duration.js';
import type { BackfillResource, EventideResource, EventTriggerResource, FunctionResource } from './resources.js';
import { API_VERSION, BackfillSpec, type CrossFieldRule, EventTriggerSpec, eventTriggerRules, FunctionSpec, functionRules } from './schema.js';

/** A resource that fails validation; `problems` name each field and what is wrong with it. */
export class InvalidResourceError extends EventideError {
  override readonly code = 'EVENTIDE_INVALID_RESOURCE';
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
  return [prefix, ...parts]
    .map((p, i) => (i > 0 && /^\d+$/.test(p) ? `[${p}]` : p))
    .join('.')
    .replace(/\.\[/g, '[');
}

/** A value as a user wrote it, short enough for one line. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** TypeBox's message in the user's terms: what the field accepts and what it got. */
function schemaMessage(e: ValueError): string {
  if (e.type === ValueErrorType.ObjectRequiredProperty) return 'required field is missing';
  const options = (e.schema as { anyOf?: { const?: unknown }[] }).anyOf;
  let expected = e.message;
  if (options?.every((o) => typeof o.const === 'string')) expected = `must be one of ${options.map((o) => o.const).join(', ')}`;
  else if ((e.schema as { pattern?: string }).pattern === DURATION_PATTERN) expected = 'must be a duration such as 500ms, 30s, 5m or 1h30m';
  return `${expected}, got ${shown(e.value)}`;
}

function schemaProblems(schema: TSchema, value: unknown, prefix: string): string[] {
  // One problem per field: a missing object is also "not an object", which says nothing more.
  const byPath = new Map<string, string>();
  for (const e of Value.Errors(schema, value)) {
    const path = fieldPath(prefix, e.path);
    if (!byPath.has(path)) byPath.set(path, `${path}: ${schemaMessage(e)}`);
  }
  return [...byPath.values(), ...unknownFields(schema, value, prefix)];
}

/**
 * Fields the schema does not define (a typo such as "filtr" would otherwise be dropped silently and
 * the trigger fire on every row), as `kubectl apply` rejects them with its default strict validation.
 */
function unknownFields(schema: TSchema, value: unknown, path: string): string[] {
  if (value === null || typeof value !== 'object') return [];
  if (Array.isArray(value)) {
    const items = (schema as { items?: TSchema }).items;
    return items ? value.flatMap((item, i) => unknownFields(items, item, `${path}[${i}]`)) : [];
  }
  const properties = (schema as { properties?: Record<string, TSchema> }).properties;
  if (!properties || (schema as { additionalProperties?: unknown }).additionalProperties === true) return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const childSchema = properties[key];
    if (childSchema) return unknownFields(childSchema, child, `${path}.${key}`);
    return [`${path}.${key}: unknown field (known here: ${Object.keys(properties).join(', ')})`];
  });
}

function ruleProblems<T>(rules: CrossFieldRule<T>[], value: T): string[] {
  return rules.filter((r) => !r.holds(value)).map((r) => r.message);
}

/** Returns a copy of `spec` with every schema default filled in, as the API server would. */
function withDefaults<T>(schema: TSchema, spec: unknown): T {
  return Value.Default(schema, structuredClone(spec ?? {})) as T;
}

/** Where in a CEL expression an error is: "column 12", or "line 2, column 5" for a multi-line one. */
function celPosition(source: string, error: unknown): string | undefined {
  const range = (error as { range?: { start?: unknown } }).range;
  const offset = typeof range?.start === 'number' ? range.start : undefined;
  if (offset === undefined) return undefined;
  const before = source.slice(0, offset).split('\n');
  const column = before[before.length - 1]!.length + 1;
  return source.includes('\n') ? `line ${before.length}, column ${column}` : `column ${column}`;
}

/** Compiles a filter to check its syntax; the message quotes the expression and says where it is wrong. */
export function filterProblem(filter: string | undefined): string | undefined {
  if (filter === undefined) return undefined;
  try {
    parseCel(filter);
    return undefined;
  } catch (error) {
    const summary = (error as { summary?: unknown }).summary;
    const reason = typeof summary === 'string' ? summary : (error as Error).message.split('\n')[0];
    const at = celPosition(filter, error);
    return `spec.filter: ${reason}${at ? ` at ${at}` : ''} of ${JSON.stringify(filter)}`;
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
  if (problems.length === 0) problems.push(...ruleProblems(functionRules, spec));
  if (problems.length) throw new InvalidResourceError(label, problems);
  return { ...(raw as object), spec } as FunctionResource;
}

/** Validates a Backfill manifest and fills in defaults; throws InvalidResourceError naming each bad field. */
export function parseBackfill(raw: Record<string, unknown>): BackfillResource {
  const label = `Backfill ${describe(raw)}`;
  const spec = withDefaults<BackfillResource['spec']>(BackfillSpec, raw.spec);
  const problems = [...checkMeta(raw, label), ...schemaProblems(BackfillSpec, spec, 'spec')];
  const filter = filterProblem(spec.filter);
  if (filter) problems.push(filter);
  if (problems.length) throw new InvalidResourceError(label, problems);
  return { ...(raw as object), spec } as BackfillResource;
}

/** Parses any eventide resource by its kind. */
export function parseResource(raw: Record<string, unknown>): EventideResource {
  switch (raw.kind) {
    case 'EventTrigger':
      return parseEventTrigger(raw);
    case 'Function':
      return parseFunction(raw);
    case 'Backfill':
      return parseBackfill(raw);
    default:
      throw new InvalidResourceError(describe(raw), [`kind: expected Function, EventTrigger or Backfill, got ${String(raw.kind)}`]);
  }
}

function describe(raw: Record<string, unknown>): string {
  const meta = (raw.metadata ?? {}) as { name?: string; namespace?: string };
  return `${meta.namespace ?? 'default'}/${meta.name ?? '<unnamed>'}`;
}
