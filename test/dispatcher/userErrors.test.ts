/**
 * A user error of each kind, through the real `eventide` process, is one "eventide: <message>" with no
 * stack and exit code 1. No database is started: each case fails before one is needed (the URL, with a
 * password that must never be printed, points at a port nothing listens on).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { freePort } from '../../common/loopback.js';

const BIN = fileURLToPath(new URL('../../bin/eventide.mjs', import.meta.url));

/** Runs `eventide <args>` to its exit; returns its exit code and everything it printed. */
function runEventide(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('user errors are printed as "eventide: <message>", without a stack, exit 1', () => {
  let dir: string;
  /** A database URL nothing answers at. */
  let refusedUrl: string;

  /** A fresh manifest directory holding the given files. */
  function manifests(files: Record<string, string>): string {
    const made = mkdtempSync(join(dir, 'm-'));
    for (const [file, text] of Object.entries(files)) writeFileSync(join(made, file), text);
    return made;
  }

  /** Runs the command, checks the refusal is clean and returns its message. */
  async function refusal(args: string[]): Promise<string> {
    const { code, output } = await runEventide(args);
    expect(code, output).toBe(1);
    expect(output, 'a stack trace').not.toMatch(/^\s+at /m);
    expect(output).not.toContain('s3cr3t');
    const start = output.indexOf('eventide: ');
    expect(start, output).toBeGreaterThanOrEqual(0);
    return output.slice(start).trimEnd();
  }

  const trigger = (spec: Record<string, unknown> = {}) =>
    stringify({
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'EventTrigger',
      metadata: { name: 'orders-to-foo', namespace: 'test' },
      spec: { source: { connectionSecretRef: { name: 'db' } }, table: { name: 'orders' }, sink: { url: 'http://127.0.0.1:1/' }, ...spec },
    });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eventide-usererrors-'));
    refusedUrl = `postgres://app:s3cr3t@127.0.0.1:${await freePort()}/shop`;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('SettingsError: a bad flag', async () => {
    const path = manifests({ 't.yaml': trigger() });
    expect(await refusal(['dispatch', '--database-url', refusedUrl, '-f', path, '--port', 'abc'])).toBe('eventide: --port must be a positive integer, got "abc"');
  });

  it('ManifestError: a dangling link among the manifests (was told apart by "ENOENT" in its message)', async () => {
    const path = manifests({ 'a.yaml': trigger() });
    symlinkSync(join(path, 'gone.yaml'), join(path, 'b.yaml'));
    expect(await refusal(['dispatch', '--database-url', refusedUrl, '-f', path])).toBe(`eventide: ${join(path, 'b.yaml')}: no such file or directory`);
  });

  it('ManifestError: malformed YAML (was told apart by "invalid YAML" in its message)', async () => {
    const path = manifests({ 't.yaml': `${trigger()}  columns: [total\n` });
    expect(await refusal(['dispatch', '--database-url', refusedUrl, '-f', path])).toMatch(new RegExp(`^eventide: ${join(path, 't.yaml')}: invalid YAML: .* at line \\d+, column \\d+`));
  });

  it('InvalidResourceError: a field of the wrong type in the manifests a command reads', async () => {
    const path = manifests({ 't.yaml': trigger({ concurrency: 'many' }) });
    expect(await refusal(['invoke', '--database-url', refusedUrl, '-f', path, '--trigger', 'test/orders-to-foo', '--key', 'id=1'])).toBe(
      `eventide: ${join(path, 't.yaml')}: EventTrigger test/orders-to-foo is invalid: spec.concurrency: Expected integer, got "many"`,
    );
  });

  it('SourceProblemError: manifests with no EventTrigger in them', async () => {
    const path = manifests({ 'f.yaml': stringify({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: 'foo' }, spec: { image: 'img:1' } }) });
    expect(await refusal(['dispatch', '--database-url', refusedUrl, '-f', path])).toBe(`eventide: no EventTrigger found in ${path}`);
  });
});
