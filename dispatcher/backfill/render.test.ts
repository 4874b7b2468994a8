import { describe, expect, it } from 'vitest';
import {
  addSample,
  averageRate,
  changeLine,
  detailLines,
  formatCount,
  formatDuration,
  formatRate,
  formatTable,
  listTable,
  progressBar,
  progressLine,
  progressPercent,
  type RateSample,
  rateAndEta,
  redraw,
  sampledRate,
} from './render.js';
import type { BackfillRecord } from './store.js';

const T0 = Date.parse('2024-05-01T12:00:00Z');

function record(overrides: Partial<BackfillRecord> = {}): BackfillRecord {
  return {
    name: 'shop/orders-20240501120000',
    run: 'r1',
    origin: 'cli',
    trigger: 'shop/orders',
    batchSize: 1000,
    phase: 'Running',
    cursor: ['10400'],
    rowsRead: 10_400,
    rowsSent: 10_000,
    rowsEstimate: 20_000,
    message: null,
    createdAt: new Date(T0),
    startedAt: new Date(T0 + 1000),
    finishedAt: null,
    updatedAt: new Date(T0 + 11_000),
    ...overrides,
  };
}

describe('numbers and durations', () => {
  it('counts with thousands separators, rates with one decimal below 10', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(10_400)).toBe('10,400');
    expect(formatCount(1_234_567)).toBe('1,234,567');
    expect(formatRate(1830.4)).toBe('1,830 rows/s');
    expect(formatRate(0.46)).toBe('0.5 rows/s');
    expect(formatRate(3)).toBe('3 rows/s');
  });

  it('durations are compact: 45s, 2m5s, 1h2m, 3d4h', () => {
    expect(formatDuration(-5)).toBe('0s');
    expect(formatDuration(45_900)).toBe('45s');
    expect(formatDuration(125_000)).toBe('2m5s');
    expect(formatDuration(120_000)).toBe('2m');
    expect(formatDuration(3_720_000)).toBe('1h2m');
    expect(formatDuration(3 * 86_400_000 + 4 * 3_600_000)).toBe('3d4h');
  });
});

describe('progress', () => {
  it('is rows read of the estimate rounded down, 100 only once Complete, none without an estimate', () => {
    expect(progressPercent(record())).toBe(52);
    expect(progressPercent(record({ rowsRead: 19_999 }))).toBe(99);
    // The estimate can fall short of the rows there are: a running backfill stays below 100.
    expect(progressPercent(record({ rowsRead: 25_000 }))).toBe(99);
    expect(progressPercent(record({ phase: 'Complete', rowsRead: 25_000 }))).toBe(100);
    expect(progressPercent(record({ phase: 'Complete', rowsEstimate: null }))).toBe(100);
    expect(progressPercent(record({ phase: 'Pending', rowsRead: 0, rowsEstimate: null }))).toBeUndefined();
    expect(progressPercent(record({ rowsRead: 0, rowsEstimate: 0 }))).toBe(0);
  });

  it('draws a bar of the given width', () => {
    expect(progressBar(0)).toBe(`[${'░'.repeat(20)}]`);
    expect(progressBar(52)).toBe(`[${'█'.repeat(10)}${'░'.repeat(10)}]`);
    expect(progressBar(100)).toBe(`[${'█'.repeat(20)}]`);
    expect(progressBar(100, 10)).toBe(`[${'█'.repeat(10)}]`);
    expect(progressBar(250, 4)).toBe('[████]');
  });

  it('the progress line: bar on a terminal, rows of the estimate, rate and eta when known', () => {
    expect(progressLine(record(), { bar: true, rate: 1830, etaMs: 5200 })).toBe('[██████████░░░░░░░░░░] 52%  10,400 / 20,000 rows  1,830 rows/s  eta 5s');
    expect(progressLine(record(), { rate: 1830 })).toBe('52%  10,400 / 20,000 rows  1,830 rows/s');
    expect(progressLine(record(), { sent: 10_000 })).toBe('52%  10,400 / 20,000 rows  10,000 sent');
    expect(progressLine(record({ phase: 'Pending', rowsRead: 0, rowsEstimate: null }), { bar: true })).toBe('0 rows');
  });
});

describe('rate and eta', () => {
  it('the rate comes from successive readings within the window, and the one just before it', () => {
    const samples: RateSample[] = [
      { at: 0, rowsRead: 0 },
      { at: 1000, rowsRead: 1000 },
      { at: 2000, rowsRead: 3000 },
    ];
    expect(sampledRate(samples)).toBe(1500);
    expect(sampledRate(samples, 1000)).toBe(1500);
    expect(sampledRate(samples, 500)).toBe(2000);
    expect(sampledRate([{ at: 0, rowsRead: 5 }])).toBeUndefined();
    expect(sampledRate([])).toBeUndefined();
    expect(
      sampledRate([
        { at: 5, rowsRead: 5 },
        { at: 5, rowsRead: 9 },
      ]),
    ).toBeUndefined();
  });

  it('addSample keeps the window and the reading before it, and starts over when the count goes back', () => {
    let samples: RateSample[] = [];
    for (let t = 0; t <= 20_000; t += 1000) samples = addSample(samples, { at: t, rowsRead: t }, 5000);
    expect(samples.map((s) => s.at)).toEqual([14_000, 15_000, 16_000, 17_000, 18_000, 19_000, 20_000]);
    expect(sampledRate(samples, 5000)).toBe(1000);
    expect(addSample(samples, { at: 21_000, rowsRead: 10 }, 5000)).toEqual([{ at: 21_000, rowsRead: 10 }]);
  });

  it('a running backfill: rate from readings, else its average so far; eta from the rows left; none once not running', () => {
    const readings: RateSample[] = [
      { at: 0, rowsRead: 8_400 },
      { at: 2000, rowsRead: 10_400 },
    ];
    expect(rateAndEta(record(), readings)).toEqual({ rate: 1000, etaMs: 9_600_000 / 1000 });
    // No readings yet: 10,400 rows in the 10 s from start to the last update.
    expect(rateAndEta(record())).toEqual({ rate: 1040, etaMs: (9_600 * 1000) / 1040 });
    expect(
      rateAndEta(
        record({ rowsRead: 25_000 }),
        readings.map((s) => ({ ...s, rowsRead: s.rowsRead + 14_600 })),
      ),
    ).toEqual({ rate: 1000 });
    expect(rateAndEta(record({ phase: 'Complete' }), readings)).toEqual({});
    expect(rateAndEta(record({ phase: 'Pending', startedAt: null }))).toEqual({});
    expect(averageRate(record({ phase: 'Complete', rowsRead: 20_000, finishedAt: new Date(T0 + 21_000) }))).toBe(1000);
    expect(averageRate(record({ startedAt: null }))).toBeUndefined();
  });
});

describe('tables and details', () => {
  it('formatTable pads columns two spaces apart and leaves the last unpadded', () => {
    expect(
      formatTable(
        ['A', 'LONGER', 'C'],
        [
          ['xx', 'y', ''],
          ['x', 'yyyyyyyy', 'last one'],
        ],
      ),
    ).toEqual(['A   LONGER    C', 'xx  y', 'x   yyyyyyyy  last one']);
  });

  it('the list shows phase, progress, rows, estimate, duration, age and message', () => {
    const now = T0 + 125_000;
    const lines = listTable(
      [
        record(),
        record({ name: 'shop/all', phase: 'Pending', rowsRead: 0, rowsSent: 0, rowsEstimate: null, startedAt: null, message: 'waiting for a dispatcher' }),
        record({ name: 'shop/done', phase: 'Complete', rowsRead: 20_000, rowsSent: 19_000, finishedAt: new Date(T0 + 21_000) }),
      ],
      now,
    );
    expect(lines).toEqual([
      'NAME                        TRIGGER      PHASE     PROGRESS  ROWS    SENT    ESTIMATE  DURATION  AGE   MESSAGE',
      'shop/orders-20240501120000  shop/orders  Running   52%       10,400  10,000  20,000    2m4s      2m5s',
      'shop/all                    shop/orders  Pending   -         0       0       -         -         2m5s  waiting for a dispatcher',
      'shop/done                   shop/orders  Complete  100%      20,000  19,000  20,000    20s       2m5s',
    ]);
    expect(listTable([record()], now, { bar: true })[1]).toContain('[█████░░░░░] 52%');
  });

  it('the detail of one backfill', () => {
    const lines = detailLines(record({ filter: "new.status == 'open'", rowsPerSecond: 500 }), T0 + 12_000, {
      bar: true,
      samples: [
        { at: 0, rowsRead: 8_400 },
        { at: 1000, rowsRead: 10_400 },
      ],
    });
    expect(lines).toEqual([
      'Name:       shop/orders-20240501120000',
      'Trigger:    shop/orders',
      'Origin:     eventide backfill start',
      'Phase:      Running',
      'Progress:   [██████████░░░░░░░░░░] 52%  10,400 / 20,000 rows  2,000 rows/s  eta 4s',
      'Rows read:  10,400',
      'Rows sent:  10,000',
      'Estimate:   20,000',
      "Filter:     new.status == 'open'",
      'Batch size: 1,000',
      'Rate limit: 500 rows/s',
      'Cursor:     (10400)',
      'Created:    2024-05-01T12:00:00.000Z (12s ago)',
      'Started:    2024-05-01T12:00:01.000Z (11s ago)',
      'Finished:   -',
      'Duration:   11s',
      'Message:    -',
    ]);
    const done = detailLines(record({ phase: 'Failed', message: 'the trigger was deleted', finishedAt: new Date(T0 + 11_000), origin: 'manifest' }), T0 + 60_000);
    expect(done).toContain('Duration:   10s (average 1,040 rows/s)');
    expect(done).toContain('Origin:     Backfill resource');
    expect(done).toContain('Message:    the trigger was deleted');
    expect(done).toContain('Progress:   52%  10,400 / 20,000 rows');
  });

  it('a change line (watching without a terminal)', () => {
    expect(
      changeLine(record(), [
        { at: 0, rowsRead: 8_400 },
        { at: 1000, rowsRead: 10_400 },
      ]),
    ).toBe('shop/orders-20240501120000  Running  52%  10,400 / 20,000 rows  10,000 sent  2,000 rows/s  eta 4s');
    expect(changeLine(record({ phase: 'Failed', message: 'boom' }))).toBe('shop/orders-20240501120000  Failed  52%  10,400 / 20,000 rows  10,000 sent  boom');
  });

  it('redraw goes back over the lines drawn last, clears, draws; cuts lines to the terminal width', () => {
    expect(redraw(0, ['a', 'b'])).toBe('a\nb\n');
    expect(redraw(2, ['c'])).toBe('\r\x1b[2A\x1b[Jc\n');
    expect(redraw(1, ['0123456789'], 6)).toBe('\r\x1b[1A\x1b[J01234\n');
    expect(redraw(0, ['██████'], 4)).toBe('███\n');
  });
});
