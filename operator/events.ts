import { type CoreV1Api, type CoreV1Event, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import { apiErrorMessage } from './errors.js';
import { FIELD_MANAGER } from './labels.js';

/** The object an Event is about. */
export interface EventSubject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string };
}

/** Repeats of one event within this window bump its count instead of creating another. */
const AGGREGATE_WINDOW_MS = 10 * 60_000;
const MAX_REMEMBERED = 4096;

/**
 * Records Kubernetes Events (what `kubectl describe` shows) for what users should see: invalid specs,
 * slot drops, failures. Like client-go's recorder it never fails the caller and folds repeats of the
 * same event into one with a count.
 */
export class EventRecorder {
  private readonly recent = new Map<string, { name: string; namespace: string; count: number; at: number }>();

  constructor(
    private readonly core: CoreV1Api,
    private readonly instance: string,
    private readonly logger: Logger,
  ) {}

  normal(subject: EventSubject, reason: string, message: string): void {
    void this.record(subject, 'Normal', reason, message);
  }

  warning(subject: EventSubject, reason: string, message: string): void {
    void this.record(subject, 'Warning', reason, message);
  }

  private async record(subject: EventSubject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const namespace = subject.metadata.namespace ?? 'default';
    const key = `${subject.metadata.uid ?? subject.metadata.name}|${type}|${reason}|${message}`;
    const now = new Date();
    const seen = this.recent.get(key);
    try {
      if (seen && now.getTime() - seen.at < AGGREGATE_WINDOW_MS) {
        seen.count++;
        seen.at = now.getTime();
        await this.core.patchNamespacedEvent({ name: seen.name, namespace, body: { count: seen.count, lastTimestamp: now } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
        return;
      }
      const event: CoreV1Event = {
        metadata: { name: `${subject.metadata.name}.${(now.getTime() * 1000 + Math.floor(Math.random() * 1000)).toString(16)}`, namespace },
        involvedObject: {
          apiVersion: subject.apiVersion,
          kind: subject.kind,
          name: subject.metadata.name,
          namespace,
          ...(subject.metadata.uid ? { uid: subject.metadata.uid } : {}),
          ...(subject.metadata.resourceVersion ? { resourceVersion: subject.metadata.resourceVersion } : {}),
        },
        type,
        reason,
        message,
        count: 1,
        firstTimestamp: now,
        lastTimestamp: now,
        source: { component: FIELD_MANAGER },
        reportingComponent: FIELD_MANAGER,
        reportingInstance: this.instance,
      };
      const created = await this.core.createNamespacedEvent({ namespace, body: event });
      if (this.recent.size >= MAX_REMEMBERED) this.recent.delete(this.recent.keys().next().value!);
      this.recent.set(key, { name: created.metadata?.name ?? event.metadata.name!, namespace, count: 1, at: now.getTime() });
    } catch (error) {
      this.logger.debug({ err: apiErrorMessage(error), reason }, 'could not record event');
    }
  }
}
