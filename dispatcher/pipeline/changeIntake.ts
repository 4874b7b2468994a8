import type { RowOperation } from '../../api/v1alpha1/index.js';
import type { Logger } from '../../common/logger.js';
import { eventSource, eventType } from '../delivery/eventAttributes.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { matchRoutes, type Route } from '../routing/triggerMatcher.js';
import type { StreamConsumer, StreamItem } from '../source/replicationStream.js';
import { AckWatermark, type TrackedTransaction } from './ackWatermark.js';
import { eventSubject, type PendingEvent, rowChangeBody, tableOf } from './pendingEvent.js';

/** A decoded row change as intake needs it. */
export interface DecodedRowChange {
  op: Exclude<RowOperation, 'manual' | 'read'>;
  schema: string;
  table: string;
  /** Rows as JSON text (exact to_jsonb form) and as JS values (for filters). */
  oldJson: string | null;
  newJson: string | null;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
  /** Primary-key text identifying the row: the ordering key and the CloudEvents subject. */
  rowKey: string;
  /** Set when an update changed the row's primary key: the key it had before. */
  previousRowKey?: string;
  unchangedToastColumns: readonly string[];
  columnChanged(column: string): boolean | undefined;
}

/** The pgoutput messages intake reacts to; other tags (relation, type, origin) only feed the decoder. */
export interface IntakeMessage {
  tag: string;
}

/** Turns protocol messages into decoded changes (async only the first time an unknown type is seen). */
export interface ChangeDecoder<M extends IntakeMessage> {
  /** Transaction boundaries, read from BEGIN/COMMIT. */
  begin(message: M): { commitLsn: Lsn; xid: number; commitTime: Date } | undefined;
  commit(message: M): { commitLsn: Lsn; endLsn: Lsn } | undefined;
  /** Row changes in the message (a TRUNCATE may name several tables); empty for non-change messages. */
  decode(message: M): DecodedRowChange[] | Promise<DecodedRowChange[]>;
  /** A logical message (pg_logical_emit_message): its prefix and content. */
  logicalMessage(message: M): { prefix: string; content: Uint8Array } | undefined;
}

/** Where a change is in the stream. */
export interface StreamPosition {
  commitLsn: Lsn;
  changeLsn: Lsn;
  ordinal: number;
}

/**
 * Something that reads the stream beside the triggers and may put events in front of a change: the
 * backfills, whose reads of a row must reach the row's trigger before a newer change to the row does.
 */
export interface StreamInterceptor {
  /** Whether any change must be shown to readsBefore now; false keeps the per-change cost at one read of a field. */
  readonly watching: boolean;
  /** A logical message arrived; a returned promise holds the stream until it settles. */
  logicalMessage(prefix: string, content: Uint8Array): void | Promise<void>;
  /** A transaction committed (its changes were all handed on). */
  committed(xid: number): void;
  /** Events to hand on before this change, in order. */
  readsBefore(change: DecodedRowChange, xid: number, at: StreamPosition): readonly PendingEvent[];
}

/** Builds the event id for one trigger's view of one change; stable across restarts. */
export type EventIdFactory = (input: { triggerKey: string; commitLsn: Lsn; changeLsn: Lsn; ordinal: number }) => string;

export interface IntakeOptions<M extends IntakeMessage> {
  decoder: ChangeDecoder<M>;
  routes(): readonly Route[];
  eventId: EventIdFactory;
  /**
   * Hands an event on (to its trigger's lane or backlog); a returned promise makes the reader wait
   * for it before the next event (the only back-pressure on the stream).
   */
  dispatch(event: PendingEvent): void | Promise<void>;
  startLsn: Lsn;
  logger: Logger;
  onChange?(change: DecodedRowChange): void;
  onMatch?(event: PendingEvent): void;
  /**
   * A relation (table) description arrived: Postgres sends one before the first change of a table
   * after it connects and after every ALTER, so a dropped or renamed column is seen here before any
   * row that lacks it is routed.
   */
  onRelation?(message: M): void;
  interceptor?: StreamInterceptor;
}

interface OpenTransaction {
  tracked: TrackedTransaction;
  xid: number;
  commitTime: Date;
  /** The commit LSN and time as the payload writes them, formatted once per transaction. */
  lsnText: string;
  commitTimeIso: string;
  /** Changes seen so far; after a reconnect the server resends the transaction and these are skipped. */
  seen: number;
  /** How many were registered before the reconnect. */
  alreadyRegistered: number;
  lastChangeLsn: Lsn;
  ordinal: number;
}

/**
 * The consumer of the replication stream: decodes each change, matches it against the triggers,
 * registers the resulting events with the watermark and the window, and hands them to the lanes.
 */
export class ChangeIntake<M extends IntakeMessage> implements StreamConsumer<M> {
  readonly watermark: AckWatermark;
  private current: OpenTransaction | undefined;
  private lastReceivedEnd: Lsn;

  constructor(private readonly options: IntakeOptions<M>) {
    this.watermark = new AckWatermark(options.startLsn);
    this.lastReceivedEnd = options.startLsn;
  }

  confirmable(): Lsn {
    return this.watermark.confirmable();
  }

  resumeFrom(): Lsn {
    return this.lastReceivedEnd;
  }

  connecting(): void {
    // A transaction cut off mid-way is resent whole; keep it open and skip what was already registered.
    if (this.current) {
      this.current.alreadyRegistered = this.current.seen;
      this.current.seen = 0;
      this.current.lastChangeLsn = 0n;
      this.current.ordinal = 0;
    }
  }

  /** Settles an event from the stream: delivered, dead-lettered or durably parked. */
  settle(event: PendingEvent): void {
    this.watermark.settle(event.txn);
  }

  /**
   * How far the stream has been handed on: every event of a transaction committed before this point
   * has been dispatched (after a restart, again), so the backlog may be read up to here without an
   * earlier event of the same key still on its way, nor a replayed copy parked after its original was drained.
   */
  progress(): Lsn {
    const confirmed = this.watermark.confirmable();
    // biome-ignore lint/complexity/useMathMinMax: LSNs are bigints, which Math.max does not take
    return confirmed > this.lastReceivedEnd ? confirmed : this.lastReceivedEnd;
  }

  handle(item: StreamItem<M>): void | Promise<void> {
    if (item.kind === 'keepalive') {
      if (!this.current) this.watermark.idle(item.walEnd);
      return;
    }
    const { decoder } = this.options;
    const message = item.message;
    const begin = decoder.begin(message);
    if (begin) return this.onBegin(begin);
    const commit = decoder.commit(message);
    if (commit) return this.onCommit(commit);
    if (message.tag === 'relation') this.options.onRelation?.(message);
    const logical = decoder.logicalMessage(message);
    if (logical) return this.options.interceptor?.logicalMessage(logical.prefix, logical.content);
    const changes = decoder.decode(message);
    return changes instanceof Promise ? changes.then((decoded) => this.onChanges(item.lsn, decoded)) : this.onChanges(item.lsn, changes);
  }

  /** Takes a message's changes in order; synchronous unless one has to wait (a full window, a backfill's read). */
  private onChanges(lsn: Lsn, changes: DecodedRowChange[], from = 0): void | Promise<void> {
    for (let i = from; i < changes.length; i++) {
      const pending = this.onChange(lsn, changes[i]!);
      if (pending) return pending.then(() => this.onChanges(lsn, changes, i + 1));
    }
  }

  private onBegin(begin: { commitLsn: Lsn; xid: number; commitTime: Date }): void {
    if (this.current) {
      if (this.current.tracked.commitLsn === begin.commitLsn) return; // the resend of a cut-off transaction
      throw new Error(`BEGIN of ${formatLsn(begin.commitLsn)} while ${formatLsn(this.current.tracked.commitLsn)} is still open`);
    }
    this.current = {
      tracked: this.watermark.begin(begin.commitLsn),
      xid: begin.xid,
      commitTime: begin.commitTime,
      lsnText: formatLsn(begin.commitLsn),
      commitTimeIso: begin.commitTime.toISOString(),
      seen: 0,
      alreadyRegistered: 0,
      lastChangeLsn: 0n,
      ordinal: 0,
    };
  }

  private onCommit(commit: { commitLsn: Lsn; endLsn: Lsn }): void {
    const txn = this.current;
    if (!txn) throw new Error(`COMMIT of ${formatLsn(commit.commitLsn)} without BEGIN`);
    if (txn.tracked.commitLsn !== commit.commitLsn) {
      throw new Error(`COMMIT of ${formatLsn(commit.commitLsn)} does not match BEGIN of ${formatLsn(txn.tracked.commitLsn)}`);
    }
    this.current = undefined;
    this.lastReceivedEnd = commit.endLsn;
    this.watermark.seal(txn.tracked, commit.endLsn);
    this.options.interceptor?.committed(txn.xid);
  }

  /** Takes one change: the backfill reads it must follow, then its events; a promise only when one of them has to wait. */
  private onChange(changeLsn: Lsn, change: DecodedRowChange): void | Promise<void> {
    const txn = this.current;
    if (!txn) throw new Error(`row change at ${formatLsn(changeLsn)} outside a transaction`);
    // Several changes can share one WAL record (multi-row inserts, truncates of several tables).
    txn.ordinal = changeLsn === txn.lastChangeLsn ? txn.ordinal + 1 : 0;
    txn.lastChangeLsn = changeLsn;
    txn.seen += 1;
    if (txn.seen <= txn.alreadyRegistered) return;
    this.options.onChange?.(change);
    const interceptor = this.options.interceptor;
    if (interceptor?.watching) {
      const reads = interceptor.readsBefore(change, txn.xid, { commitLsn: txn.tracked.commitLsn, changeLsn, ordinal: txn.ordinal });
      const readsHandedOn = this.handOn(reads);
      if (readsHandedOn) return readsHandedOn.then(() => this.route(changeLsn, change, txn));
    }
    return this.route(changeLsn, change, txn);
  }

  /** The change's events, one per matching trigger, handed on in order. */
  private route(changeLsn: Lsn, change: DecodedRowChange, txn: OpenTransaction): void | Promise<void> {
    const matches = matchRoutes(this.options.routes(), change);
    if (matches.length === 0) return;
    const lsn = txn.lsnText;
    const commitTime = txn.commitTimeIso;
    // Fields named one by one: spreading the change (and, below, an optional field) into a literal is a slow path in V8.
    const { dataJson, oldJson, newJson } = rowChangeBody({
      op: change.op,
      schema: change.schema,
      table: change.table,
      oldJson: change.oldJson,
      newJson: change.newJson,
      unchangedToastColumns: change.unchangedToastColumns,
      lsn,
      xid: txn.xid,
      commitTime,
    });
    const subject = eventSubject(change.schema, change.table, change.rowKey);
    const previousSubject = change.previousRowKey === undefined ? undefined : eventSubject(change.schema, change.table, change.previousRowKey);
    const events: PendingEvent[] = [];
    for (const { route, filterError } of matches) {
      const id = this.options.eventId({ triggerKey: route.key, commitLsn: txn.tracked.commitLsn, changeLsn, ordinal: txn.ordinal });
      const event: PendingEvent = {
        id,
        orderingKey: subject,
        previousOrderingKey: previousSubject,
        barrier: change.op === 'truncate',
        triggerKey: route.key,
        attributes: {
          specversion: '1.0',
          id,
          source: eventSource(route.trigger),
          type: eventType(change.op),
          subject,
          time: commitTime,
          datacontenttype: 'application/json',
        },
        dataJson,
        oldJson,
        newJson,
        op: change.op,
        table: tableOf(change.schema, change.table),
        commitTimeMs: txn.commitTime.getTime(),
        filterError,
        txn: txn.tracked,
        changeLsn,
        ordinal: txn.ordinal,
        bytes: dataJson.length,
      };
      events.push(event);
    }
    return this.handOn(events, txn.tracked);
  }

  /**
   * Hands events on in order, each once the one before was taken; a promise only when one has to wait
   * (its trigger's share full, the backlog writer's buffer full). With `tracked` (the change's own
   * events, not reads) each is counted in its transaction's watermark first.
   */
  private handOn(events: readonly PendingEvent[], tracked?: TrackedTransaction, from = 0): void | Promise<void> {
    for (let i = from; i < events.length; i++) {
      const event = events[i]!;
      if (tracked) {
        this.watermark.add(tracked);
        this.options.onMatch?.(event);
      }
      const handedOn = this.options.dispatch(event);
      if (handedOn) return handedOn.then(() => this.handOn(events, tracked, i + 1));
    }
  }
}
