/**
 * Container images without Docker, buildah or a registry: a root filesystem directory becomes a
 * one-layer OCI image archive (an OCI image layout in a tar) that `ctr images import` takes. The layer
 * is an uncompressed tar (its digest is its diff_id; no gzip CPU), with sorted names and zero mtimes,
 * so the same rootfs gives the same image.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** The image config fields a test needs (OCI image config `config`). */
export interface OciImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  /** `uid[:gid]` or a name from the image's /etc/passwd */
  user?: string;
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Both annotations: containerd's import reads `io.containerd.image.name`; other tools read the OCI one. */
const REF_ANNOTATIONS = ['io.containerd.image.name', 'org.opencontainers.image.ref.name'] as const;

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${stderr || error.message}`, { cause: error }));
      else resolve(stdout);
    }),
  );
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });
}

/** Writes `content` as a blob of the layout; returns its descriptor fields. */
function writeBlob(layout: string, content: string): { digest: string; size: number } {
  const hex = createHash('sha256').update(content).digest('hex');
  writeFileSync(join(layout, 'blobs', 'sha256', hex), content);
  return { digest: `sha256:${hex}`, size: Buffer.byteLength(content) };
}

/**
 * Writes `outPath`: an OCI image archive of `rootfsDir` named `ref` (a full reference such as
 * `localhost/echo:test`). Returns `ref`.
 */
export async function writeOciArchive(rootfsDir: string, ref: string, outPath: string, config: OciImageConfig = {}): Promise<string> {
  if (!/^[a-z0-9.-]+(:\d+)?\/[^:@]+:[\w.-]+$/.test(ref)) {
    throw new Error(`image reference ${ref} must be a full name with a registry host and a tag (e.g. localhost/echo:test)`);
  }
  const layout = mkdtempSync(join(dirname(outPath) || tmpdir(), '.oci-'));
  try {
    mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
    const layerTar = join(layout, 'layer.tar');
    await run('tar', ['--numeric-owner', '--sort=name', '--mtime=@0', '-C', rootfsDir, '-cf', layerTar, '.']);
    const layerHex = await sha256File(layerTar);
    const layerSize = statSync(layerTar).size;
    renameSync(layerTar, join(layout, 'blobs', 'sha256', layerHex));
    const layerDigest = `sha256:${layerHex}`;

    const imageConfig = writeBlob(
      layout,
      JSON.stringify({
        architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
        os: 'linux',
        config: {
          Env: config.env ?? [DEFAULT_PATH],
          WorkingDir: config.workingDir ?? '/',
          ...(config.entrypoint ? { Entrypoint: config.entrypoint } : {}),
          ...(config.cmd ? { Cmd: config.cmd } : {}),
          ...(config.user ? { User: config.user } : {}),
        },
        rootfs: { type: 'layers', diff_ids: [layerDigest] },
        history: [{ created_by: 'eventide test harness (ociImage.ts)' }],
      }),
    );
    const manifest = writeBlob(
      layout,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...imageConfig },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layerSize }],
      }),
    );
    writeFileSync(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            annotations: Object.fromEntries(REF_ANNOTATIONS.map((a) => [a, ref])),
          },
        ],
      }),
    );
    writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await run('tar', ['-C', layout, '-cf', outPath, 'oci-layout', 'index.json', 'blobs']);
    return ref;
  } finally {
    rmSync(layout, { recursive: true, force: true });
  }
}

/**
 * The image name an OCI archive carries (its index's ref-name annotation), which is the name
 * `ctr images import` gives it. Throws when the archive names no full reference.
 */
export async function readOciArchiveRef(archivePath: string): Promise<string> {
  // Tools differ in how they name members: `index.json` or `./index.json`.
  const indexText = await run('tar', ['-xOf', archivePath, 'index.json']).catch(() => run('tar', ['-xOf', archivePath, './index.json']));
  const index = JSON.parse(indexText) as {
    manifests?: { annotations?: Record<string, string> }[];
  };
  const annotations = index.manifests?.[0]?.annotations ?? {};
  const ref = REF_ANNOTATIONS.map((a) => annotations[a]).find(Boolean);
  if (!ref?.includes('/')) {
    throw new Error(
      `${archivePath} names no full image reference (annotation org.opencontainers.image.ref.name is ${JSON.stringify(ref)}); ` +
        'give the full name when writing it, e.g. `buildah push IMG oci-archive:FILE:localhost/name:tag`',
    );
  }
  return ref;
}
