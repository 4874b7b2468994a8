/**
 * The two systems the peer bench compares, behind one interface: started on a slot of their own with
 * a delivery mode (one event per request, or batches), stopped after the measurement.
 */
import { PUBLICATION, startBenchDispatcher, stopBenchDispatcher, triggerManifest } from '../harness.js';
import { type DebeziumConfig, startDebezium } from './debezium.js';

export interface PeerProcess {
  pid: number;
  output(): string;
  /** Whether the process has exited (a start that failed). */
  exited(): boolean;
  stop(): Promise<void>;
}

export interface PeerSystem {
  name: string;
  /** Prefix of the replication slots its runs use (each run creates and drops its own). */
  slotPrefix: string;
  /** The publication it reads. */
  publication: string;
  /** Starts it on `slot`, delivering to `sinkUrl` one event per request (batchSize undefined) or in batches. */
  start(slot: string, sinkUrl: string, batchSize: number | undefined): Promise<PeerProcess>;
}

/** `eventide dispatch` with one EventTrigger on inserts of public.orders: the trigger's defaults but concurrency and batch.maxSize. */
export function eventidePeer(databaseUrl: string, concurrency: number): PeerSystem {
  return {
    name: 'eventide',
    slotPrefix: 'peer_eventide',
    publication: PUBLICATION,
    async start(slot, sinkUrl, batchSize) {
      const run = await startBenchDispatcher(databaseUrl, slot, [triggerManifest(sinkUrl, { concurrency, batchSize: batchSize ?? 1 })]);
      return {
        pid: run.pid,
        output: run.output,
        exited: () => run.child.exitCode !== null || run.child.signalCode !== null,
        stop: () => stopBenchDispatcher(run),
      };
    },
  };
}

export const DEBEZIUM_PUBLICATION = 'dbz_bench';

/** Debezium Server with its HTTP sink (batch mode when a batch size is given) and the Postgres connector. */
export function debeziumPeer(config: Omit<DebeziumConfig, 'slot' | 'sinkUrl' | 'batchSize' | 'publication'>): PeerSystem {
  return {
    name: 'Debezium Server',
    slotPrefix: 'peer_debezium',
    publication: DEBEZIUM_PUBLICATION,
    async start(slot, sinkUrl, batchSize) {
      const run = await startDebezium({ ...config, slot, sinkUrl, batchSize, publication: DEBEZIUM_PUBLICATION });
      return {
        pid: run.pid,
        output: run.output,
        exited: () => run.child.exitCode !== null || run.child.signalCode !== null,
        stop: () => run.stop(),
      };
    },
  };
}
