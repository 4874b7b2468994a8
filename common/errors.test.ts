import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidDurationError, InvalidResourceError, loadManifests, ManifestError, parseEventTrigger } from '../api/v1alpha1/index.js';
import { FilterEvaluationError, InvalidFilterError } from '../dispatcher/routing/filter.js';
import { buildRoutes } from '../dispatcher/routing/triggerMatcher.js';
import { SettingsError } from '../dispatcher/settings.js';
import { SourceProblemError } from '../dispatcher/source/sourceSetup.js';
import { UnresolvedTargetError } from '../dispatcher/targets.js';
import { EventideError } from './errors.js';

describe('EventideError: the errors whose message is the whole story for the user', () => {
  // The codes are an interface (callers and tests branch on them): renaming one is a breaking change.
  it.each([
    [new SettingsError('--port must be a positive integer'), 'EVENTIDE_SETTINGS', 'SettingsError'],
    [new SourceProblemError(['EventTrigger a/b: table public.x does not exist']), 'EVENTIDE_SOURCE_PROBLEM', 'SourceProblemError'],
    [new UnresolvedTargetError('EventTrigger a/b: set spec.function or spec.sink'), 'EVENTIDE_UNRESOLVED_TARGET', 'UnresolvedTargetError'],
    [new ManifestError('x.yaml: invalid YAML'), 'EVENTIDE_MANIFEST', 'ManifestError'],
    [new InvalidResourceError('EventTrigger a/b', ['spec.table: required field is missing']), 'EVENTIDE_INVALID_RESOURCE', 'InvalidResourceError'],
    [new InvalidFilterError('EventTrigger a/b: invalid spec.filter: ...'), 'EVENTIDE_INVALID_FILTER', 'InvalidFilterError'],
  ])('%s has a stable code and is a user error', (error, code, name) => {
    expect(error).toBeInstanceOf(EventideError);
    expect(error.code).toBe(code);
    expect(error.name).toBe(name);
  });

  it('leaves plain and internal errors out, so they keep their stack', () => {
    expect(new Error('EventTrigger a/b: looks like a user error')).not.toBeInstanceOf(EventideError);
    expect(new FilterEvaluationError('No such key: x')).not.toBeInstanceOf(EventideError);
    expect(new InvalidDurationError('invalid duration "x"')).not.toBeInstanceOf(EventideError);
  });
});

describe('throw sites the CLI used to recognise by their message', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('a filter that does not compile throws an InvalidFilterError naming the trigger', () => {
    const trigger = parseEventTrigger({
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'EventTrigger',
      metadata: { name: 'x', namespace: 'shop' },
      spec: { source: { connectionSecretRef: { name: 'db' } }, table: { name: 't' }, sink: { url: 'http://127.0.0.1:1/' } },
    });
    // Validation rejects such a filter first; this is the dispatcher's own check, reached by manifests built in code.
    const build = () => buildRoutes([{ ...trigger, spec: { ...trigger.spec, filter: 'new.x = 1' } }]);
    expect(build).toThrow(InvalidFilterError);
    expect(build).toThrow(/^EventTrigger shop\/x: invalid spec.filter: Unexpected character: =/);
  });

  it('a dangling link in a manifest directory throws a ManifestError naming it, not a bare ENOENT', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eventide-errors-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'a.yaml'), '');
    symlinkSync(join(dir, 'gone.yaml'), join(dir, 'b.yaml'));
    const thrown = (() => {
      try {
        loadManifests([dir]);
      } catch (error) {
        return error;
      }
    })();
    expect(thrown).toBeInstanceOf(ManifestError);
    expect((thrown as Error).message).toBe(`${join(dir, 'b.yaml')}: no such file or directory`);
  });
});
