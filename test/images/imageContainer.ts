/**
 * Runs an image from its OCI archive the way a kubelet with the chart's security context would, without
 * a cluster: buildah unpacks the archive, runc runs the image's entrypoint as the image's user, with a
 * read-only root filesystem, a writable /tmp (the pods' emptyDir), no capabilities and no_new_privs. The
 * container shares the host's network namespace so that tests reach its port on 127.0.0.1.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Buildah } from '../../deploy/images/buildah.js';
import { runCommand } from '../../deploy/images/command.js';
import { type ImageConfig, readArchive } from './imageArchive.js';

const RUNC_ROOT = '/run/eventide-images/runc';

/** What to run from an image, in the terms of a pod's container. */
export interface ContainerSpec {
  archive: string;
  /** As a pod's `command`: replaces the image's entrypoint (and drops its CMD). */
  command?: string[];
  /** As a pod's `args`: replaces the image's CMD. */
  args?: string[];
  /** Added to (and overriding) the image's environment. */
  env?: Record<string, string>;
  /** Host paths mounted read-only, as a ConfigMap or Secret volume would be. */
  binds?: { source: string; destination: string }[];
}

/** How the container's process ended: its exit code (128 + n after signal n, as runc reports it). */
export interface Exit {
  code: number | null;
}

/** The process arguments a kubelet derives from the image config and the pod's command/args. */
export function processArgs(config: ImageConfig, command: string[] | undefined, args: string[] | undefined): string[] {
  const entrypoint = command ?? config.Entrypoint ?? [];
  const cmd = args ?? (command ? [] : (config.Cmd ?? []));
  return [...entrypoint, ...cmd];
}

/** `uid:gid` of the image's USER; it must be numeric, as a pod with runAsNonRoot requires. */
export function numericUser(user: string | undefined): { uid: number; gid: number } {
  const match = /^(\d+)(?::(\d+))?$/.exec(user ?? '');
  if (!match) throw new Error(`image USER ${JSON.stringify(user)} is not numeric; runAsNonRoot cannot verify it`);
  return { uid: Number(match[1]), gid: Number(match[2] ?? match[1]) };
}

function mergeEnv(image: readonly string[], extra: Record<string, string>): string[] {
  const env = new Map(image.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  for (const [name, value] of Object.entries(extra)) env.set(name, value);
  return [...env].map(([name, value]) => `${name}=${value}`);
}

function runtimeSpec(rootfs: string, config: ImageConfig, spec: ContainerSpec): object {
  const { uid, gid } = numericUser(config.User);
  const none: string[] = [];
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid, gid, additionalGids: [gid] },
      args: processArgs(config, spec.command, spec.args),
      env: mergeEnv(config.Env ?? [], spec.env ?? {}),
      cwd: config.WorkingDir || '/',
      capabilities: { bounding: none, effective: none, permitted: none, inheritable: none, ambient: none },
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'image-test',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      // The pods' emptyDir at /tmp: the one writable place.
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
      { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] },
      ...(spec.binds ?? []).map((bind) => ({ destination: bind.destination, type: 'bind', source: bind.source, options: ['rbind', 'ro'] })),
    ],
    linux: {
      // No network namespace: the container's ports are the host's.
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** One running container; `output` collects its stdout and stderr. */
export class ImageContainer {
  output = '';
  readonly exited: Promise<Exit>;
  private readonly id = `image-test-${randomBytes(4).toString('hex')}`;
  private process: ChildProcessWithoutNullStreams | undefined;

  private constructor(
    private readonly buildah: Buildah,
    private readonly workingContainer: string,
    private readonly bundle: string,
    /** The image's root filesystem (read-only inside the container). */
    readonly rootfs: string,
    private readonly config: ImageConfig,
    private readonly spec: ContainerSpec,
  ) {
    this.exited = new Promise<Exit>((resolve, reject) => {
      mkdirSync(RUNC_ROOT, { recursive: true });
      writeFileSync(join(this.bundle, 'config.json'), JSON.stringify(runtimeSpec(this.rootfs, this.config, this.spec)));
      const child = spawn('runc', ['--root', RUNC_ROOT, 'run', '--bundle', this.bundle, this.id], { stdio: ['pipe', 'pipe', 'pipe'] });
      this.process = child;
      child.stdin.end();
      child.stdout.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
      child.once('error', reject);
      child.once('close', (code) => resolve({ code }));
    });
  }

  /** Unpacks the archive's image into a buildah working container and starts its entrypoint under runc. */
  static async start(buildah: Buildah, spec: ContainerSpec): Promise<ImageContainer> {
    const { config } = readArchive(spec.archive);
    const workingContainer = (await buildah.run(`unpack ${spec.archive}`, ['from', '--quiet', `oci-archive:${spec.archive}`])).trim();
    const rootfs = (await buildah.run(`mount ${workingContainer}`, ['mount', workingContainer])).trim();
    const bundle = mkdtempSync(join(tmpdir(), 'image-test-bundle-'));
    return new ImageContainer(buildah, workingContainer, bundle, rootfs, config, spec);
  }

  /** Waits for the container to exit by itself, or kills it after `ms`. */
  async waitExit(ms: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
    const outcome = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (outcome !== 'timeout') return outcome;
    await this.signal('KILL');
    throw new Error(`container did not exit within ${ms} ms; output:\n${this.output}`);
  }

  /** Sends `signal` to the container's process 1, as the kubelet does on stop. */
  async signal(signal: 'TERM' | 'KILL'): Promise<void> {
    await runCommand(`signal ${this.id}`, 'runc', ['--root', RUNC_ROOT, 'kill', this.id, signal]).catch(() => undefined);
  }

  /** Kills the container if it still runs, and removes it and its working container. */
  async remove(): Promise<void> {
    if (this.process && this.process.exitCode === null && this.process.signalCode === null) {
      await this.signal('KILL');
      await this.exited.catch(() => undefined);
    }
    await runCommand(`delete ${this.id}`, 'runc', ['--root', RUNC_ROOT, 'delete', '--force', this.id]).catch(() => undefined);
    await this.buildah.run(`remove ${this.workingContainer}`, ['rm', this.workingContainer]).catch(() => undefined);
    rmSync(this.bundle, { recursive: true, force: true });
  }
}
