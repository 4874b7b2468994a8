import type { BackfillStatusT } from '../../api/v1alpha1/index.js';
import type { DispatcherReading } from '../eventtrigger/serving.js';
import type { KindLifecycle } from '../resourceReconciler.js';
import { type BackfillStatusInput, decideBackfillStatus, type TriggerResolution } from './status.js';

/**
 * The next status of a Backfill: the reconciler marks what it found (the trigger, the dispatcher's
 * reading, or an invalid spec) and `status()` is decideBackfillStatus over it. Reconcilers never
 * edit `conditions[]` themselves.
 */
export class BackfillLifecycle implements KindLifecycle<BackfillStatusT> {
  private observed: Pick<BackfillStatusInput, 'invalidSpec' | 'trigger' | 'reading'> = {};

  constructor(
    private readonly backfill: { metadata: { name: string; namespace: string; uid: string; generation?: number }; status?: BackfillStatusT },
    private readonly now: string,
  ) {}

  /** The trigger (or why there is none) and the last reading of its dispatcher. */
  markObserved(trigger: TriggerResolution, reading: DispatcherReading | undefined): void {
    this.observed = { trigger, ...(reading ? { reading } : {}) };
  }

  /** Accepted=False, InvalidSpec: the spec passed the CRD schema but cannot be run (a filter that is not CEL). */
  markInvalidSpec(message: string): void {
    this.observed = { invalidSpec: message };
  }

  status(): BackfillStatusT {
    const { metadata, status } = this.backfill;
    return decideBackfillStatus({
      key: `${metadata.namespace}/${metadata.name}`,
      uid: metadata.uid,
      ...(metadata.generation !== undefined ? { generation: metadata.generation } : {}),
      ...(status ? { previous: status } : {}),
      now: this.now,
      ...this.observed,
    });
  }
}
