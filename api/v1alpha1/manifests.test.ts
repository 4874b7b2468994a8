import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadManifests, ManifestError, parseManifestText } from './manifests.js';
import { InvalidResourceError } from './validate.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function dirWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'eventide-manifests-test-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const triggerYaml = (name: string) => `apiVersion: eventide.dev/v1alpha1
kind: EventTrigger
metadata: { name: ${name}, namespace: shop }
spec:
  source: { connectionSecretRef: { name: db } }
  table: { name: orders }
  sink: { url: "http://127.0.0.1:1/" }
`;

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('loading manifests: errors name the file', () => {
  it('malformed YAML: file and line', () => {
    const dir = dirWith({ 'good.yaml': triggerYaml('a'), 'bad.yaml': `${triggerYaml('b')}  columns: [total\n` });
    const error = errorOf(() => loadManifests([dir]));
    expect(error).toBeInstanceOf(ManifestError);
    expect(error.message).toMatch(new RegExp(`^${join(dir, 'bad.yaml')}: invalid YAML: .* at line \\d+, column \\d+`));
  });

  it('a YAML list or scalar instead of a resource', () => {
    expect(errorOf(() => parseManifestText('- a\n- b\n', 'list.yaml')).message).toBe('list.yaml: expected a YAML mapping (a resource with apiVersion and kind), got a list');
    expect(errorOf(() => parseManifestText('just text\n', 'text.yaml')).message).toBe('text.yaml: expected a YAML mapping (a resource with apiVersion and kind), got a string');
  });

  it('an invalid resource: the file, the resource and the field', () => {
    const error = errorOf(() => parseManifestText(triggerYaml('a').replace('table: { name: orders }', 'table: { name: orders }\n  delivery: { retries: three }'), 'triggers.yaml'));
    expect(error).toBeInstanceOf(InvalidResourceError);
    expect(error.message).toBe('triggers.yaml: EventTrigger shop/a is invalid: spec.delivery.retries: Expected integer, got "three"');
  });

  it('a suspend that is not a boolean (YAML 1.2 reads `yes` as a string)', () => {
    const error = errorOf(() => parseManifestText(triggerYaml('a').replace('table: { name: orders }', 'table: { name: orders }\n  suspend: yes'), 'triggers.yaml'));
    expect(error).toBeInstanceOf(InvalidResourceError);
    expect(error.message).toBe('triggers.yaml: EventTrigger shop/a is invalid: spec.suspend: Expected boolean, got "yes"');
  });

  it('a path that does not exist', () => {
    const dir = dirWith({});
    const error = errorOf(() => loadManifests([join(dir, 'missing.yaml')]));
    expect(error).toBeInstanceOf(ManifestError);
    expect(error.message).toBe(`${join(dir, 'missing.yaml')}: no such file or directory`);
  });

  it('one trigger defined twice, in one file or two, instead of one silently winning', () => {
    const dir = dirWith({ 'a.yaml': triggerYaml('x'), 'b.yaml': triggerYaml('x'), 'c.yaml': `${triggerYaml('y')}---\n${triggerYaml('y')}` });
    expect(errorOf(() => loadManifests([join(dir, 'a.yaml'), join(dir, 'b.yaml')])).message).toBe(
      `EventTrigger shop/x is defined both in ${join(dir, 'a.yaml')} and in ${join(dir, 'b.yaml')}; give each a different metadata.name`,
    );
    expect(errorOf(() => loadManifests([join(dir, 'c.yaml')])).message).toBe(`EventTrigger shop/y is defined twice in ${join(dir, 'c.yaml')}; give each a different metadata.name`);
  });

  it('the same file named twice (a directory and a file in it) is read once', () => {
    const dir = dirWith({ 'a.yaml': triggerYaml('x'), 'sub/b.yaml': triggerYaml('z') });
    const loaded = loadManifests([dir, join(dir, 'a.yaml'), join(dir, 'sub'), `${dir}/./sub/../a.yaml`]);
    expect(loaded.triggers.map((t) => t.metadata.name)).toEqual(['x', 'z']);
  });

  it('the same name in two namespaces is two triggers', () => {
    const dir = dirWith({ 'a.yaml': `${triggerYaml('x')}---\n${triggerYaml('x').replace('namespace: shop', 'namespace: other')}` });
    expect(loadManifests([dir]).triggers.map((t) => `${t.metadata.namespace}/${t.metadata.name}`)).toEqual(['shop/x', 'other/x']);
  });
});

describe('loading manifests: defaults', () => {
  it('spec.suspend is false when the manifest omits it, and kept when it sets it', () => {
    const text = `${triggerYaml('a')}---\n${triggerYaml('b').replace('table: { name: orders }', 'table: { name: orders }\n  suspend: true')}`;
    expect(parseManifestText(text, 'triggers.yaml').triggers.map((t) => [t.metadata.name, t.spec.suspend])).toEqual([
      ['a', false],
      ['b', true],
    ]);
  });
});
