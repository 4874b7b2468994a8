/**
 * `npm run images`: builds the project's images from its Dockerfiles, with no Docker engine and no
 * registry, into OCI archives to import into a node's containerd:
 *
 *   npm run images                                 every image, into .cache/images/<name>.oci.tar
 *   npm run images -- --only eventide-dispatcher   just that one (repeat or comma-separate for more)
 *   npm run images -- --out DIR --force --verbose
 *   npm run images -- --list                       names, references and archive paths, nothing built
 *
 *   ctr -n k8s.io images import .cache/images/eventide-operator.oci.tar
 *
 * Needs root (buildah's chroot isolation) and the npm registry; installs buildah and busybox-static with apt
 * when missing. buildah's storage and layer cache live in .cache/images/buildah: delete it to reclaim the
 * space, and the next run builds everything again (about two minutes on two cores).
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EventideError } from '../../common/errors.js';
import { archivePath, buildImages, type ImageResult, selectImages } from './build.js';
import { imageCatalog } from './catalog.js';
import { ImagesUsageError } from './errors.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const STATE_DIR = resolve(REPO_ROOT, '.cache/images');

const USAGE = `Usage: npm run images -- [flags]

  --only <name>[,<name>]  build only these images (repeatable)
  --out <dir>             write the archives there (default .cache/images)
  --force                 build even when nothing that goes into an image changed
  --verbose               show buildah's output
  --list                  print each image's name, reference and archive, build nothing
`;

/** What the command line asks for. */
export interface ImagesArgs {
  only: string[];
  outDir: string;
  force: boolean;
  verbose: boolean;
  list: boolean;
  help: boolean;
}

/** Parses the flags of `npm run images` (paths relative to `cwd`). */
export function parseImagesArgs(argv: readonly string[], cwd: string): ImagesArgs {
  const args: ImagesArgs = { only: [], outDir: STATE_DIR, force: false, verbose: false, list: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new ImagesUsageError(`${flag} needs a value\n\n${USAGE}`);
      return v;
    };
    switch (flag) {
      case '--only':
        args.only.push(
          ...value()
            .split(',')
            .map((name) => name.trim())
            .filter(Boolean),
        );
        break;
      case '--out':
        args.outDir = resolve(cwd, value());
        break;
      case '--force':
        args.force = true;
        break;
      case '--verbose':
        args.verbose = true;
        break;
      case '--list':
        args.list = true;
        break;
      case '--help':
      case '-h':
        args.help = true;
        break;
      default:
        throw new ImagesUsageError(`unknown argument ${arg}\n\n${USAGE}`);
    }
  }
  return args;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(0)} MB`;
}

function line(result: ImageResult): string {
  const what = result.built ? `built in ${result.seconds.toFixed(1)} s` : 'up to date';
  return `${result.name.padEnd(28)} ${what.padEnd(18)} image ${megabytes(result.imageBytes).padStart(7)}  archive ${megabytes(result.archiveBytes).padStart(7)}  ${result.ref}`;
}

/** Runs `npm run images` with `argv`; resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const args = parseImagesArgs(argv, process.env.INIT_CWD ?? process.cwd());
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.list) {
    for (const image of selectImages(imageCatalog(REPO_ROOT), args.only)) {
      process.stdout.write(`${image.name}\t${image.ref}\t${archivePath(args.outDir, image)}\n`);
    }
    return 0;
  }
  const started = performance.now();
  const report = await buildImages({
    repoRoot: REPO_ROOT,
    outDir: args.outDir,
    stateDir: STATE_DIR,
    only: args.only,
    force: args.force,
    verbose: args.verbose,
    onBase: (base) =>
      process.stdout.write(
        `${'node:20-slim (base)'.padEnd(28)} ${(base.built ? `built in ${base.seconds.toFixed(1)} s` : 'up to date').padEnd(18)} image ${megabytes(base.size).padStart(7)}  ${base.ref}\n`,
      ),
    onImage: (result) => process.stdout.write(`${line(result)}\n`),
  });
  process.stdout.write(`${report.images.length} images in ${((performance.now() - started) / 1000).toFixed(1)} s, archives in ${args.outDir} (ctr -n k8s.io images import <archive>)\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      const message = error instanceof EventideError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
      process.stderr.write(`images: ${message}\n`);
      process.exit(1);
    },
  );
}
