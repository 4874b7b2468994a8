/**
 * A/B of two versions of the dispatcher on the same machine, in one run: `npm run bench:ab -- --base HEAD~1
 * [--rows 100000] [--rounds 4] [--batch-size 1] [--concurrency 64]`. The base commit is checked out into a
 * temporary git worktree (sharing node_modules), the working tree is the candidate. Each round writes the
 * same rows to a fresh slot and drains them with each version in turn, alternating which goes first; the
 * figures are the dispatcher's CPU per 1000 events and the rate at the sink, with medians and the
 * candidate/base ratio. This machine's speed drifts within minutes by more than most changes move a figure,
 * so a change is judged by alternating runs of both, never by a figure against one taken earlier.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { EVENTIDE_BIN } from '../common/binHeapFlags.js';
import { runBench } from './benchMain.js';
import { benchFlags } from './flags.js';
import { createSlots, dropSlot, SCHEMA, writeRows } from './harness.js';
import { drainBacklog } from './phases/e2e.js';
import { fmtRate, record } from './report.js';

const { number, text } = benchFlags(['base', 'rows', 'rounds', 'batch-size', 'concurrency']);
const base = text('base', 'HEAD', 'HEAD');
const rows = number('rows', 100_000, 20_000);
const rounds = number('rounds', 4, 2);
const batchSize = number('batch-size', 1, 1);
const concurrency = number('concurrency', 64, 64);

const repo = dirname(dirname(EVENTIDE_BIN));
const baseCommit = execFileSync('git', ['-C', repo, 'rev-parse', '--short', base], { encoding: 'utf8' }).trim();
const worktree = join(mkdtempSync(join(tmpdir(), 'eventide-ab-')), 'base');
execFileSync('git', ['-C', repo, 'worktree', 'add', '--detach', '--quiet', worktree, baseCommit]);
symlinkSync(join(repo, 'node_modules'), join(worktree, 'node_modules'));
process.once('exit', () => {
  execFileSync('git', ['-C', repo, 'worktree', 'remove', '--force', worktree]);
  rmSync(dirname(worktree), { recursive: true, force: true });
});

const versions = [
  { name: `base ${baseCommit}`, bin: join(worktree, 'bin', 'eventide.mjs') },
  { name: 'working tree', bin: EVENTIDE_BIN },
];

/** The middle value (the upper one of an even count). */
function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

runBench(`eventide A/B (${rows.toLocaleString('en-US')} events, batch ${batchSize}, c=${concurrency}, ${rounds} rounds)`, async ({ pgServer, db, sink }) => {
  await db.query(SCHEMA);
  const figures = new Map(versions.map((v) => [v.name, { cpuPerK: [] as number[], rate: [] as number[] }]));
  for (let round = 0; round < rounds; round++) {
    for (const version of round % 2 === 0 ? versions : [...versions].reverse()) {
      await createSlots(db, ['ab']);
      try {
        await writeRows(db, rows);
        const { cpuPerK, rate } = await drainBacklog(pgServer.url, sink, 'ab', rows, { concurrency, batchSize }, version.bin);
        figures.get(version.name)!.cpuPerK.push(cpuPerK);
        figures.get(version.name)!.rate.push(rate);
        console.log(`  round ${round + 1}, ${version.name}: ${cpuPerK.toFixed(0)} ms CPU per 1000 events, ${fmtRate(rate, 'ev/s')}`);
      } finally {
        await dropSlot(db, 'ab');
      }
    }
  }
  const [baseline, candidate] = versions.map((v) => figures.get(v.name)!);
  const cpu = { base: median(baseline!.cpuPerK), candidate: median(candidate!.cpuPerK) };
  const rate = { base: median(baseline!.rate), candidate: median(candidate!.rate) };
  record({
    figure: 'dispatcher CPU per 1000 events (median)',
    value: `${cpu.candidate.toFixed(0)} ms (${candidate!.cpuPerK.map((c) => c.toFixed(0)).join(' ')})`,
    baseline: `${versions[0]!.name} ${cpu.base.toFixed(0)} ms (${baseline!.cpuPerK.map((c) => c.toFixed(0)).join(' ')})`,
    ratio: cpu.candidate / cpu.base,
    target: '',
  });
  record({
    figure: 'events/s at the sink (median)',
    value: fmtRate(rate.candidate, 'ev/s'),
    baseline: `${versions[0]!.name} ${fmtRate(rate.base, 'ev/s')}`,
    ratio: rate.candidate / rate.base,
    target: '',
  });
});
