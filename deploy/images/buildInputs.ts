/**
 * What goes into an image from the build context, to know when a build can be skipped: the files its
 * Dockerfile's COPY and ADD lines name, less what .dockerignore keeps out of the context.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, posix } from 'node:path';
import type { InputHash } from './stamp.js';

/**
 * The context paths (files, directories or `dir/*.ts` patterns) that COPY and ADD lines take from the
 * build context, in every stage; `undefined` when one of them depends on a variable, so that only the
 * whole context is a safe answer.
 */
export function contextSources(dockerfile: string): string[] | undefined {
  const instructions = dockerfile
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => /^(COPY|ADD)\s/i.test(line));
  const sources: string[] = [];
  for (const instruction of instructions) {
    const words = instruction.split(/\s+/).slice(1);
    const flags = words.filter((word) => word.startsWith('--'));
    if (flags.some((flag) => flag.startsWith('--from='))) continue; // from another stage, not the context
    const rest = instruction
      .slice(instruction.search(/\s/))
      .trim()
      .replace(/^(--\S+\s+)*/, '');
    const operands = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
    for (const source of operands.slice(0, -1)) {
      if (source.includes('$') || /^[a-z]+:\/\//i.test(source)) return undefined;
      sources.push(posix.normalize(source).replace(/^(\.\/)+|\/$/g, '') || '.');
    }
  }
  return sources;
}

/** A .dockerignore pattern as a regular expression over context-relative paths (it also covers what is below a match). */
function patternRegex(pattern: string): RegExp {
  const clean = posix.normalize(pattern.replace(/^\/+/, '')).replace(/\/$/, '');
  let re = '';
  for (let i = 0; i < clean.length; i++) {
    const c = clean[i]!;
    if (c === '*' && clean[i + 1] === '*') {
      i++;
      if (clean[i + 1] === '/') {
        i++;
        re += '(?:.*/)?';
      } else {
        re += '.*';
      }
    } else if (c === '*') {
      re += '[^/]*';
    } else if (c === '?') {
      re += '[^/]';
    } else {
      re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}(?:/.*)?$`);
}

/** Whether .dockerignore (its text) keeps a path out of the build context. */
export type IgnoreRule = (path: string) => boolean;

/** The rule of a .dockerignore: the last pattern that matches decides, a `!pattern` brings a path back. */
export function dockerIgnore(text: string): IgnoreRule & { hasExceptions: boolean } {
  const patterns = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => (line.startsWith('!') ? { keep: true, re: patternRegex(line.slice(1)) } : { keep: false, re: patternRegex(line) }));
  const rule = (path: string): boolean => {
    let ignored = false;
    for (const { keep, re } of patterns) if (re.test(path)) ignored = !keep;
    return ignored;
  };
  return Object.assign(rule, { hasExceptions: patterns.some((p) => p.keep) });
}

function hasGlob(path: string): boolean {
  return /[*?[]/.test(path);
}

/** Context-relative files under `path` (a file or a directory) that the ignore rule lets in. */
function filesUnder(context: string, path: string, ignored: ReturnType<typeof dockerIgnore>): string[] {
  let stat;
  try {
    stat = statSync(join(context, path));
  } catch {
    return [path]; // missing: the build fails on it; hashed as absent
  }
  if (!stat.isDirectory()) return ignored(path) ? [] : [path];
  // Without exceptions nothing below an ignored directory can come back, so it is not walked.
  if (path !== '.' && ignored(path) && !ignored.hasExceptions) return [];
  return readdirSync(join(context, path))
    .sort()
    .flatMap((name) => filesUnder(context, path === '.' ? name : `${path}/${name}`, ignored));
}

/** The context files a COPY source brings in; a pattern (`dir/*.ts`) is matched in its directory. */
function expand(context: string, source: string, ignored: ReturnType<typeof dockerIgnore>): string[] {
  if (!hasGlob(source)) return filesUnder(context, source, ignored);
  const dir = dirname(source);
  if (hasGlob(dir)) return filesUnder(context, '.', ignored);
  const re = patternRegex(basename(source));
  let names: string[];
  try {
    names = readdirSync(join(context, dir));
  } catch {
    return [];
  }
  return names
    .filter((name) => re.test(name))
    .sort()
    .flatMap((name) => filesUnder(context, dir === '.' ? name : `${dir}/${name}`, ignored));
}

/** The context files a Dockerfile's build reads, sorted; the whole context when its sources cannot be listed. */
export function contextFiles(context: string, dockerfileText: string): string[] {
  let ignoreText = '';
  try {
    ignoreText = readFileSync(join(context, '.dockerignore'), 'utf8');
  } catch {
    // no .dockerignore: the whole directory is the context
  }
  const ignored = dockerIgnore(ignoreText);
  const sources = contextSources(dockerfileText) ?? ['.'];
  return [...new Set(sources.flatMap((source) => expand(context, source, ignored)))].sort();
}

/** Adds each context file's path, executable bit and content (or its absence) to `hash`. */
export function hashContextFiles(hash: InputHash, context: string, files: readonly string[]): InputHash {
  for (const file of files) {
    try {
      const { mode } = statSync(join(context, file));
      hash.add(`file ${file} ${mode & 0o111 ? 'x' : '-'}`, readFileSync(join(context, file)));
    } catch {
      hash.add(`absent ${file}`, '');
    }
  }
  return hash;
}
