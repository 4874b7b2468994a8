import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Gate, lsnToBigInt, type SinkDelivery, startControlledSink } from '../harness/controlledSink.js';
import { backlogEventIds } from '../harness/deliveryHelpers.js';
import { startSourceDatabase, triggerManifest, writeManifests } from '../harness/dispatcherFixture.js';
import { type DispatcherProcess, startDispatcherProcess } from '../harness/dispatcherProcess.js';
import { eventually } from '../harness/recordingSink.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deliveries whose version did not increase over the previous delivery of the same row. */
function orderViolations(deliveries: SinkDelivery[]): string[] {
  const last = new Map<string, number>();
  const violations: string[] = [];
  for (const d of deliveries) {
    const version = Number((d.data.new as { version?: number } | null)?.version ?? 0);
    const previous = last.get(d.subject);
    if (previous !== undefined && version <= previous) violations.push(`${d.subject}: version ${version} after ${previous}`);
    last.set(d.subject, version);
  }
  return violations;
}

async function readyStatus(proc: DispatcherProcess): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${proc.port}/readyz`)).status;
  } catch {
    return 0;
  }
}

interface ReconnectLog {
  msg: string;
  retryInMs?: number;
  time?: number;
}

function reconnectLogs(proc: DispatcherProcess): ReconnectLog[] {
  return proc
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as ReconnectLog)
    .filter((entry) => entry.msg === 'replication stream failed; reconnecting');
}

describe('delivery survives crashes and restarts', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });
  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  async function setUp(options: { concurrency: number; delivery?: Record<string, unknown>; answer: (d: SinkDelivery) => Promise<{ status: number }> | { status: number } }) {
    const db = await startSourceDatabase('CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL DEFAULT 0, note text);');
    cleanups.push(() => db.close());
    const sink = await startControlledSink(options.answer);
    cleanups.push(() => sink.close());
    const file = writeManifests([
      triggerManifest('items', {
        table: { name: 'items' },
        sink: { url: sink.url },
        operations: ['insert', 'update'],
        ordering: 'key',
        concurrency: options.concurrency,
        ...(options.delivery ? { delivery: options.delivery } : {}),
      }),
    ]);
    const start = async (extra: string[] = []) => {
      const proc = await startDispatcherProcess(['--database-url', db.url, '-f', file, ...extra]);
      cleanups.push(() => proc.kill('SIGKILL'));
      await proc.ready(60_000);
      return proc;
    };
    return { db, sink, start };
  }

  it('kill -9 in the middle of 20k changes (twice): after a restart every change arrives, duplicates keep their id, each row stays in order', async () => {
    const runs: SinkDelivery[][] = [[]];
    const { db, sink, start } = await setUp({
      concurrency: 64,
      answer: (d) => {
        runs.at(-1)!.push(d);
        return { status: 200 };
      },
    });
    let proc = await start();

    // 2000 rows, each inserted then updated 9 times: 20k changes in 40 transactions of 500.
    const keys = 2000;
    const versions = 10;
    const wanted = keys * versions;
    const writer = (async () => {
      for (let version = 0; version < versions; version++) {
        for (let part = 0; part < 4; part++) {
          const from = part * 500 + 1;
          const to = from + 499;
          if (version === 0) await db.sql(`INSERT INTO items (id, version, note) SELECT g, 0, 'row ' || g FROM generate_series($1::int, $2::int) g`, [from, to]);
          else await db.sql('UPDATE items SET version = version + 1 WHERE id BETWEEN $1 AND $2', [from, to]);
          await sleep(20);
        }
      }
    })();
    const change = (d: SinkDelivery) => `${d.subject}@${(d.data.new as { version: number }).version}`;
    const commitLsn = (d: SinkDelivery) => lsnToBigInt(String(d.data.lsn));

    // Kill -9 twice: once a few thousand were delivered and the slot moved, then again a few thousand later.
    const confirmedAtKill: bigint[] = [];
    // Events parked in the backlog count as handled for the slot: they are delivered from there after a restart.
    const backlogAtKill: Set<string>[] = [];
    for (const deliveriesInRun of [3000, 4000]) {
      const before = await db.confirmedLsn();
      await eventually(async () => runs.at(-1)!.length >= deliveriesInRun && (await db.confirmedLsn()) > before, 60_000, `${deliveriesInRun} deliveries and a newly confirmed position`);
      expect(await proc.kill('SIGKILL')).toBeNull(); // killed by the signal: no chance to drain or confirm anything more
      confirmedAtKill.push(await db.confirmedLsn());
      backlogAtKill.push(await backlogEventIds(db));
      expect(new Set(sink.deliveries.map(change)).size).toBeLessThan(wanted); // the kill really was mid-stream
      runs.push([]);
      proc = await start();
    }
    await writer;
    const seen = () => new Set(sink.deliveries.map(change));
    await eventually(() => seen().size >= wanted, 75_000, `all ${wanted} changes after the restarts`);

    // Every change arrived at least once.
    const changes = seen();
    for (let id = 1; id <= keys; id++) for (let v = 0; v < versions; v++) if (!changes.has(`public.items/${id}@${v}`)) expect.fail(`change ${id}@${v} never delivered`);
    expect(changes.size).toBe(wanted);

    // A redelivered change carries the id of its first delivery; no two changes share an id.
    const idsByChange = new Map<string, Set<string>>();
    const changeById = new Map<string, string>();
    for (const d of sink.deliveries) {
      (idsByChange.get(change(d)) ?? idsByChange.set(change(d), new Set()).get(change(d))!).add(d.id);
      const other = changeById.get(d.id);
      if (other !== undefined && other !== change(d)) expect.fail(`event id ${d.id} used for ${other} and ${change(d)}`);
      changeById.set(d.id, change(d));
    }
    expect([...idsByChange].filter(([, ids]) => ids.size !== 1)).toEqual([]);

    // Within each dispatcher run, each row's changes arrived in commit order.
    expect(runs.reduce((n, r) => n + r.length, 0)).toBe(sink.deliveries.length);
    for (const run of runs) expect(orderViolations(run)).toEqual([]);

    // What the slot had confirmed at a kill had been delivered before it or was waiting in the backlog,
    // and the next run resumed after it: of the changes before it, only backlog events arrived again.
    for (const [i, confirmed] of confirmedAtKill.entries()) {
      const deliveredBefore = new Set(
        runs
          .slice(0, i + 1)
          .flat()
          .map(change),
      );
      const parked = backlogAtKill[i]!;
      expect(sink.deliveries.filter((d) => commitLsn(d) < confirmed && !deliveredBefore.has(change(d)) && !parked.has(d.id)).map(change)).toEqual([]);
      expect(runs[i + 1]!.filter((d) => commitLsn(d) < confirmed && !parked.has(d.id)).map(change)).toEqual([]);
    }
  }, 150_000);

  it('Postgres restarting mid-stream (fast, then immediate): the dispatcher reconnects with backoff, /readyz follows, nothing is lost', async () => {
    const { db, sink, start } = await setUp({ concurrency: 16, answer: () => ({ status: 200 }) });
    const proc = await start();
    let next = 1;
    let writing = true;
    const writer = (async () => {
      while (writing) {
        try {
          await db.sql('INSERT INTO items (id) SELECT g FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING', [next, next + 4]);
          next += 5;
          await sleep(10);
        } catch {
          await sleep(100); // the server is down: the same rows again once it is back
        }
      }
    })();

    const readiness: { at: number; status: number }[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        readiness.push({ at: Date.now(), status: await readyStatus(proc) });
        await sleep(100);
      }
    })();

    for (const mode of ['fast', 'immediate'] as const) {
      const before = sink.deliveries.length;
      await eventually(() => sink.deliveries.length >= before + 200, 30_000, `deliveries flowing before the ${mode} stop`);
      await db.server.stop(mode);
      const stoppedAt = Date.now();
      await eventually(async () => (await readyStatus(proc)) === 503, 15_000, `/readyz 503 after the ${mode} stop`);
      await sleep(Math.max(0, 3000 - (Date.now() - stoppedAt)));
      await db.server.start();
      await eventually(async () => (await readyStatus(proc)) === 200, 30_000, `/readyz 200 after the ${mode} restart`);
      const after = sink.deliveries.length;
      await eventually(() => sink.deliveries.length >= after + 100, 30_000, `deliveries flowing after the ${mode} restart`);
    }
    writing = false;
    await writer;
    probing = false;
    await prober;

    // Every committed row (the table is the truth: a commit cut off by the crash may or may not have happened).
    const { rows } = await db.sql('SELECT id FROM items ORDER BY id');
    const committed = rows.map((r: { id: number }) => `public.items/${r.id}`);
    expect(committed.length).toBeGreaterThan(600);
    await eventually(
      () => {
        const delivered = new Set(sink.deliveries.map((d) => d.subject));
        return committed.every((s) => delivered.has(s));
      },
      30_000,
      `all ${committed.length} committed rows delivered`,
    );
    const known = new Set(committed);
    expect(sink.deliveries.filter((d) => !known.has(d.subject))).toEqual([]);
    // Same row, same event id, however many times it came.
    const idsBySubject = new Map<string, Set<string>>();
    for (const d of sink.deliveries) (idsBySubject.get(d.subject) ?? idsBySubject.set(d.subject, new Set()).get(d.subject)!).add(d.id);
    expect([...idsBySubject.values()].filter((ids) => ids.size > 1)).toEqual([]);

    // /readyz said not ready while the server was away, and ready again.
    // (each outage's 503 and the 200 after it are also awaited in the loop above)
    expect(readiness.filter((r, i) => i > 0 && r.status === 503 && readiness[i - 1]!.status === 200).length).toBeGreaterThanOrEqual(1);
    expect(await readyStatus(proc)).toBe(200);
    // Reconnects back off: each wait doubles (500 ms, 1 s, 2 s ...; back to 500 ms after a connection that held 10 s), not a hot loop.
    const waits = reconnectLogs(proc).map((entry) => entry.retryInMs);
    expect(waits.length).toBeGreaterThanOrEqual(2);
    expect(waits.length).toBeLessThanOrEqual(12);
    for (let i = 1; i < waits.length; i++) expect([500, waits[i - 1]! * 2, 30_000]).toContain(waits[i]);
    expect(waits).toContain(1000);
    expect(proc.child.exitCode).toBeNull();
  }, 120_000);

  it('Postgres crashing while a transaction larger than the window is half read: after the reconnect the rest follows, each change exactly once', async () => {
    const gate = new Gate(false);
    const { db, sink, start } = await setUp({
      concurrency: 16,
      answer: async () => {
        await gate.wait();
        return { status: 200 };
      },
    });
    const proc = await start(['--max-inflight-events', '200']);
    await db.sql("INSERT INTO items (id, note) SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g");
    await eventually(async () => /eventide_dispatcher_inflight_events 200\b/.test(await proc.metrics()), 15_000, 'a full window mid-transaction');
    await db.server.stop('immediate');
    await eventually(async () => (await readyStatus(proc)) === 503, 15_000, '/readyz 503 while the server is down');
    await sleep(1000);
    await db.server.start();
    gate.open();
    await eventually(() => sink.deliveries.filter((d) => d.status === 200).length >= 3000, 45_000, 'all 3000 rows of the transaction');
    await eventually(async () => (await readyStatus(proc)) === 200, 30_000, '/readyz 200 again');
    await sleep(500);
    // The dispatcher process never restarted: it resumed the cut-off transaction where it was.
    const subjects = sink.deliveries.map((d) => d.subject);
    expect(new Set(subjects).size).toBe(3000);
    expect(subjects.length).toBe(3000);
    const { rows } = await db.sql('SELECT pg_current_wal_lsn()::text AS lsn');
    await eventually(async () => (await db.confirmedLsn()) >= lsnToBigInt(rows[0].lsn as string), 15_000, 'the slot past the transaction');
  }, 90_000);

  it('SIGTERM while Postgres is down and the window is full: exits 0 at the drain deadline, not at the next reconnect or never', async () => {
    const gate = new Gate(false);
    const { db, sink, start } = await setUp({
      concurrency: 4,
      answer: async () => {
        await gate.wait();
        return { status: 200 };
      },
    });
    const proc = await start(['--max-inflight-events', '50', '--drain-timeout', '1000']);
    await db.sql('INSERT INTO items (id) SELECT generate_series(1, 1000)');
    await eventually(async () => /eventide_dispatcher_inflight_events 50\b/.test(await proc.metrics()), 15_000, 'a full window');
    await db.server.stop('immediate');
    await eventually(async () => (await readyStatus(proc)) === 503, 15_000, '/readyz 503 while the server is down');
    await sleep(2000); // into the reconnect backoff
    const signalledAt = Date.now();
    const code = await Promise.race([proc.kill('SIGTERM'), sleep(15_000).then(() => 'still running')]);
    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(5000);
    await db.server.start();
    gate.open();
    await start();
    await eventually(() => new Set(sink.deliveries.filter((d) => d.status === 200).map((d) => d.subject)).size >= 1000, 30_000, 'all 1000 rows after the restart');
  }, 60_000);

  it('SIGTERM drains deliveries in flight, exits 0, confirms only what finished; the rest arrives after a restart', async () => {
    const slow = { delayMs: 2000 };
    const { db, sink, start } = await setUp({
      concurrency: 8,
      answer: async () => {
        await sleep(slow.delayMs);
        return { status: 200 };
      },
    });
    const proc = await start(['--drain-timeout', '10000']);
    // One row per transaction, so the slot position tells which transactions count as done.
    for (let id = 1; id <= 60; id++) await db.sql('INSERT INTO items (id) VALUES ($1)', [id]);
    await eventually(() => sink.deliveries.length >= 8, 15_000, 'the first 8 deliveries in flight');
    await sleep(300);
    const inFlightAtSignal = sink.deliveries.length;
    expect(sink.open).toBe(8);
    const signalledAt = Date.now();
    const code = await proc.kill('SIGTERM');
    const exitedAfterMs = Date.now() - signalledAt;
    expect(code).toBe(0);
    // The deliveries in flight finished (answered 200 while the dispatcher waited), and none started after the signal.
    expect(sink.deliveries.length).toBe(inFlightAtSignal);
    expect(sink.deliveries.every((d) => d.status === 200)).toBe(true);
    expect(exitedAfterMs).toBeLessThan(10_000);
    const finished = new Set(sink.deliveries.map((d) => d.subject));

    // The slot covers the finished transactions and nothing after them.
    const confirmed = await db.confirmedLsn();
    slow.delayMs = 0;
    await start();
    await eventually(() => new Set(sink.deliveries.map((d) => d.subject)).size >= 60, 30_000, 'all 60 rows after the restart');
    const commitOf = new Map<string, bigint>();
    for (const d of sink.deliveries) commitOf.set(d.subject, lsnToBigInt(String(d.data.lsn)));
    const inCommitOrder = [...commitOf].sort((a, b) => (a[1] < b[1] ? -1 : 1));
    const firstUnfinished = inCommitOrder.findIndex(([subject]) => !finished.has(subject));
    expect(firstUnfinished).toBeGreaterThan(0);
    expect(confirmed).toBeGreaterThan(inCommitOrder[firstUnfinished - 1]![1]); // past the commit of the last finished one
    expect(confirmed).toBeLessThanOrEqual(inCommitOrder[firstUnfinished]![1]); // not past the first unfinished one
    // Redelivered after the restart: exactly the rows that had not finished.
    const secondRun = sink.deliveries.slice(inFlightAtSignal).map((d) => d.subject);
    expect(new Set(secondRun)).toEqual(new Set(inCommitOrder.slice(firstUnfinished).map(([s]) => s)));
  }, 90_000);

  it('SIGTERM with a function that never answers and a full window: exits 0 at the drain deadline, confirms nothing neither delivered nor parked, delivers everything after a restart', async () => {
    const gate = new Gate(false);
    const { db, sink, start } = await setUp({
      concurrency: 4,
      // No retries: an attempt cut off by the shutdown must still not count as the function failing.
      delivery: { retries: 0 },
      answer: async () => {
        await gate.wait();
        return { status: 200 };
      },
    });
    const proc = await start(['--drain-timeout', '1500', '--max-inflight-events', '20']);
    for (let id = 1; id <= 10; id++) await db.sql('INSERT INTO items (id) VALUES ($1)', [id]);
    await db.sql('INSERT INTO items (id) SELECT generate_series(11, 3000)'); // the reader stops at the window
    await eventually(() => sink.open === 4, 15_000, '4 deliveries hanging');
    await eventually(async () => /eventide_dispatcher_inflight_events 20\b/.test(await proc.metrics()), 15_000, 'a full window');
    const signalledAt = Date.now();
    expect(await proc.kill('SIGTERM')).toBe(0);
    const took = Date.now() - signalledAt;
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(6000);
    // Confirmed is only what was delivered or is durably in the backlog: here nothing was delivered.
    const confirmed = await db.confirmedLsn();
    const parked = await backlogEventIds(db);
    const { rows: dead } = await db.sql('SELECT count(*)::int AS n FROM eventide.dead_letters');
    expect(dead[0].n).toBe(0); // a shutdown is not the function's fault
    gate.open();
    await start();
    await eventually(() => new Set(sink.deliveries.filter((d) => d.status === 200).map((d) => d.subject)).size >= 3000, 30_000, 'all 3000 rows after the restart');
    const confirmedNotParked = sink.deliveries.filter((d) => lsnToBigInt(String(d.data.lsn)) < confirmed && !parked.has(d.id));
    expect(confirmedNotParked.map((d) => d.subject)).toEqual([]);
  }, 60_000);
});
