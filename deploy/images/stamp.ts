import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

/** What a build produced from inputs whose content hash is `hash`; a later run with the same hash skips the build. */
export interface Stamp {
  hash: string;
  /** Image id in buildah's storage. */
  id: string;
  seconds: number;
  builtAt: string;
  /** Image size in bytes (uncompressed layers). */
  size?: number;
}

/** The stamp in `file`, or undefined when there is none (or it cannot be read). */
export function readStamp(file: string): Stamp | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Stamp;
  } catch {
    return undefined;
  }
}

/** Written after the output is in place, by rename, so a stamp never vouches for a half-written archive. */
export function writeStamp(file: string, stamp: Stamp): void {
  const partial = `${file}.${process.pid}.tmp`;
  writeFileSync(partial, `${JSON.stringify(stamp, null, 2)}\n`);
  renameSync(partial, file);
}

/** An incremental sha256 over labelled parts, so that moving bytes from one part to the next changes the hash. */
export class InputHash {
  private readonly hash = createHash('sha256');

  add(label: string, value: string | Buffer): this {
    this.hash.update(`${label}\0${Buffer.byteLength(value)}\0`);
    this.hash.update(value);
    return this;
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}
