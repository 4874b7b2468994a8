import type { BackfillRecord } from './store.js';
import { FINISHED_PHASES } from './store.js';

/**
 * How `eventide backfill status` shows backfills: pure functions of a record, the time, and the
 * readings taken so far (for the rate). No I/O here; the command decides where the text goes.
 */

/** A reading of a backfill's progress: when (ms since the epoch, local clock) and how many rows were read by then. */
export interface RateSample {
  at: number;
  rowsRead: number;
}

/** Rows with thousands separators: 10,400. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** A rate in rows per second: 1,830 rows/s; below 10, one decimal (0.5 rows/s). */
export function formatRate(rowsPerSecond: number): string {
  const text = rowsPerSecond < 10 ? String(Math.round(rowsPerSecond * 10) / 10) : formatCount(rowsPerSecond);
  return `${text} rows/s`;
}

/** A span of time, compact as kubectl shows it: 45s, 2m5s, 1h2m, 3d4h. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d${h % 24}h` : `${d}d`;
}

/**
 * Rows read of the estimate, as a whole percentage rounded down; 100 only once Complete (the estimate
 * can be short of the rows there are, so a running backfill stops at 99). Undefined while there is
 * no estimate (a Pending backfill).
 */
export function progressPercent(record: Pick<BackfillRecord, 'phase' | 'rowsRead' | 'rowsEstimate'>): number | undefined {
  if (record.phase === 'Complete') return 100;
  if (record.rowsEstimate === null) return undefined;
  if (record.rowsEstimate <= 0) return record.rowsRead > 0 ? 99 : 0;
  return Math.min(99, Math.floor((record.rowsRead * 100) / record.rowsEstimate));
}

/** `[██████████░░░░░░░░░░]` for 50 % at width 20. */
export function progressBar(percent: number, width = 20): string {
  const filled = Math.max(0, Math.min(width, Math.floor((percent * width) / 100)));
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

/**
 * Rows per second over the readings of the last `windowMs` (and the one reading just before them,
 * so two readings further apart than the window still give a rate). Undefined with fewer than two
 * readings or none apart in time.
 */
export function sampledRate(samples: readonly RateSample[], windowMs = 10_000): number | undefined {
  const last = samples.at(-1);
  if (!last) return undefined;
  let first: RateSample | undefined;
  for (let i = samples.length - 2; i >= 0; i--) {
    first = samples[i];
    if (samples[i]!.at < last.at - windowMs) break;
  }
  if (!first || last.at <= first.at) return undefined;
  return Math.max(0, ((last.rowsRead - first.rowsRead) * 1000) / (last.at - first.at));
}

/** Adds a reading; drops readings the rate no longer needs, and all earlier ones when the count went back (a restart afresh). Pure. */
export function addSample(samples: readonly RateSample[], sample: RateSample, windowMs = 10_000): RateSample[] {
  const kept = samples.filter((s) => s.rowsRead <= sample.rowsRead && s.at <= sample.at);
  const next = [...(kept.length === samples.length ? kept : []), sample];
  // Keep the readings of the window, and the newest one before it.
  const inWindow = next.findIndex((s) => s.at >= sample.at - windowMs);
  return next.slice(Math.max(0, inWindow - 1));
}

/** The average rate of the whole run, from the record's own (server) times: while running up to its last update, once finished up to the end. */
export function averageRate(record: Pick<BackfillRecord, 'rowsRead' | 'startedAt' | 'finishedAt' | 'updatedAt'>): number | undefined {
  if (!record.startedAt) return undefined;
  const end = record.finishedAt ?? record.updatedAt;
  const ms = end.getTime() - record.startedAt.getTime();
  if (ms <= 0 || record.rowsRead === 0) return undefined;
  return (record.rowsRead * 1000) / ms;
}

/**
 * What the progress line shows as the rate and time left: a running backfill's rate from successive
 * readings when there are two (else its average so far), and the rows left of the estimate at that
 * rate. A backfill not running has neither.
 */
export function rateAndEta(
  record: Pick<BackfillRecord, 'phase' | 'rowsRead' | 'rowsEstimate' | 'startedAt' | 'finishedAt' | 'updatedAt'>,
  samples: readonly RateSample[] = [],
): { rate?: number; etaMs?: number } {
  if (record.phase !== 'Running') return {};
  const rate = sampledRate(samples) ?? averageRate(record);
  if (rate === undefined) return {};
  const left = record.rowsEstimate === null ? 0 : record.rowsEstimate - record.rowsRead;
  return left > 0 && rate > 0 ? { rate, etaMs: (left * 1000) / rate } : { rate };
}

/**
 * `[██████████░░░░░░░░░░] 52%  10,400 / 20,000 rows  1,830 rows/s  eta 5s`; without the bar when
 * `bar` is false (not a terminal), without the estimate while there is none; `sent` adds the rows sent.
 */
export function progressLine(record: Pick<BackfillRecord, 'phase' | 'rowsRead' | 'rowsEstimate'>, options: { bar?: boolean; sent?: number; rate?: number; etaMs?: number } = {}): string {
  const percent = progressPercent(record);
  const parts: string[] = [];
  if (percent !== undefined) parts.push(options.bar ? `${progressBar(percent)} ${percent}%` : `${percent}%`);
  parts.push(record.rowsEstimate !== null ? `${formatCount(record.rowsRead)} / ${formatCount(record.rowsEstimate)} rows` : `${formatCount(record.rowsRead)} rows`);
  if (options.sent !== undefined) parts.push(`${formatCount(options.sent)} sent`);
  if (options.rate !== undefined) parts.push(formatRate(options.rate));
  if (options.etaMs !== undefined) parts.push(`eta ${formatDuration(options.etaMs)}`);
  return parts.join('  ');
}

/** Lays out rows under headers in columns two spaces apart; the last column is not padded. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** Time from the first chunk to the end (or to `now` while unfinished); undefined before it started. */
export function runDuration(record: Pick<BackfillRecord, 'startedAt' | 'finishedAt'>, now: number): number | undefined {
  if (!record.startedAt) return undefined;
  return (record.finishedAt?.getTime() ?? now) - record.startedAt.getTime();
}

export const LIST_HEADERS = ['NAME', 'TRIGGER', 'PHASE', 'PROGRESS', 'ROWS', 'SENT', 'ESTIMATE', 'DURATION', 'AGE', 'MESSAGE'] as const;

/** The table of `eventide backfill status` without a name. `now` is the database server's clock; `bar` puts a short bar before the percentage. */
export function listTable(records: readonly BackfillRecord[], now: number, options: { bar?: boolean } = {}): string[] {
  const rows = records.map((r) => {
    const percent = progressPercent(r);
    const duration = runDuration(r, now);
    return [
      r.name,
      r.trigger,
      r.phase,
      percent === undefined ? '-' : options.bar ? `${progressBar(percent, 10)} ${percent}%` : `${percent}%`,
      formatCount(r.rowsRead),
      formatCount(r.rowsSent),
      r.rowsEstimate === null ? '-' : formatCount(r.rowsEstimate),
      duration === undefined ? '-' : formatDuration(duration),
      formatDuration(now - r.createdAt.getTime()),
      r.message ?? '',
    ];
  });
  return formatTable(LIST_HEADERS, rows);
}

/** One backfill in detail. `now` is the server's clock; `samples` the readings so far (for the rate); `bar` draws the progress bar. */
export function detailLines(record: BackfillRecord, now: number, options: { samples?: readonly RateSample[]; bar?: boolean } = {}): string[] {
  const { rate, etaMs } = rateAndEta(record, options.samples);
  const average = FINISHED_PHASES.has(record.phase) ? averageRate(record) : undefined;
  const duration = runDuration(record, now);
  const when = (d: Date | null) => (d ? `${d.toISOString()} (${formatDuration(now - d.getTime())} ago)` : '-');
  const fields: [string, string][] = [
    ['Name', record.name],
    ['Trigger', record.trigger],
    ['Origin', record.origin === 'cli' ? 'eventide backfill start' : 'Backfill resource'],
    ['Phase', record.phase],
    ['Progress', progressLine(record, { bar: options.bar ?? false, ...(rate !== undefined ? { rate } : {}), ...(etaMs !== undefined ? { etaMs } : {}) })],
    ['Rows read', formatCount(record.rowsRead)],
    ['Rows sent', formatCount(record.rowsSent)],
    ['Estimate', record.rowsEstimate === null ? '-' : formatCount(record.rowsEstimate)],
    ['Filter', record.filter ?? '-'],
    ['Batch size', formatCount(record.batchSize)],
    ['Rate limit', record.rowsPerSecond === undefined ? 'none' : formatRate(record.rowsPerSecond)],
    ['Cursor', record.cursor ? `(${record.cursor.join(', ')})` : '-'],
    ['Created', when(record.createdAt)],
    ['Started', when(record.startedAt)],
    ['Finished', when(record.finishedAt)],
    ['Duration', duration === undefined ? '-' : `${formatDuration(duration)}${average !== undefined ? ` (average ${formatRate(average)})` : ''}`],
    ['Message', record.message ?? '-'],
  ];
  const width = Math.max(...fields.map(([k]) => k.length)) + 2;
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`);
}

/** A line for each change while watching without a terminal: `test/x  Running  52%  10,400 / 20,000 rows  10,000 sent  1,830 rows/s  eta 5s  <message>`. */
export function changeLine(record: BackfillRecord, samples: readonly RateSample[] = []): string {
  const { rate, etaMs } = rateAndEta(record, samples);
  const progress = progressLine(record, { sent: record.rowsSent, ...(rate !== undefined ? { rate } : {}), ...(etaMs !== undefined ? { etaMs } : {}) });
  return [record.name, record.phase, progress, record.message ?? ''].filter(Boolean).join('  ');
}

/** What of a record a watcher reports a change of. */
export function changeKey(record: BackfillRecord): string {
  return JSON.stringify([record.phase, record.rowsRead, record.rowsSent, record.rowsEstimate, record.message]);
}

/**
 * Text that replaces the `previousLines` lines last drawn (ending in a newline) with `lines`, in place
 * on a terminal: back to the first of them (carriage return, cursor up), clear to the end of the
 * screen, draw. Lines are cut to `columns` so none wraps (a wrapped line would throw the count off).
 */
export function redraw(previousLines: number, lines: readonly string[], columns?: number): string {
  const back = previousLines > 0 ? `\r\x1b[${previousLines}A\x1b[J` : '';
  const fitted = (line: string) => (columns && columns > 1 && [...line].length >= columns ? [...line].slice(0, columns - 1).join('') : line);
  return `${back}${lines.map((l) => `${fitted(l)}\n`).join('')}`;
}
