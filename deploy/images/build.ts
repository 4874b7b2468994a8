/**
 * Builds the project's images from its Dockerfiles as they are, with buildah and no registry, and writes
 * each as an OCI archive for `ctr -n k8s.io images import`. An image whose inputs (its Dockerfile and
 * build args, the context files it copies, the base image) did not change since its archive was written
 * is not built again.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BaseImage, ensureBaseImage } from './baseImage.js';
import { Buildah, type BuildahOutput } from './buildah.js';
import { contextFiles, hashContextFiles } from './buildInputs.js';
import { type ImageSpec, imageCatalog } from './catalog.js';
import { ImageBuildError, ImagesUsageError } from './errors.js';
import { ensureCommands } from './hostTools.js';
import { InputHash, readStamp, writeStamp } from './stamp.js';

/** Bumped when the way archives are written changes, so that archives written the old way are rebuilt. */
const ARCHIVE_FORMAT = 'oci-archive, gzip layers, no layer cache with build args, v2';

/** What `buildImages` builds, and where. */
export interface BuildOptions {
  repoRoot: string;
  /** Where the archives and their stamps go. */
  outDir: string;
  /** buildah's storage, its temporary files and the build logs (git-ignored). */
  stateDir: string;
  /** Short names (see `imageCatalog`); all images when absent. */
  only?: readonly string[];
  /** Build even when the stamp says nothing changed. */
  force?: boolean;
  /** Echo buildah's output. */
  verbose?: boolean;
  /** Called once the base image is ready. */
  onBase?: (base: BaseImage) => void;
  /** Called as each image is done. */
  onImage?: (result: ImageResult) => void;
}

/** One image of a run: built now, or its archive still up to date. */
export interface ImageResult {
  name: string;
  ref: string;
  archive: string;
  built: boolean;
  seconds: number;
  /** Image size (uncompressed layers, as buildah counts it). */
  imageBytes: number;
  archiveBytes: number;
}

/** The base image and every selected image, in catalog order. */
export interface BuildReport {
  base: BaseImage;
  images: ImageResult[];
}

/** The storage of every run from this repository; its run state under /run, keyed by the storage path. */
export function buildahFor(stateDir: string): Buildah {
  const root = join(stateDir, 'buildah');
  const key = createHash('sha256').update(root).digest('hex').slice(0, 12);
  return new Buildah({ root, runroot: `/run/eventide-images/${key}`, tmpdir: join(stateDir, 'tmp') });
}

/** The images `only` names, in catalog order; an unknown name is a usage error that lists the known ones. */
export function selectImages(catalog: readonly ImageSpec[], only: readonly string[] | undefined): ImageSpec[] {
  if (!only || only.length === 0) return [...catalog];
  const unknown = only.filter((name) => !catalog.some((image) => image.name === name));
  if (unknown.length > 0) {
    throw new ImagesUsageError(`no image named ${unknown.join(', ')}; the images are ${catalog.map((image) => image.name).join(', ')}`);
  }
  return catalog.filter((image) => only.includes(image.name));
}

/** The archive path of an image in `outDir`. */
export function archivePath(outDir: string, image: Pick<ImageSpec, 'name'>): string {
  return join(outDir, `${image.name}.oci.tar`);
}

function inputHash(repoRoot: string, image: ImageSpec, base: BaseImage): string {
  const dockerfile = readFileSync(join(repoRoot, image.dockerfile), 'utf8');
  const hash = new InputHash().add('format', ARCHIVE_FORMAT).add('base', base.hash).add('ref', image.ref).add('dockerfile', dockerfile).add('build-args', JSON.stringify(image.buildArgs));
  try {
    hash.add('.dockerignore', readFileSync(join(repoRoot, '.dockerignore')));
  } catch {
    hash.add('.dockerignore', '');
  }
  return hashContextFiles(hash, repoRoot, contextFiles(repoRoot, dockerfile)).digest();
}

async function buildOne(buildah: Buildah, options: BuildOptions, image: ImageSpec, base: BaseImage): Promise<ImageResult> {
  const started = performance.now();
  const archive = archivePath(options.outDir, image);
  const stampFile = join(options.outDir, `${image.name}.stamp.json`);
  const hash = inputHash(options.repoRoot, image, base);
  const stamp = readStamp(stampFile);
  if (!options.force && stamp?.hash === hash && existsSync(archive)) {
    return { name: image.name, ref: image.ref, archive, built: false, seconds: (performance.now() - started) / 1000, imageBytes: stamp.size ?? 0, archiveBytes: statSync(archive).size };
  }
  const logFile = join(options.stateDir, 'logs', `${image.name}.log`);
  writeFileSync(logFile, '');
  const output: BuildahOutput = { logFile, echo: options.verbose ?? false };
  await buildah.bud(image.ref, join(options.repoRoot, image.dockerfile), options.repoRoot, image.buildArgs, output);
  const built = await buildah.image(image.ref);
  if (!built) throw new ImageBuildError(`${image.ref} is not in buildah's storage right after its build (log: ${logFile})`);
  const partial = `${archive}.${process.pid}.partial`; // two runs at once never write the same file
  try {
    await buildah.pushArchive(image.ref, partial, output);
    renameSync(partial, archive);
  } finally {
    rmSync(partial, { force: true });
  }
  const seconds = (performance.now() - started) / 1000;
  writeStamp(stampFile, { hash, id: built.id, seconds, builtAt: new Date().toISOString(), size: built.size });
  if (stamp && stamp.id !== built.id) await buildah.removeUnnamed(stamp.id);
  return { name: image.name, ref: image.ref, archive, built: true, seconds, imageBytes: built.size, archiveBytes: statSync(archive).size };
}

/**
 * Installs buildah when missing, makes the base image, then builds (or finds up to date) every selected
 * image, one after the other: two cores gain nothing from parallel `npm ci`s.
 */
export async function buildImages(options: BuildOptions): Promise<BuildReport> {
  const selected = selectImages(imageCatalog(options.repoRoot), options.only);
  for (const dir of [options.outDir, join(options.stateDir, 'logs')]) mkdirSync(dir, { recursive: true });
  const installLog = join(options.stateDir, 'logs', 'install.log');
  await ensureCommands({ buildah: 'buildah', busybox: 'busybox-static' }, installLog);
  const buildah = buildahFor(options.stateDir);
  const baseLog = join(options.stateDir, 'logs', 'node-20-slim.log');
  writeFileSync(baseLog, '');
  const base = await ensureBaseImage(buildah, join(options.stateDir, 'node-20-slim.stamp.json'), { logFile: baseLog, echo: options.verbose ?? false });
  options.onBase?.(base);
  const images: ImageResult[] = [];
  for (const image of selected) {
    const result = await buildOne(buildah, options, image, base);
    options.onImage?.(result);
    images.push(result);
  }
  return { base, images };
}
