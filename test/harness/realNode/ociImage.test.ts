import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lddPaths } from './nodeRootfs.js';
import { readOciArchiveRef, writeOciArchive } from './ociImage.js';

const dir = mkdtempSync(join(tmpdir(), 'oci-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

describe('writeOciArchive', () => {
  it('writes an OCI layout whose blobs match their digests, named by both ref annotations', async () => {
    const rootfs = join(dir, 'rootfs');
    mkdirSync(join(rootfs, 'app'), { recursive: true });
    writeFileSync(join(rootfs, 'app', 'hello.txt'), 'hello\n');
    const archive = join(dir, 'image.tar');
    await writeOciArchive(rootfs, 'localhost/hello:test', archive, { cmd: ['cat', '/app/hello.txt'], user: '65534' });

    const out = join(dir, 'unpacked');
    mkdirSync(out);
    execFileSync('tar', ['-xf', archive, '-C', out]);
    const blob = (digest: string) => readFileSync(join(out, 'blobs', 'sha256', digest.slice('sha256:'.length)));
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
    const [entry] = index.manifests;
    expect(entry.annotations).toEqual({ 'io.containerd.image.name': 'localhost/hello:test', 'org.opencontainers.image.ref.name': 'localhost/hello:test' });
    const manifestBytes = blob(entry.digest);
    expect(sha256(manifestBytes)).toBe(entry.digest);
    const manifest = JSON.parse(manifestBytes.toString());
    const config = JSON.parse(blob(manifest.config.digest).toString());
    expect(config.config).toMatchObject({ Cmd: ['cat', '/app/hello.txt'], User: '65534' });
    const layer = blob(manifest.layers[0].digest);
    expect(sha256(layer)).toBe(manifest.layers[0].digest);
    expect(config.rootfs.diff_ids).toEqual([manifest.layers[0].digest]);
    expect(execFileSync('tar', ['-tf', '-'], { input: layer }).toString()).toContain('./app/hello.txt');
    await expect(readOciArchiveRef(archive)).resolves.toBe('localhost/hello:test');
  });

  it('refuses a name without a registry host and tag, which containerd would not import under that name', async () => {
    await expect(writeOciArchive(dir, 'hello', join(dir, 'x.tar'))).rejects.toThrow(/full name/);
  });
});

describe('lddPaths', () => {
  it('takes the resolved path of each library and the loader, not the vdso', () => {
    const output = ['\tlinux-vdso.so.1 (0x00007ffd)', '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f09)', '\t/lib64/ld-linux-x86-64.so.2 (0x00007f0a)'].join('\n');
    expect(lddPaths(output)).toEqual(['/lib/x86_64-linux-gnu/libstdc++.so.6', '/lib64/ld-linux-x86-64.so.2']);
  });
});
