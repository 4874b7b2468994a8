import { readdirSync, readFileSync, type Stats, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { EventideError } from '../../common/errors.js';
import { type BackfillResource, type EventTriggerResource, type FunctionResource, resourceKey } from './resources.js';
import { GROUP } from './schema.js';
import { InvalidResourceError, parseResource } from './validate.js';

/** The eventide resources found in a set of manifest files. */
export interface ManifestSet {
  triggers: EventTriggerResource[];
  functions: FunctionResource[];
  backfills: BackfillResource[];
  /** Resources that failed validation, when loaded with `{ lenient: true }` (otherwise the first one throws). */
  invalid: InvalidManifest[];
}

/** A resource that failed validation, kept aside so its siblings can still be served. */
export interface InvalidManifest {
  kind: string;
  /** `namespace/name`, when the manifest has a name. */
  key?: string;
  /** Generation the manifest carried (the operator writes it), so a status can say which one was refused. */
  generation?: number;
  /** The file, the resource and each bad field. */
  message: string;
  problems: string[];
}

/** How to treat a resource that fails validation: throw (the default), or collect it in `invalid`. */
export interface LoadOptions {
  lenient?: boolean;
}

/** A manifest file that cannot be used (missing, unreadable, not YAML); the message names the file. */
export class ManifestError extends EventideError {
  override readonly code = 'EVENTIDE_MANIFEST';
  override readonly name = 'ManifestError';
}

function statPath(path: string): Stats {
  try {
    return statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ManifestError(`${path}: ${code === 'ENOENT' ? 'no such file or directory' : (error as Error).message}`);
  }
}

function readDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch (error) {
    throw new ManifestError(`${path}: ${(error as Error).message}`);
  }
}

/** Lists the YAML files under a path (a file, or a directory read recursively, in name order). */
function yamlFiles(path: string): string[] {
  if (!statPath(path).isDirectory()) return [path];
  return (
    readDir(path)
      .sort()
      // A mounted ConfigMap holds "..data" and "..<timestamp>" links to the same files: skip hidden entries.
      .filter((entry) => !entry.startsWith('.'))
      .flatMap((entry) => {
        const full = join(path, entry);
        // statPath: a dangling link in the directory is a message naming it, not a stack.
        if (statPath(full).isDirectory()) return yamlFiles(full);
        return /\.ya?ml$/.test(entry) ? [full] : [];
      })
  );
}

/** Parses YAML text into eventide resources, ignoring other kinds (a Secret beside them, say). */
export function parseManifestText(text: string, origin: string, options: LoadOptions = {}): ManifestSet {
  const set: ManifestSet = { triggers: [], functions: [], backfills: [], invalid: [] };
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new ManifestError(`${origin}: invalid YAML: ${doc.errors[0]!.message}`);
    const raw: unknown = doc.toJS();
    if (raw === null || raw === undefined) continue;
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      throw new ManifestError(`${origin}: expected a YAML mapping (a resource with apiVersion and kind), got ${Array.isArray(raw) ? 'a list' : `a ${typeof raw}`}`);
    }
    const obj = raw as Record<string, unknown>;
    if (typeof obj.apiVersion !== 'string' || !obj.apiVersion.startsWith(`${GROUP}/`)) continue;
    try {
      const resource = parseResource(obj);
      const meta = resource.metadata;
      meta.namespace ??= 'default';
      if (resource.kind === 'EventTrigger') set.triggers.push(resource);
      else if (resource.kind === 'Backfill') set.backfills.push(resource);
      else set.functions.push(resource);
    } catch (error) {
      if (!(error instanceof InvalidResourceError)) throw error;
      const located = new InvalidResourceError(`${origin}: ${error.resource}`, error.problems);
      if (!options.lenient) throw located;
      set.invalid.push(invalidManifest(obj, located));
    }
  }
  return set;
}

function invalidManifest(raw: Record<string, unknown>, error: InvalidResourceError): InvalidManifest {
  const meta = (raw.metadata ?? {}) as { name?: unknown; namespace?: unknown; generation?: unknown };
  const name = typeof meta.name === 'string' ? meta.name : undefined;
  return {
    kind: String(raw.kind),
    ...(name ? { key: resourceKey({ name, namespace: typeof meta.namespace === 'string' ? meta.namespace : 'default' }) } : {}),
    ...(typeof meta.generation === 'number' ? { generation: meta.generation } : {}),
    message: error.message,
    problems: error.problems,
  };
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new ManifestError(`${file}: ${(error as Error).message}`);
  }
}

/**
 * Loads every eventide resource from files and directories of YAML manifests. A file named twice
 * (a directory and a file in it) is read once; one resource defined twice is an error naming both files,
 * since only one of the two could be served.
 */
export function loadManifests(paths: string[], options: LoadOptions = {}): ManifestSet {
  const set: ManifestSet = { triggers: [], functions: [], backfills: [], invalid: [] };
  const seen = new Map<string, string>();
  const files = new Map<string, string>();
  for (const file of paths.flatMap(yamlFiles)) if (!files.has(resolve(file))) files.set(resolve(file), file);
  for (const file of files.values()) {
    const found = parseManifestText(readText(file), file, options);
    for (const [kind, resources] of [
      ['EventTrigger', found.triggers],
      ['Function', found.functions],
      ['Backfill', found.backfills],
    ] as const) {
      for (const resource of resources) {
        const id = `${kind} ${resourceKey(resource.metadata)}`;
        const first = seen.get(id);
        if (first !== undefined) {
          const where = first === file ? `twice in ${file}` : `both in ${first} and in ${file}`;
          throw new ManifestError(`${id} is defined ${where}; give each a different metadata.name`);
        }
        seen.set(id, file);
      }
    }
    set.triggers.push(...found.triggers);
    set.functions.push(...found.functions);
    set.backfills.push(...found.backfills);
    set.invalid.push(...found.invalid);
  }
  return set;
}
