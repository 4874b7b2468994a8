import { Counter, type CounterConfiguration, Gauge, Histogram, type LabelValues, type Registry } from 'prom-client';
import { createRegistry, LATENCY_BUCKETS } from '../common/metrics.js';

/** The dispatcher's Prometheus metrics, one registry per dispatcher instance. */
export interface DispatcherMetrics {
  registry: Registry;
  /** Keyed by tableChangeKey(). */
  eventsReceived: TallyCounter<'table' | 'op'>;
  /** Keyed by the trigger's key. */
  eventsMatched: TallyCounter<'trigger'>;
  deliveries: Counter<'trigger' | 'outcome'>;
  attemptDuration: Histogram<'trigger'>;
  endToEndLatency: Histogram<'trigger'>;
  retries: Counter<'trigger'>;
  deadLetters: Counter<'trigger' | 'reason'>;
  inflightEvents: Gauge;
  inflightBytes: Gauge;
  replicationLagBytes: Gauge;
  confirmedLsn: Gauge;
  connected: Gauge;
  eventsParked: Counter<'trigger' | 'reason'>;
  eventsDrained: Counter<'trigger'>;
  backlogEvents: Gauge<'trigger'>;
  backlogOldestAge: Gauge<'trigger'>;
  triggerParking: Gauge<'trigger'>;
  triggerSuspended: Gauge<'trigger'>;
  triggerSetAside: Gauge<'trigger' | 'reason'>;
  functionUnavailable: Gauge<'function'>;
  backfillRowsRead: Counter<'backfill'>;
  backfillReadsSent: Counter<'backfill'>;
}

/** Creates the dispatcher's metrics under the `eventide_dispatcher_` prefix. */
export function createDispatcherMetrics(): DispatcherMetrics {
  const registry = createRegistry('eventide_dispatcher');
  const registers = [registry];
  return {
    registry,
    eventsReceived: new TallyCounter({ name: 'eventide_dispatcher_events_received_total', help: 'Row changes decoded from the replication stream.', labelNames: ['table', 'op'], registers }, (key) => {
      const [table, op] = key.split('\u0000');
      return { table: table!, op: op! };
    }),
    eventsMatched: new TallyCounter(
      { name: 'eventide_dispatcher_events_matched_total', help: 'Events created because a row change matched a trigger.', labelNames: ['trigger'], registers },
      (trigger) => ({ trigger }),
    ),
    deliveries: new Counter({
      name: 'eventide_dispatcher_deliveries_total',
      help: 'Delivery attempts by outcome: success, retry, dead_letter; held: events that found no ready pod of their function and wait for one (not counted as attempts).',
      labelNames: ['trigger', 'outcome'],
      registers,
    }),
    attemptDuration: new Histogram({
      name: 'eventide_dispatcher_attempt_duration_seconds',
      help: 'Duration of one HTTP delivery attempt.',
      labelNames: ['trigger'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    endToEndLatency: new Histogram({
      name: 'eventide_dispatcher_end_to_end_latency_seconds',
      help: 'Time from the transaction commit to the successful delivery.',
      labelNames: ['trigger'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    retries: new Counter({ name: 'eventide_dispatcher_retries_total', help: 'Attempts that failed and were scheduled again.', labelNames: ['trigger'], registers }),
    deadLetters: new Counter({ name: 'eventide_dispatcher_dead_letters_total', help: 'Events recorded in the dead-letter table.', labelNames: ['trigger', 'reason'], registers }),
    inflightEvents: new Gauge({ name: 'eventide_dispatcher_inflight_events', help: 'Events read from the stream and not yet settled.', registers }),
    inflightBytes: new Gauge({ name: 'eventide_dispatcher_inflight_bytes', help: 'Payload bytes of the events in flight.', registers }),
    replicationLagBytes: new Gauge({ name: 'eventide_dispatcher_replication_lag_bytes', help: 'Server WAL end minus the confirmed LSN.', registers }),
    confirmedLsn: new Gauge({ name: 'eventide_dispatcher_confirmed_lsn', help: 'Last LSN confirmed to the server, as a number.', registers }),
    connected: new Gauge({ name: 'eventide_dispatcher_replication_connected', help: '1 while the replication stream is connected.', registers }),
    eventsParked: new Counter({
      name: 'eventide_dispatcher_events_parked_total',
      help: 'Events written to the trigger backlog, by reason: share-full, retrying, suspended, backlog-ahead.',
      labelNames: ['trigger', 'reason'],
      registers,
    }),
    eventsDrained: new Counter({ name: 'eventide_dispatcher_events_drained_total', help: 'Backlog events delivered or dead-lettered.', labelNames: ['trigger'], registers }),
    backlogEvents: new Gauge({ name: 'eventide_dispatcher_backlog_events', help: 'Events waiting in the trigger backlog.', labelNames: ['trigger'], registers }),
    backlogOldestAge: new Gauge({
      name: 'eventide_dispatcher_backlog_oldest_age_seconds',
      help: 'Age (since commit) of the oldest event waiting in the trigger backlog.',
      labelNames: ['trigger'],
      registers,
    }),
    triggerParking: new Gauge({ name: 'eventide_dispatcher_trigger_parking', help: '1 while new events of the trigger go to its backlog.', labelNames: ['trigger'], registers }),
    triggerSuspended: new Gauge({ name: 'eventide_dispatcher_trigger_suspended', help: '1 while the trigger is suspended (spec.suspend).', labelNames: ['trigger'], registers }),
    triggerSetAside: new Gauge({
      name: 'eventide_dispatcher_trigger_set_aside',
      help: '1 while the dispatcher cannot serve the trigger, labelled with why (TableNotFound, ColumnNotFound, InvalidFilter, ...; see /state).',
      labelNames: ['trigger', 'reason'],
      registers,
    }),
    functionUnavailable: new Gauge({
      name: 'eventide_dispatcher_function_unavailable',
      help: '1 while the function refuses connections (no ready pod: scaled to zero, a rollout); its events wait without spending retries until its activation timeout.',
      labelNames: ['function'],
      registers,
    }),
    backfillRowsRead: new Counter({ name: 'eventide_dispatcher_backfill_rows_read_total', help: 'Rows a backfill read from its table.', labelNames: ['backfill'], registers }),
    backfillReadsSent: new Counter({
      name: 'eventide_dispatcher_backfill_reads_sent_total',
      help: "Read events a backfill handed to its trigger's lane (rows that passed the filters).",
      labelNames: ['backfill'],
      registers,
    }),
  };
}

/** The eventsReceived key of a change: its table (schema.name) and operation. */
export function tableChangeKey(schema: string, table: string, op: string): string {
  return `${schema}.${table}\u0000${op}`;
}

/**
 * A counter bumped once or more per row change. The counts are kept as plain numbers by a key and handed
 * to prom-client when it is scraped: its inc() checks and hashes the label set on every call (a sorted
 * string each time), which cost more than routing the change.
 */
export class TallyCounter<T extends string> {
  readonly counter: Counter<T>;
  private readonly counts = new Map<string, number>();

  constructor(
    config: CounterConfiguration<T>,
    private readonly labelsOf: (key: string) => LabelValues<T>,
  ) {
    this.counter = new Counter<T>({ ...config, collect: () => this.flush() });
  }

  inc(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  private flush(): void {
    for (const [key, count] of this.counts) this.counter.inc(this.labelsOf(key), count);
    this.counts.clear();
  }
}
