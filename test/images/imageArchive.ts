import { execFileSync } from 'node:child_process';

/** The parts of an OCI image config a container runtime uses. */
export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
}

/** What an OCI archive (an image layout in a tar) says about its one image. */
export interface ArchiveImage {
  /** org.opencontainers.image.ref.name: the name `ctr images import` gives the image. */
  refName: string | undefined;
  config: ImageConfig;
  layers: { mediaType: string; size: number }[];
}

function readMember(archive: string, member: string): string {
  return execFileSync('tar', ['-xOf', archive, member], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

function blob(digest: string): string {
  return `blobs/${digest.replace(':', '/')}`;
}

/** Reads the index, manifest and config of an OCI archive without unpacking its layers. */
export function readArchive(archive: string): ArchiveImage {
  const index = JSON.parse(readMember(archive, 'index.json')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  if (index.manifests.length !== 1) throw new Error(`${archive} holds ${index.manifests.length} manifests, not one`);
  const [entry] = index.manifests;
  const manifest = JSON.parse(readMember(archive, blob(entry!.digest))) as { config: { digest: string }; layers: { mediaType: string; size: number }[] };
  const config = JSON.parse(readMember(archive, blob(manifest.config.digest))) as { config?: ImageConfig };
  return { refName: entry!.annotations?.['org.opencontainers.image.ref.name'], config: config.config ?? {}, layers: manifest.layers };
}
