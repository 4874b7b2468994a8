import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { eventTriggerRules, functionRules, GROUP, VERSION } from '../../api/v1alpha1/schema.js';
import {
  buildCrds,
  CRD_OUTPUT_DIRS,
  type CustomResourceDefinition,
  GENERATED_HEADER,
  renderCrdFiles,
  type StructuralSchema,
  staleCrdFiles,
  toStructural,
  UnsupportedSchemaError,
} from '../../crds/generate.js';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

/** Keywords the API server rejects in a CRD schema, or that make it non-structural. */
const FORBIDDEN = ['$ref', '$schema', '$id', 'definitions', 'const', 'uniqueItems', 'anyOf', 'oneOf', 'allOf', 'not', 'patternProperties', 'additionalItems', 'dependencies'];

/** Every schema node with its path, depth first. */
function* nodes(schema: StructuralSchema, path = ''): Generator<[string, StructuralSchema]> {
  yield [path || '.', schema];
  for (const [name, child] of Object.entries(schema.properties ?? {})) yield* nodes(child, `${path}.${name}`);
  if (schema.items) yield* nodes(schema.items, `${path}[]`);
  if (typeof schema.additionalProperties === 'object') yield* nodes(schema.additionalProperties as StructuralSchema, `${path}.*`);
}

function crd(kind: string): CustomResourceDefinition {
  const found = buildCrds().find((c) => c.spec.names.kind === kind);
  if (!found) throw new Error(`no CRD for ${kind}`);
  return found;
}

function rootSchema(kind: string): StructuralSchema {
  return crd(kind).spec.versions[0]!.schema.openAPIV3Schema;
}

describe('generated CRD files', () => {
  it('are up to date in crds/ and charts/eventide/crds/ (run `npm run crds` after changing api/v1alpha1/schema.ts)', () => {
    expect(staleCrdFiles()).toEqual([]);
  });

  it('carry the generated header and parse back to exactly what buildCrds() returns', () => {
    const built = new Map(buildCrds().map((c) => [`${c.spec.group}_${c.spec.names.plural}.yaml`, c]));
    expect([...renderCrdFiles().keys()].sort()).toEqual(['eventide.dev_backfills.yaml', 'eventide.dev_eventtriggers.yaml', 'eventide.dev_functions.yaml']);
    for (const dir of CRD_OUTPUT_DIRS) {
      for (const [name, object] of built) {
        const text = readFileSync(join(REPO_ROOT, dir, name), 'utf8');
        expect(text.startsWith(GENERATED_HEADER)).toBe(true);
        expect(parse(text)).toEqual(object);
      }
    }
  });
});

describe('CRD shape', () => {
  const cases = [
    { kind: 'Function', plural: 'functions', shortName: 'fn', columns: ['Image', 'Ready', 'Reason', 'Desired', 'Replicas', 'Available', 'Scaling', 'Age'] },
    { kind: 'EventTrigger', plural: 'eventtriggers', shortName: 'et', columns: ['Table', 'Function/Sink', 'Ready', 'Reason', 'Suspended', 'Age'] },
    { kind: 'Backfill', plural: 'backfills', shortName: 'bf', columns: ['Trigger', 'Phase', 'Progress', 'Rows', 'Age'] },
  ];

  it.each(cases)('$kind is namespaced, $plural.$shortName, one served+storage version with a status subresource', ({ kind, plural, shortName, columns }) => {
    const c = crd(kind);
    expect(c.apiVersion).toBe('apiextensions.k8s.io/v1');
    expect(c.metadata.name).toBe(`${plural}.${GROUP}`);
    expect(c.spec.scope).toBe('Namespaced');
    expect(c.spec.names).toMatchObject({ kind, plural, shortNames: [shortName], categories: ['eventide'] });
    expect(c.spec.versions).toHaveLength(1);
    const version = c.spec.versions[0]!;
    expect(version).toMatchObject({ name: VERSION, served: true, storage: true, subresources: { status: {} } });
    // Functions scale through /scale (kubectl scale, HPA, KEDA); triggers do not.
    expect(version.subresources.scale).toEqual(kind === 'Function' ? { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } : undefined);
    // Priority-0 columns are what `kubectl get` shows by default.
    expect(version.additionalPrinterColumns.filter((col) => !col.priority).map((col) => col.name)).toEqual(columns);
    // A Backfill runs to completion, like a Job: its phase stands where the others show Ready.
    const ready = version.additionalPrinterColumns.find((col) => col.name === 'Ready');
    if (kind === 'Backfill') expect(ready).toBeUndefined();
    else expect(ready?.jsonPath).toBe('.status.conditions[?(@.type=="Ready")].status');
  });

  it("shows a Backfill's trigger, phase, progress and rows; the estimate and the message with -o wide", () => {
    const columns = crd('Backfill').spec.versions[0]!.additionalPrinterColumns.map(({ name, type, jsonPath, priority }) => ({ name, type, jsonPath, priority }));
    expect(columns).toEqual([
      { name: 'Trigger', type: 'string', jsonPath: '.spec.trigger.name', priority: undefined },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase', priority: undefined },
      { name: 'Progress', type: 'string', jsonPath: '.status.progress', priority: undefined },
      { name: 'Rows', type: 'integer', jsonPath: '.status.rowsRead', priority: undefined },
      { name: 'Estimate', type: 'integer', jsonPath: '.status.rowsEstimate', priority: 1 },
      { name: 'Message', type: 'string', jsonPath: '.status.message', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', priority: undefined },
    ]);
    const spec = rootSchema('Backfill').properties!.spec!;
    expect(spec.properties!.batchSize).toMatchObject({ type: 'integer', minimum: 1, maximum: 10000, default: 1000 });
    expect(spec.required).toEqual(['trigger']);
    expect(spec['x-kubernetes-validations']).toBeUndefined();
  });

  it.each(cases)('$kind has a structural schema: every node typed, no forbidden keywords', ({ kind }) => {
    for (const [path, node] of nodes(rootSchema(kind))) {
      const preserved = node['x-kubernetes-preserve-unknown-fields'] === true;
      expect(node.type !== undefined || preserved, `${kind} ${path} has no type`).toBe(true);
      for (const keyword of FORBIDDEN) expect(node, `${kind} ${path} uses ${keyword}`).not.toHaveProperty([keyword]);
      if (node.properties) expect(node, `${kind} ${path}: additionalProperties next to properties`).not.toHaveProperty(['additionalProperties']);
      for (const name of node.required ?? []) expect(node.properties, `${kind} ${path} requires unknown ${name}`).toHaveProperty([name]);
      // metadata is the exception: the API server validates it itself.
      if (path !== '.metadata' && node.type === 'object' && !node.properties && !preserved && node.additionalProperties === undefined) {
        throw new Error(`${kind} ${path}: an object with neither properties nor preserve-unknown-fields drops everything`);
      }
    }
  });

  it.each(cases)('$kind documents its spec fields for kubectl explain', ({ kind }) => {
    const spec = rootSchema(kind).properties!.spec!;
    expect(spec.description).toBeTruthy();
    const undocumented = Object.entries(spec.properties ?? {})
      .filter(([, s]) => !s.description)
      .map(([n]) => n);
    // Tolerate a few self-explanatory fields, but most must say what they do.
    expect(undocumented.length, `undocumented: ${undocumented.join(', ')}`).toBeLessThanOrEqual(2);
  });

  it('puts every EventTrigger cross-field rule on spec as a CEL validation with its message', () => {
    const spec = rootSchema('EventTrigger').properties!.spec!;
    expect(spec['x-kubernetes-validations']).toEqual(eventTriggerRules.map(({ rule, message }) => ({ rule, message })));
  });

  it("puts the Function's cross-field rules (replicas xor scale, min <= max) on spec as CEL, with spec.scale's defaults", () => {
    const spec = rootSchema('Function').properties!.spec!;
    expect(spec['x-kubernetes-validations']).toEqual(functionRules.map(({ rule, message }) => ({ rule, message })));
    expect(spec.properties!.scale!.properties).toMatchObject({
      min: { type: 'integer', default: 0 },
      max: { type: 'integer', default: 10 },
      target: { type: 'integer', default: 10 },
      scaleDownDelay: { type: 'string', default: '30s' },
      idleTimeout: { type: 'string', default: '1m' },
      activationTimeout: { type: 'string', default: '2m' },
    });
  });

  it('shows EventTrigger spec.suspend in kubectl get (a boolean column) and documents it, defaulted to false and not required', () => {
    const column = crd('EventTrigger').spec.versions[0]!.additionalPrinterColumns.find((col) => col.name === 'Suspended');
    expect(column).toMatchObject({ type: 'boolean', jsonPath: '.spec.suspend' });
    expect(column?.priority).toBeUndefined();
    const spec = rootSchema('EventTrigger').properties!.spec!;
    expect(spec.properties!.suspend).toMatchObject({ type: 'boolean', default: false });
    expect(spec.properties!.suspend!.description).toMatch(/eventide\.backlog/);
    expect(spec.properties!.suspend!.description).toMatch(/ Default: false\.$/);
    expect(spec.required).not.toContain('suspend');
  });

  it('keeps embedded Kubernetes objects (env, resources) as preserve-unknown-fields', () => {
    const spec = rootSchema('Function').properties!.spec!;
    expect(spec.properties!.env!.items!['x-kubernetes-preserve-unknown-fields']).toBe(true);
    expect(spec.properties!.resources!['x-kubernetes-preserve-unknown-fields']).toBe(true);
  });

  it('makes status conditions a list map keyed by type', () => {
    for (const kind of ['Function', 'EventTrigger', 'Backfill']) {
      const conditions = rootSchema(kind).properties!.status!.properties!.conditions!;
      expect(conditions).toMatchObject({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] });
    }
  });
});

describe('toStructural', () => {
  const cases: { name: string; given: Parameters<typeof toStructural>[0]; expect: StructuralSchema }[] = [
    {
      name: 'turns a union of string literals into an enum, keeping description and default',
      given: Type.Union([Type.Literal('a'), Type.Literal('b')], { default: 'a', description: 'Mode.' }),
      expect: { type: 'string', enum: ['a', 'b'], default: 'a', description: 'Mode. Default: a.' },
    },
    {
      name: 'drops additionalProperties: false next to properties',
      given: Type.Object({ x: Type.String() }, { additionalProperties: false }),
      expect: { type: 'object', properties: { x: { type: 'string' } }, required: ['x'] },
    },
    {
      name: 'does not require a field the API server defaults',
      given: Type.Object({ x: Type.Integer({ default: 1 }), y: Type.String(), z: Type.Optional(Type.String()) }),
      expect: {
        type: 'object',
        properties: { x: { type: 'integer', default: 1, description: 'Default: 1.' }, y: { type: 'string' }, z: { type: 'string' } },
        required: ['y'],
      },
    },
    {
      name: 'turns uniqueItems over scalars into a set-typed list',
      given: Type.Array(Type.String(), { uniqueItems: true, maxItems: 4 }),
      expect: { type: 'array', items: { type: 'string' }, maxItems: 4, 'x-kubernetes-list-type': 'set' },
    },
    {
      name: 'lends a list the description of its items when it has none',
      given: Type.Array(Type.String({ description: 'a name' })),
      expect: { type: 'array', description: 'a name', items: { type: 'string', description: 'a name' } },
    },
    {
      name: 'spells numeric exclusive bounds the OpenAPI v3.0 way',
      given: Type.Number({ exclusiveMinimum: 0 }),
      expect: { type: 'number', minimum: 0, exclusiveMinimum: true },
    },
    {
      name: 'keeps map-typed objects (additionalProperties with a schema)',
      given: Type.Record(Type.String(), Type.String()),
      expect: { type: 'object', additionalProperties: { type: 'string' } },
    },
  ];

  it.each(cases)('$name', ({ given, expect: expected }) => {
    expect(toStructural(given)).toEqual(expected);
  });

  const rejected = [
    { name: 'rejects a union of objects (not structural)', given: Type.Union([Type.Object({ a: Type.String() }), Type.Object({ b: Type.String() })]) },
    { name: 'rejects uniqueItems over objects', given: Type.Array(Type.Object({ a: Type.String() }), { uniqueItems: true }) },
    { name: 'rejects $id (references cannot be resolved in a CRD)', given: Type.String({ $id: 'x' }) },
    { name: 'rejects an untyped node', given: Type.Any() },
  ];

  it.each(rejected)('$name', ({ given }) => {
    expect(() => toStructural(given)).toThrow(UnsupportedSchemaError);
  });
});
