import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SourceDatabase } from './dispatcherFixture.js';

const BIN = fileURLToPath(new URL('../../bin/eventide.mjs', import.meta.url));

/** One pino line, as the dispatcher prints it. */
export interface LogLine {
  level: number;
  msg: string;
  time: number;
  [field: string]: unknown;
}

/** The JSON log lines in a process's output (other lines are skipped). */
export function logLines(output: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const text of output.split('\n')) {
    if (!text.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      // a line cut off mid-write
    }
  }
  return lines;
}

/** A row of eventide.dead_letters, with the stored event parsed. */
export interface DeadLetterRow {
  id: number;
  trigger: string;
  event_id: string;
  event: {
    id: string;
    source: string;
    type: string;
    subject: string;
    time: string;
    specversion: string;
    data: { op: string; new: Record<string, unknown> | null; old: Record<string, unknown> | null };
  };
  attempts: number;
  last_status: number | null;
  last_error: string;
  reason: string;
  first_attempt_at: Date;
  dead_lettered_at: Date;
  replayed_at: Date | null;
  replay_count: number;
}

/** The dead letters of one trigger (namespace/name), or of all, oldest first; [] before the table exists. */
export async function deadLetterRows(db: SourceDatabase, trigger?: string): Promise<DeadLetterRow[]> {
  const { rows: exists } = await db.sql("SELECT to_regclass('eventide.dead_letters') IS NOT NULL AS ok");
  if (!(exists[0] as { ok: boolean }).ok) return [];
  const { rows } = await db.sql(
    `SELECT id::int AS id, trigger, event_id, event, attempts, last_status, last_error, reason, first_attempt_at, dead_lettered_at, replayed_at, replay_count
       FROM eventide.dead_letters ${trigger ? 'WHERE trigger = $1' : ''} ORDER BY id`,
    trigger ? [trigger] : [],
  );
  return rows as DeadLetterRow[];
}

/** What a run of the eventide command printed, and how it exited. */
export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `eventide` command (bin/eventide.mjs) to completion. */
export function runEventide(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`eventide ${args.join(' ')} did not finish in ${timeoutMs}ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Event ids waiting in the trigger backlog (none before the table exists). */
export async function backlogEventIds(db: SourceDatabase): Promise<Set<string>> {
  const { rows } = await db.sql("SELECT to_regclass('eventide.backlog') IS NOT NULL AS ok");
  if (!(rows[0] as { ok: boolean }).ok) return new Set();
  return new Set((await db.sql('SELECT event_id FROM eventide.backlog')).rows.map((r) => String(r.event_id)));
}
