import { formatLsn, InvalidLsnError, type Lsn } from '../lsn.js';

/** One transaction as the watermark tracks it. */
export interface TrackedTransaction {
  /** LSN of the commit record; identifies the transaction in the stream. */
  readonly commitLsn: Lsn;
  /** End of the commit record (known at COMMIT): what is confirmed once the transaction is handled. */
  endLsn: Lsn;
  pending: number;
  sealed: boolean;
}

/**
 * Decides how far the replication slot may be confirmed: up to the end of the last transaction such
 * that it and every transaction before it had all their events delivered or dead-lettered. Nothing
 * later, ever — that is the whole at-least-once guarantee.
 */
export class AckWatermark {
  private readonly open: TrackedTransaction[] = [];
  private confirmed: Lsn;
  private lastCommit: Lsn = 0n;

  constructor(startLsn: Lsn) {
    this.confirmed = startLsn;
  }

  /** Starts tracking a transaction (they arrive in commit order); BEGIN carries its commit LSN. */
  begin(commitLsn: Lsn): TrackedTransaction {
    const last = this.open.at(-1);
    if (last && !last.sealed) throw new InvalidLsnError(`transaction ${formatLsn(commitLsn)} began before ${formatLsn(last.commitLsn)} committed`);
    if (commitLsn <= this.lastCommit) {
      throw new InvalidLsnError(`transaction commit ${formatLsn(commitLsn)} is not after ${formatLsn(this.lastCommit)}`);
    }
    this.lastCommit = commitLsn;
    const txn: TrackedTransaction = { commitLsn, endLsn: commitLsn, pending: 0, sealed: false };
    this.open.push(txn);
    return txn;
  }

  /** The transaction currently being received, if any (used to resume one cut off by a reconnect). */
  receiving(): TrackedTransaction | undefined {
    const last = this.open.at(-1);
    return last && !last.sealed ? last : undefined;
  }

  /** Counts an event of the transaction as in flight. */
  add(txn: TrackedTransaction): void {
    if (txn.sealed) throw new InvalidLsnError(`event added to sealed transaction ${formatLsn(txn.commitLsn)}`);
    txn.pending += 1;
  }

  /** An event of the transaction was delivered or dead-lettered. */
  settle(txn: TrackedTransaction): void {
    if (txn.pending <= 0) throw new InvalidLsnError(`transaction ${formatLsn(txn.commitLsn)} settled more events than it had`);
    txn.pending -= 1;
    this.advance();
  }

  /** The commit arrived: the transaction will get no more events. */
  seal(txn: TrackedTransaction, endLsn: Lsn): void {
    if (endLsn < txn.commitLsn) throw new InvalidLsnError(`commit end ${formatLsn(endLsn)} is before commit ${formatLsn(txn.commitLsn)}`);
    txn.endLsn = endLsn;
    txn.sealed = true;
    this.advance();
  }

  /**
   * The server says its WAL ends at `walEnd` and everything before it was sent. When nothing is in
   * flight, everything up to there is handled (changes no trigger wants, or nothing at all), so the
   * slot can move on and WAL does not pile up while idle.
   */
  idle(walEnd: Lsn): void {
    if (this.open.length === 0 && walEnd > this.confirmed) this.confirmed = walEnd;
  }

  /** Highest LSN that is safe to confirm to the server. */
  confirmable(): Lsn {
    return this.confirmed;
  }

  /** Number of transactions not yet fully handled. */
  openTransactions(): number {
    return this.open.length;
  }

  private advance(): void {
    while (this.open.length > 0) {
      const head = this.open[0]!;
      if (!head.sealed || head.pending > 0) break;
      this.open.shift();
      if (head.endLsn > this.confirmed) this.confirmed = head.endLsn;
    }
  }
}
