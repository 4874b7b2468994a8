#!/usr/bin/env node
// The eventide command. The sources are TypeScript, and the repository needs no build step: at start
// the command bundles them with esbuild (tens of milliseconds) into node_modules/.cache and runs the
// bundle. Running a bundle rather than registering tsx's loader saves the loader's worker thread and
// its copy of every module, about a fifth of an idle dispatcher's memory. Where the cache cannot be
// written (an image's read-only install), the bundle made when the image was built runs; without one,
// tsx's loader runs the sources directly.
import { existsSync } from 'node:fs';
import { mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const entry = join(root, 'dispatcher', 'cli.ts');

async function bundled() {
  const outDir = join(root, 'node_modules', '.cache', 'eventide');
  const outFile = join(outDir, 'cli.mjs');
  // Each process writes its own file and renames it into place, so concurrent starts never read a half-written bundle.
  const tmpFile = join(outDir, `cli.${process.pid}.mjs`);
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

let cli = await bundled();
if (!cli) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = pathToFileURL(entry).href;
}
const { main } = await import(cli);
process.exitCode = await main(process.argv.slice(2));
