/**
 * The images `npm run images` builds from the project's Dockerfiles (buildah, a locally made node:20-slim,
 * nothing pulled), run as the chart and the operator run them: as user 10001, read-only root filesystem,
 * /tmp writable, no capabilities. The first run builds every image (several minutes: six `npm ci`s);
 * later runs find them up to date.
 */

import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventideEvent } from '../../api/v1alpha1/event.js';
import { type BuildReport, buildahFor, buildImages, type ImageResult } from '../../deploy/images/build.js';
import { contextSources, dockerIgnore } from '../../deploy/images/buildInputs.js';
import { imageCatalog, shortName } from '../../deploy/images/catalog.js';
import { ensureCommands } from '../../deploy/images/hostTools.js';
import { parseImagesArgs } from '../../deploy/images/main.js';
import { binaryModeHeaders } from '../../dispatcher/delivery/requestBody.js';
import { readArchive } from './imageArchive.js';
import { type ContainerSpec, ImageContainer, processArgs } from './imageContainer.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const STATE_DIR = join(REPO_ROOT, '.cache/images');

describe('npm run images: flags', () => {
  const cases = [
    { name: 'no flags: every image into .cache/images', given: [], expect: { only: [], outDir: STATE_DIR, force: false } },
    { name: '--only takes a comma-separated list and repeats', given: ['--only', 'a,b', '--only=c'], expect: { only: ['a', 'b', 'c'] } },
    { name: '--out is relative to where npm was run', given: ['--out', 'out'], expect: { outDir: '/somewhere/out' } },
    { name: '--force rebuilds', given: ['--force'], expect: { force: true } },
  ];
  it.each(cases)('$name', ({ given, expect: expected }) => {
    expect(parseImagesArgs(given, '/somewhere')).toMatchObject(expected);
  });

  it('refuses an unknown flag and a flag without its value', () => {
    expect(() => parseImagesArgs(['--nope'], '/')).toThrow(expect.objectContaining({ code: 'EVENTIDE_IMAGES_USAGE' }));
    expect(() => parseImagesArgs(['--only'], '/')).toThrow(/--only needs a value/);
  });
});

describe('build inputs', () => {
  const sources = [
    { name: 'COPY sources in every stage, not the destination', given: 'FROM a AS b\nCOPY package.json lock.json ./\nFROM a\nCOPY api ./api', expect: ['package.json', 'lock.json', 'api'] },
    { name: 'a COPY from another stage reads no context file', given: 'COPY --from=deps /app/node_modules ./node_modules\nCOPY --chown=1:1 src/ /src', expect: ['src'] },
    { name: 'continued lines and the JSON form', given: 'COPY a \\\n  b /x\nADD ["c d", "/y"]', expect: ['a', 'b', 'c d'] },
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile's variable, not a template
    { name: 'a source built from a variable: only the whole context is safe', given: 'ARG X\nCOPY ${X} /x', expect: undefined },
  ];
  it.each(sources)('$name', ({ given, expect: expected }) => {
    expect(contextSources(given)).toEqual(expected);
  });

  const ignore = dockerIgnore('**/node_modules\ntest\n**/*.test.ts\nfunctions/*/testdata\n!test/keep.ts\n');
  const paths = [
    { name: 'node_modules at any depth, and what is below it', given: 'functions/x/node_modules/pkg/index.js', expect: true },
    { name: 'a directory pattern covers its files', given: 'test/images/images.test.ts', expect: true },
    { name: 'a test file anywhere', given: 'operator/settings.test.ts', expect: true },
    { name: 'one-segment star', given: 'functions/runtime/testdata/slowFunction.ts', expect: true },
    { name: 'an exception brings a path back', given: 'test/keep.ts', expect: false },
    { name: 'a source file stays', given: 'operator/settings.ts', expect: false },
    { name: 'a prefix of a pattern is not a match', given: 'testing/x.ts', expect: false },
  ];
  it.each(paths)('.dockerignore: $name', ({ given, expect: expected }) => {
    expect(ignore(given)).toBe(expected);
  });
});

describe('kubelet semantics of command and args', () => {
  const config = { Entrypoint: ['node', 'bin/eventide.mjs'], Cmd: ['dispatch'] };
  const cases = [
    { name: 'neither: entrypoint then CMD', command: undefined, args: undefined, expect: ['node', 'bin/eventide.mjs', 'dispatch'] },
    { name: 'args replace CMD', command: undefined, args: ['--help'], expect: ['node', 'bin/eventide.mjs', '--help'] },
    { name: 'command replaces the entrypoint and drops CMD', command: ['sh'], args: undefined, expect: ['sh'] },
  ];
  it.each(cases)('$name', ({ command, args, expect: expected }) => {
    expect(processArgs(config, command, args)).toEqual(expected);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Polls GET url until it answers 200; fails early if the container exits. */
async function waitFor200(container: ImageContainer, url: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let exited = false;
  void container.exited.then(() => (exited = true));
  while (Date.now() < deadline && !exited) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer 200 within ${ms} ms${exited ? ' (the container exited)' : ''}; output:\n${container.output}`);
}

describe('images built from the Dockerfiles', () => {
  let report: BuildReport;
  const buildah = buildahFor(STATE_DIR);
  const containers: ImageContainer[] = [];
  const archive = (name: string): string => report.images.find((image) => image.name === name)!.archive;
  const start = async (spec: ContainerSpec): Promise<ImageContainer> => {
    const container = await ImageContainer.start(buildah, spec);
    containers.push(container);
    return container;
  };

  beforeAll(async () => {
    await ensureCommands({ runc: 'runc' });
    report = await buildImages({ repoRoot: REPO_ROOT, outDir: STATE_DIR, stateDir: STATE_DIR });
  }, 45 * 60_000);

  afterAll(async () => {
    for (const container of containers) await container.remove();
  });

  it('writes one archive per image, named in full as the chart and the manifests refer to it, running as 10001', () => {
    const expected = imageCatalog(REPO_ROOT).map((image) => image.ref);
    expect(expected).toEqual(
      expect.arrayContaining([
        'ghcr.io/eventide-dev/eventide-operator:0.1.0',
        'ghcr.io/eventide-dev/eventide-dispatcher:0.1.0',
        'ghcr.io/eventide-dev/eventide-function-runtime:0.1.0',
        'ghcr.io/eventide-dev/food-validate-order:0.1.0',
      ]),
    );
    expect(report.images.map((image) => image.ref)).toEqual(expected);
    for (const image of report.images) {
      expect(image.archive).toBe(join(STATE_DIR, `${shortName(image.ref)}.oci.tar`));
      const { refName, config } = readArchive(image.archive);
      expect(refName, image.archive).toBe(image.ref);
      expect(config.User, image.ref).toBe('10001:10001');
    }
    // One Dockerfile, four images: each must carry its own FUNCTION_NAME (a stale layer cache would not).
    for (const image of imageCatalog(REPO_ROOT).filter((spec) => spec.buildArgs.FUNCTION_NAME)) {
      expect(readArchive(archive(image.name)).config.Env, image.name).toContain(`FUNCTION_NAME=${image.buildArgs.FUNCTION_NAME}`);
    }
  });

  it(
    'builds nothing the second time when nothing that goes into an image changed',
    async () => {
      const started = performance.now();
      const again = await buildImages({ repoRoot: REPO_ROOT, outDir: STATE_DIR, stateDir: STATE_DIR });
      const seconds = (performance.now() - started) / 1000;
      expect(again.base.built).toBe(false);
      expect(again.images.filter((image: ImageResult) => image.built).map((image) => image.name)).toEqual([]);
      expect(seconds).toBeLessThan(20);
    },
    45 * 60_000,
  ); // if a source changed since the first run, it rebuilds (and fails) rather than time out mid-build

  it('dispatcher: prints its usage from the bundle made at build time, on a read-only root', async () => {
    const container = await start({ archive: archive('eventide-dispatcher'), args: ['--help'] });
    const exit = await container.waitExit(30_000);
    expect(container.output).toContain('Usage: eventide dispatch');
    expect(exit.code, container.output).toBe(0);
    expect(existsSync(join(container.rootfs, 'app/node_modules/.cache/eventide/cli.mjs'))).toBe(true);
  });

  it('dispatcher: its default command refuses to start without a database, saying so', async () => {
    const container = await start({ archive: archive('eventide-dispatcher'), args: ['dispatch', '-f', '/nonexistent'] });
    const exit = await container.waitExit(30_000);
    expect(exit.code, container.output).not.toBe(0);
    expect(container.output).toMatch(/^eventide: --database-url .*is required/m);
  });

  it('operator: prints its usage', async () => {
    const container = await start({ archive: archive('eventide-operator'), args: ['--help'] });
    const exit = await container.waitExit(30_000);
    expect(container.output).toContain('Usage: eventide-operator');
    expect(exit.code, container.output).toBe(0);
  });

  it('operator: starts as 10001 on a read-only root (tsx compiling into /tmp) and reconciles from its informers', async () => {
    const port = await freePort();
    // As in a pod (the in-cluster config), with no apiserver behind it: getting as far as its informers'
    // list/watch means every module loaded and started.
    const container = await start({
      archive: archive('eventide-operator'),
      args: ['--namespace=eventide-system', `--metrics-port=${port}`, '--log-level=info'],
      env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '1' },
    });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !/"name":"eventide-operator".*"msg":"list\/watch failed/.test(container.output)) await new Promise((r) => setTimeout(r, 200));
    expect(container.output).toMatch(/"name":"eventide-operator".*"msg":"list\/watch failed/);
  });

  it('operator: without a kubeconfig, outside a pod, stops with a message that says so', async () => {
    const port = await freePort();
    const container = await start({ archive: archive('eventide-operator'), args: ['--namespace=eventide-system', `--metrics-port=${port}`, '--log-level=info'] });
    const exit = await container.waitExit(30_000);
    expect(exit.code, container.output).not.toBe(0);
    expect(container.output).toContain('no cluster to connect to: pass --kubeconfig <file>, set KUBECONFIG, or run in a pod (KUBERNETES_SERVICE_HOST is not set)');
    expect(exit.code).toBe(2);
  });

  const functions = imageCatalog(REPO_ROOT).filter((image) => image.buildArgs.FUNCTION_NAME);
  it.each(functions.map((image) => image.name))('%s: serves /healthz, then drains and exits 0 on SIGTERM', async (name) => {
    const port = await freePort();
    // The pool connects on the first event only; a health check needs no database.
    const container = await start({ archive: archive(name), env: { PORT: String(port), DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' } });
    await waitFor200(container, `http://127.0.0.1:${port}/healthz`, 30_000);
    await container.signal('TERM');
    const exit = await container.waitExit(15_000);
    expect(exit.code, container.output).toBe(0);
  });

  it('function runtime base: runs a handler put in /srv/function, as its Dockerfile documents', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runtime-handler-'));
    chmodSync(dir, 0o755); // readable by the image's user, as a ConfigMap volume is
    try {
      writeFileSync(join(dir, 'handler.ts'), "import { serve } from '@eventide/runtime';\nawait serve(async (event, { logger }) => { logger.info({ handled: event.id }, 'handled'); });\n");
      const port = await freePort();
      const container = await start({ archive: archive('eventide-function-runtime'), env: { PORT: String(port) }, binds: [{ source: dir, destination: '/srv/function' }] });
      await waitFor200(container, `http://127.0.0.1:${port}/healthz`, 30_000);
      const event: Omit<EventideEvent, 'data'> = {
        specversion: '1.0',
        id: 'image-test-1',
        source: '/eventide/food/new-order',
        type: 'dev.eventide.row.insert',
        subject: 'public.orders/1',
        time: '2026-01-02T03:04:05.123Z',
        datacontenttype: 'application/json',
      };
      const body = JSON.stringify({ op: 'insert', table: { schema: 'public', name: 'orders' }, old: null, new: { id: 1 }, lsn: '0/1', xid: 1, commitTime: event.time });
      const response = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: binaryModeHeaders(event), body });
      expect(response.status, container.output).toBeLessThan(300);
      await container.signal('TERM');
      expect((await container.waitExit(15_000)).code, container.output).toBe(0);
      expect(container.output).toContain('image-test-1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
