import { readFileSync, readdirSync, statSync, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { GROUP } from './schema.js';
import { parseResource, InvalidResourceError } from './validate.js';
import { resourceKey, type EventTriggerResource, type FunctionResource } from './resources.js';

/** The eventide resources found in a set of manifest files. */
export interface ManifestSet {
  triggers: EventTriggerResource[];
  functions: FunctionResource[];
}

/** A manifest file that cannot be used (missing, unreadable, not YAML); the message names the file. */
export class ManifestError extends Error {
  readonly code = 'EVENTIDE_MANIFEST';
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

/** Lists the YAML files under a path (a file, or a directory read recursively, in name order). */
function yamlFiles(path: string): string[] {
  if (!statPath(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    // A mounted ConfigMap holds "..data" and "..<timestamp>" links to the same files: skip hidden entries.
    .filter((entry) => !entry.startsWith('.'))
    .flatMap((entry) => {
      const full = join(path, entry);
      if (statSync(full).isDirectory()) return yamlFiles(full);
      return /\.ya?ml$/.test(entry) ? [full] : [];
    });
}

/** Parses YAML text into eventide resources, ignoring other kinds (a Secret beside them, say). */
export function parseManifestText(text: string, origin: string): ManifestSet {
  const set: ManifestSet = { triggers: [], functions: [] };
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
      else set.functions.push(resource);
    } catch (error) {
      if (error instanceof InvalidResourceError) throw new InvalidResourceError(`${origin}: ${error.resource}`, error.problems);
      throw error;
    }
  }
  return set;
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
export function loadManifests(paths: string[]): ManifestSet {
  const set: ManifestSet = { triggers: [], functions: [] };
  const seen = new Map<string, string>();
  const files = new Map<string, string>();
  for (const file of paths.flatMap(yamlFiles)) if (!files.has(resolve(file))) files.set(resolve(file), file);
  for (const file of files.values()) {
    const found = parseManifestText(readText(file), file);
    for (const [kind, resources] of [['EventTrigger', found.triggers], ['Function', found.functions]] as const) {
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
  }
  return set;
}
