/**
 * The image the Dockerfiles' `FROM node:20-slim` finds, made on this machine: nothing can be pulled here.
 *
 * It holds what the Dockerfiles use of the real node:20-slim, in the same places: the host's Node 20 at
 * /usr/local/bin/node with the shared libraries ldd lists, the host's npm at /usr/local/lib/node_modules/npm,
 * a /bin/sh with the usual commands for RUN steps (busybox, static), the host's CA bundle (npm's cafile),
 * and /etc/passwd with root and node (1000). No Debian userland: about 125 MB, made in seconds from files already on disk,
 * where a debootstrap'd bookworm is 200 MB, takes half a minute more and needs the Debian mirror.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, realpathSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Buildah, BuildahOutput } from './buildah.js';
import { ImageBuildError } from './errors.js';
import { which } from './hostTools.js';
import { InputHash, readStamp, writeStamp } from './stamp.js';

/** The name buildah resolves `FROM node:20-slim` to. */
export const BASE_IMAGE_REF = 'docker.io/library/node:20-slim';
const NODE_MAJOR = 20;
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/** A host file and where it goes in the image. */
interface Placed {
  source: string;
  target: string;
}

/** The host files the base image is made of. */
interface BaseSources {
  nodeVersion: string;
  files: Placed[];
  /** The npm package directory (copied whole). */
  npmDir: string;
  busybox: string;
  busyboxApplets: string[];
}

/** Shared libraries `binary` loads, as ldd lists them (none for a static binary). */
function sharedLibraries(binary: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return []; // "not a dynamic executable"
  }
  return [...out.matchAll(/(?:=> |^\s*)(\/\S+)/gm)].map((m) => m[1]!);
}

function findSources(): BaseSources {
  const [major] = process.versions.node.split('.');
  if (Number(major) !== NODE_MAJOR) {
    throw new ImageBuildError(`the base image is node:${NODE_MAJOR}-slim, made from the Node that runs this (${process.version}): run it with Node ${NODE_MAJOR}`);
  }
  const node = realpathSync(process.execPath);
  const npmCli = which('npm');
  const busybox = which('busybox');
  if (!npmCli || !busybox) throw new ImageBuildError(`the base image needs npm and busybox on PATH (missing: ${[!npmCli && 'npm', !busybox && 'busybox'].filter(Boolean).join(', ')})`);
  // .../node_modules/npm/bin/npm-cli.js → .../node_modules/npm
  const npmDir = dirname(dirname(realpathSync(npmCli)));
  const libraries = [...new Set([...sharedLibraries(node), ...sharedLibraries(busybox)])];
  const busyboxApplets = execFileSync(busybox, ['--list-full'], { encoding: 'utf8' })
    .split('\n')
    .filter((applet) => applet.includes('/'));
  return {
    nodeVersion: process.versions.node,
    npmDir,
    busybox,
    busyboxApplets,
    files: [
      { source: node, target: '/usr/local/bin/node' },
      { source: busybox, target: '/usr/bin/busybox' },
      { source: CA_BUNDLE, target: CA_BUNDLE },
      ...libraries.map((library) => ({ source: realpathSync(library), target: library })),
    ],
  };
}

/** Changes when any file going into the image, or this recipe, changes. */
function baseHash(sources: BaseSources): string {
  const hash = new InputHash().add('recipe', readFileSync(fileURLToPath(import.meta.url)));
  for (const { source, target } of sources.files) {
    const { size, mtimeMs } = statSync(source);
    hash.add(target, `${source} ${size} ${mtimeMs}`);
  }
  return hash
    .add('npm', readFileSync(join(sources.npmDir, 'package.json')))
    .add('applets', sources.busyboxApplets.join('\n'))
    .digest();
}

/** `/bin/x` → `/usr/bin/x`: the image has a merged /usr, as Debian bookworm does. */
function underUsr(path: string): string {
  return path.replace(/^\/?(bin|sbin|lib|lib64)\//, '/usr/$1/');
}

/** Writes the base image's files into `root` (an empty, mounted container). */
function populate(root: string, sources: BaseSources): void {
  const at = (path: string): string => join(root, path);
  for (const dir of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64', 'usr/local/bin', 'usr/local/lib/node_modules', 'usr/local/sbin', 'etc/ssl/certs', 'home/node', 'root', 'run', 'tmp', 'var/tmp']) {
    mkdirSync(at(dir), { recursive: true });
  }
  for (const link of ['bin', 'sbin', 'lib', 'lib64']) symlinkSync(`usr/${link}`, at(link));
  chmodSync(at('tmp'), 0o1777);
  chmodSync(at('var/tmp'), 0o1777);
  chmodSync(at('root'), 0o700);
  chownSync(at('home/node'), 1000, 1000);
  for (const { source, target } of sources.files) {
    mkdirSync(dirname(at(underUsr(target))), { recursive: true });
    copyFileSync(source, at(underUsr(target)));
  }
  for (const applet of sources.busyboxApplets) {
    const target = at(underUsr(`/${applet}`));
    if (!existsSync(target)) symlinkSync('/usr/bin/busybox', target);
  }
  cpSync(sources.npmDir, at('usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', at('usr/local/bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', at('usr/local/bin/npx'));
  writeFileSync(at('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n');
  writeFileSync(at('etc/group'), 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n');
  writeFileSync(at('etc/nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n');
  // npm trusts what this machine trusts (its bundle may hold the CA of a TLS-inspecting proxy that Node's
  // built-in list lacks): `npm ci` in RUN steps reaches the registry as the host's npm does.
  mkdirSync(at('usr/local/etc'), { recursive: true });
  writeFileSync(at('usr/local/etc/npmrc'), `cafile=${CA_BUNDLE}\n`);
}

/** The base image as it ended up in buildah's storage. */
export interface BaseImage {
  ref: string;
  id: string;
  hash: string;
  built: boolean;
  seconds: number;
  size: number;
}

/**
 * Makes the base image in buildah's storage unless the stamp says the same inputs already made the image
 * that is there.
 */
export async function ensureBaseImage(buildah: Buildah, stampFile: string, output: BuildahOutput): Promise<BaseImage> {
  const started = performance.now();
  const sources = findSources();
  const hash = baseHash(sources);
  const stamp = readStamp(stampFile);
  const existing = await buildah.image(BASE_IMAGE_REF);
  if (stamp?.hash === hash && existing?.id === stamp.id) {
    return { ref: BASE_IMAGE_REF, id: existing.id, hash, built: false, seconds: (performance.now() - started) / 1000, size: existing.size };
  }
  const container = (await buildah.run('start the base image', ['from', '--pull=never', 'scratch'], output)).trim();
  try {
    const root = (await buildah.run('mount the base image', ['mount', container], output)).trim();
    populate(root, sources);
    await buildah.run('unmount the base image', ['umount', container], output);
    await buildah.run(
      'configure the base image',
      [
        'config',
        '--os',
        'linux',
        '--arch',
        'amd64',
        '--env',
        PATH_ENV,
        '--env',
        `NODE_VERSION=${sources.nodeVersion}`,
        '--workingdir',
        '/',
        '--cmd',
        '["node"]',
        '--created-by',
        'deploy/images/baseImage.ts (host node, npm, busybox)',
        container,
      ],
      output,
    );
    await buildah.run('commit the base image', ['commit', '--quiet', '--rm', container, BASE_IMAGE_REF], output);
  } catch (error) {
    await buildah.run('remove the base container', ['rm', container]).catch(() => undefined);
    throw error;
  }
  const image = await buildah.image(BASE_IMAGE_REF);
  if (!image) throw new ImageBuildError(`${BASE_IMAGE_REF} is not in buildah's storage right after its commit`);
  const seconds = (performance.now() - started) / 1000;
  writeStamp(stampFile, { hash, id: image.id, seconds, builtAt: new Date().toISOString() });
  if (existing && existing.id !== image.id) await buildah.removeUnnamed(existing.id);
  return { ref: BASE_IMAGE_REF, id: image.id, hash, built: true, seconds, size: image.size };
}
