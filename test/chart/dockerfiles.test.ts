/**
 * No Docker engine runs here, so the images cannot be built in tests; what can break them silently is
 * checked instead: every module the entry point loads at runtime is copied into the image, every package
 * it imports is a production dependency (the image installs only those), and the image runs as non-root.
 */
import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helmBinary.js';

interface Dockerfile {
  path: string;
  /** Repository paths copied from the build context into the final stage. */
  copied: string[];
  entrypoint: string[];
  user: string | undefined;
  text: string;
}

function readDockerfile(path: string): Dockerfile {
  const text = readFileSync(join(REPO_ROOT, path), 'utf8');
  const finalStage = text.split(/^FROM /m).at(-1)!;
  const copied = [...finalStage.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => {
    const parts = m[1]!.trim().split(/\s+/);
    return parts.slice(0, -1).map((p) => p.replace(/\/$/, ''));
  });
  const entrypoint = JSON.parse(/^ENTRYPOINT (.+)$/m.exec(finalStage)?.[1] ?? '[]') as string[];
  return { path, copied, entrypoint, user: /^USER (.+)$/m.exec(finalStage)?.[1]?.trim(), text };
}

/** Whether a COPY source (a file, a directory, or a `dir/*.ts` pattern) brings `file` into the image. */
function copies(source: string, file: string): boolean {
  if (source.includes('*')) {
    const pattern = source
      .split('*')
      .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('[^/]*');
    return new RegExp(`^${pattern}$`).test(file);
  }
  return file === source || file.startsWith(`${source}/`);
}

const RUNTIME_EXTENSIONS = ['.ts', '.mts', '.mjs', '.js'];

/** The file a relative specifier loads: `./x.js` is `./x.ts` under tsx. */
function resolveRelative(from: string, specifier: string): string | undefined {
  const target = resolve(dirname(from), specifier);
  const candidates = [target, target.replace(/\.js$/, '.ts'), target.replace(/\.mjs$/, '.mts'), ...RUNTIME_EXTENSIONS.map((e) => target + e)];
  return candidates.find((c) => existsSync(c) && !c.endsWith('/'));
}

/** Module specifiers a file loads at runtime (`import type` and `export type` are erased). */
function runtimeImports(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const specifiers: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && !node.importClause?.isTypeOnly && ts.isStringLiteral(node.moduleSpecifier)) {
      specifiers.push(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node) && !node.isTypeOnly && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      specifiers.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteral(arg)) specifiers.push(arg.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return specifiers;
}

/** Package name of a bare specifier (`@scope/pkg/sub` → `@scope/pkg`). */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

interface ImportGraph {
  files: string[];
  packages: Set<string>;
  missing: string[];
}

function importGraph(entry: string): ImportGraph {
  const builtins = new Set(builtinModules);
  const seen = new Set<string>();
  const packages = new Set<string>();
  const missing: string[] = [];
  const stack = [resolve(REPO_ROOT, entry)];
  while (stack.length > 0) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const specifier of runtimeImports(file)) {
      if (specifier.startsWith('.')) {
        const target = resolveRelative(file, specifier);
        if (target) stack.push(target);
        else missing.push(`${relative(REPO_ROOT, file)} imports ${specifier}`);
      } else if (!specifier.startsWith('node:') && !builtins.has(specifier)) {
        packages.add(packageName(specifier));
      }
    }
  }
  return { files: [...seen].map((f) => relative(REPO_ROOT, f)), packages, missing };
}

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };

/** `entry` is what the image runs; for the function base image, what function handlers import. */
const images = [
  { dockerfile: 'deploy/Dockerfile.operator', entry: 'operator/main.ts', runs: true },
  { dockerfile: 'deploy/Dockerfile.dispatcher', entry: 'bin/eventide.mjs', runs: true },
  { dockerfile: 'functions/food-ordering/Dockerfile', entry: 'functions/food-ordering/main.ts', runs: true },
  { dockerfile: 'functions/runtime/Dockerfile.base', entry: 'functions/runtime/index.ts', runs: false },
];

describe.each(images)('$dockerfile', ({ dockerfile, entry, runs }) => {
  const image = readDockerfile(dockerfile);

  it(`runs ${runs ? entry : "a function's entry"} with node as a non-root user`, () => {
    if (runs) expect(image.entrypoint).toContain(entry);
    expect(image.entrypoint[0]).toBe('node');
    expect(image.user).toMatch(/^10001(:10001)?$/);
  });

  it('installs only production dependencies from the lockfile, in a separate stage', () => {
    // The function base image trims package.json to the runtime's packages, so `npm install` (still
    // pinned by the lockfile) replaces `npm ci`, which refuses a manifest that differs from its lockfile.
    const installs = image.text.split('\n').filter((line) => !line.trimStart().startsWith('#'));
    expect(installs.join('\n')).toMatch(/npm (ci|install) --omit=dev/);
    expect(image.text.match(/^FROM /gm)).toHaveLength(2);
    expect(image.copied).not.toContain('node_modules');
  });

  it('copies every source file the entry point loads, and imports only production dependencies', () => {
    const graph = importGraph(entry);
    expect(graph.missing, 'imports of files that do not exist').toEqual([]);
    const notCopied = graph.files.filter((f) => !image.copied.some((c) => copies(c, f)));
    expect(notCopied, `add COPY lines to ${dockerfile}`).toEqual([]);
    const notProduction = [...graph.packages].filter((p) => !(p in pkg.dependencies));
    expect(notProduction, 'imported at runtime but not in package.json dependencies').toEqual([]);
  });
});

describe('.dockerignore', () => {
  it('keeps dependencies, caches, history and tests out of the build context', () => {
    const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['**/node_modules', '.cache', '.git', 'test', '**/*.test.ts']) expect(ignored).toContain(entry);
    for (const image of images) {
      for (const copied of readDockerfile(image.dockerfile).copied) expect(ignored, `${image.dockerfile} copies ${copied}`).not.toContain(copied);
    }
  });
});
