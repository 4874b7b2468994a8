import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { GROUP } from './schema.js';
import { parseResource, InvalidResourceError } from './validate.js';
import type { EventTriggerResource, FunctionResource } from './resources.js';

/** The eventide resources found in a set of manifest files. */
export interface ManifestSet {
  triggers: EventTriggerResource[];
  functions: FunctionResource[];
}

/** Lists the YAML files under a path (a file, or a directory read recursively, in name order). */
function yamlFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
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
    if (doc.errors.length) throw new Error(`${origin}: invalid YAML: ${doc.errors[0]!.message}`);
    const raw: unknown = doc.toJS();
    if (raw === null || raw === undefined) continue;
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${origin}: expected a YAML mapping, got ${typeof raw}`);
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

/** Loads every eventide resource from files and directories of YAML manifests. */
export function loadManifests(paths: string[]): ManifestSet {
  const set: ManifestSet = { triggers: [], functions: [] };
  for (const file of paths.flatMap(yamlFiles)) {
    const found = parseManifestText(readFileSync(file, 'utf8'), file);
    set.triggers.push(...found.triggers);
    set.functions.push(...found.functions);
  }
  return set;
}
