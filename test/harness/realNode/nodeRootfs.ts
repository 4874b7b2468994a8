/**
 * A minimal Node.js root filesystem from the host's own `node` binary and the shared libraries `ldd`
 * lists for it (about 100 MB, a second to copy): the base of images for pods on a real node, where no
 * `node:20-slim` can be pulled.
 */
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Absolute library paths in `ldd` output (`libc.so.6 => /lib/.../libc.so.6 (0x...)`, `/lib64/ld-linux... (0x...)`). */
export function lddPaths(lddOutput: string): string[] {
  return [...lddOutput.matchAll(/(?:=>\s*|^\s*)(\/\S+)\s+\(0x/gm)].map((m) => m[1]!);
}

/**
 * Fills `dir` (emptied first) with /usr/bin/node (the host's `process.execPath`), its libraries at
 * their own paths, /bin → usr/bin, and the /etc files name lookups need. Returns `dir`.
 */
export async function makeNodeRootfs(dir: string, nodeBinary = process.execPath): Promise<string> {
  rmSync(dir, { recursive: true, force: true });
  for (const sub of ['usr/bin', 'etc', 'tmp', 'app']) mkdirSync(join(dir, sub), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  copyFileSync(realpathSync(nodeBinary), join(dir, 'usr/bin/node'));
  chmodSync(join(dir, 'usr/bin/node'), 0o755);
  const ldd = await new Promise<string>((resolve, reject) => execFile('ldd', [nodeBinary], { encoding: 'utf8' }, (error, stdout) => (error ? reject(error) : resolve(stdout))));
  for (const lib of lddPaths(ldd)) {
    mkdirSync(join(dir, dirname(lib)), { recursive: true });
    // The library itself, not the symlink the path may be (libc.so.6 → libc-2.36.so on older systems).
    copyFileSync(realpathSync(lib), join(dir, lib));
  }
  symlinkSync('usr/bin', join(dir, 'bin'));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  writeFileSync(join(dir, 'etc/nsswitch.conf'), 'hosts: files dns\n');
  return dir;
}
