import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DEMO = fileURLToPath(new URL('./demo.ts', import.meta.url));

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts `npm run demo`'s program in a process group of its own (as a terminal runs it), with a TMPDIR of
 * its own, waits until orders are flowing and a function has scaled up from zero (its progress lines say
 * so every 2 s when the output is not a terminal), delivers SIGINT as `signalGroup` says, and reports
 * what is left.
 */
async function interruptDemo(signalGroup: boolean): Promise<{ code: number | null; output: string; groupAlive: boolean; tempLeft: string[] }> {
  const tmp = mkdtempSync(join(tmpdir(), 'eventide-demo-'));
  chmodSync(tmp, 0o755); // Postgres runs as another user when the tests run as root
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', DEMO, '--duration', '120'], {
      detached: true,
      env: { ...process.env, TMPDIR: tmp },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!/placing \d+ orders\/s/.test(output)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the demo did not start placing orders:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // Replicas started by the local scaler are stopped too: interrupt once one is ready and serving.
    while (!/validate-order [1-9]\/\d/.test(output)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no replica of validate-order became ready:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1000)); // deliveries in flight
    // Ctrl-C in a terminal signals the whole foreground group; `kill -INT <pid>` only the demo.
    if (signalGroup) process.kill(-child.pid!, 'SIGINT');
    else child.kill('SIGINT');
    const code = await exited;
    // The demo's children (functions, dispatcher, Postgres) share its group: give them a moment to go.
    for (let waited = 0; waited < 10_000 && groupAlive(child.pid!); waited += 100) await new Promise((r) => setTimeout(r, 100));
    const alive = groupAlive(child.pid!);
    if (alive) process.kill(-child.pid!, 'SIGKILL');
    // tsx keeps its compile cache (tsx-<uid>) in TMPDIR on purpose; everything else must be gone.
    const tempLeft = existsSync(tmp) ? readdirSync(tmp).filter((entry) => !entry.startsWith('tsx-')) : [];
    return { code, output, groupAlive: alive, tempLeft };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

describe('food-ordering demo, interrupted', () => {
  it.each([
    ['Ctrl-C (SIGINT to the process group)', true],
    ['SIGINT to the demo process alone', false],
  ])(
    '%s stops every process it started and removes its database',
    async (_name, signalGroup) => {
      const result = await interruptDemo(signalGroup);
      expect(result.output).toMatch(/stopping…/);
      // Replicas stopped on purpose are not reported as crashes.
      expect(result.output).not.toMatch(/exited with \d+:/);
      expect(result.code, result.output).toBe(130);
      expect(result.groupAlive).toBe(false);
      expect(result.tempLeft).toEqual([]);
    },
    120_000,
  );
});
