#!/bin/sh
///usr/bin/env true; case " $NODE_OPTIONS " in *-space-size*|*_space_size*|*young?generation*) exec node "$0" "$@";; esac; exec node --max-semi-space-size=4 --max-old-space-size=256 "$0" "$@"
// Run as a command (npx eventide, ./bin/eventide.mjs), the two lines above are a shell script: they start
// node with the heap the operator gives dispatcher pods (operator/eventtrigger/nodeHeap.ts; a test keeps
// the two equal), unless NODE_OPTIONS sizes the heap; to node the second line is a comment. V8's defaults
// cost a dispatcher about 120 MiB more under a backlog, for no throughput. Run as `node bin/eventide.mjs`,
// a dispatcher sizes its heap with a worker thread instead (dispatcher/launcher.ts).
// The eventide command. The sources are TypeScript, and the repository needs no build step: at start
// the command bundles them with esbuild (tens of milliseconds) into node_modules/.cache and runs the
// bundle. Running a bundle rather than registering tsx's loader saves the loader's worker thread and
// its copy of every module, about a fifth of an idle dispatcher's memory. Where the cache cannot be
// written (an image's read-only install), the bundle made when the image was built runs; without one,
// tsx's loader runs the sources directly.
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

/** Bundles dispatcher/<name>.ts into node_modules/.cache/eventide/<name>.mjs; returns its URL (undefined: run the sources). */
async function bundled(name) {
  const entry = join(root, 'dispatcher', `${name}.ts`);
  const outDir = join(root, 'node_modules', '.cache', 'eventide');
  const outFile = join(outDir, `${name}.mjs`);
  // Each process writes its own file and renames it into place, so concurrent starts never read a half-written bundle.
  const tmpFile = join(outDir, `${name}.${process.pid}.mjs`);
  try {
    const { build } = await import('esbuild');
    mkdirSync(outDir, { recursive: true });
    await build({
      entryPoints: [entry],
      outfile: tmpFile,
      bundle: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: 'node20',
      sourcemap: 'inline',
      logLevel: 'silent',
    });
    renameSync(tmpFile, outFile);
    return pathToFileURL(outFile).href;
  } catch {
    return existsSync(outFile) ? pathToFileURL(outFile).href : undefined;
  }
}

let [cli, launcher] = await Promise.all([bundled('cli'), bundled('launcher')]);
if (!cli || !launcher) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = pathToFileURL(join(root, 'dispatcher', 'cli.ts')).href;
  launcher = pathToFileURL(join(root, 'dispatcher', 'launcher.ts')).href;
}
const argv = process.argv.slice(2);
// `dispatch` may run in a worker with a smaller heap; the launcher is bundled apart, so this thread then loads none of the command.
const launched = (await import(launcher)).launchDispatcher(cli, argv);
process.exitCode = launched ? await launched : await (await import(cli)).main(argv);
