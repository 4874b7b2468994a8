import { mkdirSync } from 'node:fs';
import { type CommandOptions, runCommand } from './command.js';

/** Where buildah keeps its images: storage under the repository's git-ignored .cache, run state in /run. */
export interface BuildahStore {
  root: string;
  runroot: string;
  /** TMPDIR of buildah: the `RUN --mount=type=cache` directories and the staging of pushed archives. */
  tmpdir: string;
}

/** Output handling shared by every call: the build log file, and whether to echo it. */
export type BuildahOutput = Pick<CommandOptions, 'logFile' | 'echo'>;

/** An image in buildah's storage. */
export interface StoredImage {
  /** Full image id (the config digest, without `sha256:`). */
  id: string;
  /** Sum of its layers, uncompressed. */
  size: number;
}

interface Inspection {
  FromImageID: string;
  Manifest: string;
}

/**
 * buildah (no daemon, no registry) on one storage. Builds run with chroot isolation, the only one that
 * needs neither a user namespace nor a container runtime, and with --pull=never: every FROM must name an
 * image already in this storage (the base image is made locally, see baseImage.ts).
 */
export class Buildah {
  constructor(readonly store: BuildahStore) {
    for (const dir of [store.root, store.runroot, store.tmpdir]) mkdirSync(dir, { recursive: true });
  }

  /** Runs `buildah <global flags> args` and returns its stdout. */
  run(what: string, args: readonly string[], output: BuildahOutput = {}): Promise<string> {
    const global = ['--root', this.store.root, '--runroot', this.store.runroot, '--storage-driver', 'overlay'];
    return runCommand(what, 'buildah', [...global, ...args], { ...output, env: { ...process.env, TMPDIR: this.store.tmpdir } });
  }

  /** The image named `ref` in this storage, or undefined when there is none. */
  async image(ref: string): Promise<StoredImage | undefined> {
    let inspection: Inspection;
    try {
      inspection = JSON.parse(await this.run(`look up ${ref}`, ['inspect', '--type', 'image', ref])) as Inspection;
    } catch {
      return undefined;
    }
    const manifest = JSON.parse(inspection.Manifest) as { layers: { size: number }[] };
    return { id: inspection.FromImageID, size: manifest.layers.reduce((sum, layer) => sum + layer.size, 0) };
  }

  /**
   * Removes image `id` unless a name still refers to it: the previous build of an image just rebuilt, which
   * would otherwise stay in the storage, unnamed, for good.
   */
  async removeUnnamed(id: string): Promise<void> {
    const listing = await this.run('list images', ['images', '--json', '--all', '--no-trunc']);
    const images = JSON.parse(listing.trim() || '[]') as { id: string; names: string[] | null }[];
    const image = images.find((candidate) => candidate.id.replace(/^sha256:/, '') === id);
    if (!image || (image.names?.length ?? 0) > 0) return;
    // It may still be in use (a container started from it); then it goes with a later rebuild.
    await this.run(`remove ${id}`, ['rmi', id]).catch(() => undefined);
  }

  /**
   * Builds `dockerfile` (context: `context`) as `ref`. Without build args it reuses the cached layers of
   * earlier builds (the operator's and the dispatcher's `npm ci` run once for both). With build args it
   * does not: buildah's layer cache ignores an ARG whose value only reaches an ENV (containers/buildah
   * #5501, still in 1.28), so the four food-ordering images would all get the first one's FUNCTION_NAME.
   */
  async bud(ref: string, dockerfile: string, context: string, buildArgs: Record<string, string>, output: BuildahOutput): Promise<void> {
    const layers = Object.keys(buildArgs).length === 0;
    const args = ['bud', '--isolation', 'chroot', '--pull=never', `--layers=${layers}`, '--format', 'oci', '-f', dockerfile, '-t', ref];
    for (const [name, value] of Object.entries(buildArgs)) args.push('--build-arg', `${name}=${value}`);
    await this.run(`build ${ref}`, [...args, context], output);
  }

  /**
   * Writes `ref` as an OCI archive whose index names it `ref` in full (org.opencontainers.image.ref.name),
   * which is the name `ctr images import` gives it. Layers are gzipped (about 2 s an image; buildah 1.28
   * ignores --disable-compression for this transport anyway), a quarter of the uncompressed size.
   */
  async pushArchive(ref: string, archive: string, output: BuildahOutput): Promise<void> {
    await this.run(`write ${ref} to ${archive}`, ['push', '--quiet', ref, `oci-archive:${archive}:${ref}`], output);
  }
}
