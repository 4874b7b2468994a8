#!/usr/bin/env node
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
