/**
 * Images of a real node's containerd: OCI archives imported into the `k8s.io` namespace (the one the
 * CRI plugin serves kubelet), one-layer images made from a rootfs dir, and images of one static binary
 * (pause, CoreDNS).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { importArchive } from './containerd.js';
import { type OciImageConfig, readOciArchiveRef, writeOciArchive } from './ociImage.js';

export interface NodeImages {
  /** Imports an OCI image archive under the name its index annotation gives; returns that name. */
  importImage(archivePath: string): Promise<string>;
  /** Makes a one-layer image of `rootfsDir` named `ref` and imports it; returns `ref`. */
  makeImage(rootfsDir: string, ref: string, config?: OciImageConfig): Promise<string>;
  /** Makes and imports an image holding only `binaryPath`, at /<its name>; returns `ref`. */
  binaryImage(binaryPath: string, ref: string, config: OciImageConfig): Promise<string>;
}

/** Image operations against the containerd at `socket`; archives are written to `workDir` and removed once imported. */
export function nodeImages(socket: string, workDir: string): NodeImages {
  const importImage = async (archivePath: string): Promise<string> => {
    const ref = await readOciArchiveRef(archivePath);
    await importArchive(socket, archivePath);
    return ref;
  };
  const makeImage = async (rootfsDir: string, ref: string, config: OciImageConfig = {}): Promise<string> => {
    mkdirSync(workDir, { recursive: true });
    const archive = join(workDir, `${ref.replace(/[^\w.-]+/g, '_')}.oci.tar`);
    try {
      await writeOciArchive(rootfsDir, ref, archive, config);
      return await importImage(archive);
    } finally {
      rmSync(archive, { force: true });
    }
  };
  const binaryImage = async (binaryPath: string, ref: string, config: OciImageConfig): Promise<string> => {
    const name = basename(binaryPath);
    const rootfs = join(workDir, `${name}-rootfs`);
    mkdirSync(join(rootfs, 'tmp'), { recursive: true });
    writeFileSync(join(rootfs, name), readFileSync(binaryPath), { mode: 0o755 });
    try {
      return await makeImage(rootfs, ref, config);
    } finally {
      rmSync(rootfs, { recursive: true, force: true });
    }
  };
  return { importImage, makeImage, binaryImage };
}
