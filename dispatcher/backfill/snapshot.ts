/**
 * A transaction snapshot as pg_current_snapshot() prints it: which transactions a query saw. A backfill
 * chunk is read under one, and each change the stream brings while the chunk is open is judged by it:
 * a change the snapshot saw is already in the chunk's row; one it did not see is newer than the row.
 */
export interface TxSnapshot {
  /** Every transaction below xmin had finished. */
  xmin: bigint;
  /** No transaction from xmax on had finished. */
  xmax: bigint;
  /** Between the two: those still running, which the snapshot does not see. */
  running: ReadonlySet<bigint>;
}

/** Parses `xmin:xmax:xip,xip,...` (pg_snapshot's text form, 64-bit ids with their epoch). */
export function parseSnapshot(text: string): TxSnapshot {
  const match = /^(\d+):(\d+):([\d,]*)$/.exec(text.trim());
  if (!match) throw new Error(`not a pg_snapshot: ${JSON.stringify(text)}`);
  const running = new Set(match[3] ? match[3].split(',').map((x) => BigInt(x)) : []);
  return { xmin: BigInt(match[1]!), xmax: BigInt(match[2]!), running };
}

const EPOCH = 1n << 32n;

/**
 * The 64-bit id of a 32-bit xid (pgoutput sends 32 bits) near the snapshot: the one within 2^31 of
 * xmax, as Postgres itself widens xids; a running transaction is never further from it than that.
 */
export function widenXid(xid: number, snapshot: TxSnapshot): bigint {
  const base = snapshot.xmax - (snapshot.xmax % EPOCH);
  let wide = base + BigInt(xid >>> 0);
  if (wide > snapshot.xmax + EPOCH / 2n) wide -= EPOCH;
  else if (wide < snapshot.xmax - EPOCH / 2n) wide += EPOCH;
  return wide;
}

/** Whether the snapshot saw the committed transaction `xid` (a 32-bit id from the stream). Pure. */
export function snapshotSaw(snapshot: TxSnapshot, xid: number): boolean {
  const wide = widenXid(xid, snapshot);
  if (wide < snapshot.xmin) return true;
  if (wide >= snapshot.xmax) return false;
  return !snapshot.running.has(wide);
}

/** Whether any transaction the snapshot saw as running is among `xids` (32-bit ids from the stream). */
export function snapshotMissedAnyOf(snapshot: TxSnapshot, xids: Iterable<number>): boolean {
  if (snapshot.running.size === 0) return false;
  for (const xid of xids) if (snapshot.running.has(widenXid(xid, snapshot))) return true;
  return false;
}
