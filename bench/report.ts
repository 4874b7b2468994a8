/** The bench's report: one row per figure, each beside its baseline, then the notes. */

interface Row {
  figure: string;
  value: string;
  baseline: string;
  ratio: string;
  target: string;
  verdict: string;
}

const rows: Row[] = [];
export const notes: string[] = [];

export const fmtRate = (perSecond: number, unit = '/s') => `${Math.round(perSecond).toLocaleString('en-US')} ${unit}`;
/** Latencies are whole milliseconds (ce-time and Date.now() have no finer resolution). */
export const fmtMs = (ms: number) => (ms < 1 ? '< 1 ms' : `${ms.toFixed(0)} ms`);
/** The ratio of two latencies of millisecond resolution: a reading under 1 ms counts as 0.5 ms. */
export const latencyRatio = (measured: number, baseline: number) => Math.max(measured, 0.5) / Math.max(baseline, 0.5);

export function record(row: Omit<Row, 'verdict' | 'ratio'> & { ratio: number; check?: boolean }): void {
  const verdict = row.check === undefined ? '' : row.check ? 'met' : 'MISSED';
  rows.push({ figure: row.figure, value: row.value, baseline: row.baseline, ratio: Number.isFinite(row.ratio) ? `${row.ratio.toFixed(2)}×` : '-', target: row.target, verdict });
  console.log(`  ${row.figure}: ${row.value} (baseline ${row.baseline}; ratio ${Number.isFinite(row.ratio) ? row.ratio.toFixed(2) : '-'})`);
}

/** Prints the rows; `labels` renames columns, and a column labelled '' is left out. */
export function printTable(labels: Partial<Row> = {}): void {
  const headers: Row = { figure: 'figure', value: 'measured', baseline: 'baseline', ratio: 'ratio', target: 'target', verdict: '', ...labels };
  const keys = (Object.keys(headers) as (keyof Row)[]).filter((k) => !(k in labels) || headers[k] !== '');
  const widths = keys.map((k) => Math.max(...[headers, ...rows].map((r) => r[k].length)));
  const line = (r: Row) =>
    keys
      .map((k, i) => r[k].padEnd(widths[i]!))
      .join(' | ')
      .trimEnd();
  console.log('');
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const r of rows) console.log(line(r));
  if (notes.length) console.log(`\n${notes.map((n) => `* ${n}`).join('\n')}`);
}
