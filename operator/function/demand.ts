import type { DispatcherReading } from '../eventtrigger/serving.js';
import type { Demand } from './scaleDecision.js';

/** What the autoscaler knows of one Function's demand: the sum over its dispatchers, or why it cannot know. */
export type FunctionDemand = { demand: Demand; unavailableSince?: number } | { unknown: string };

/**
 * Sums one Function's demand over the dispatchers that serve its triggers. Pure. A dispatcher that has
 * not been read, or could not be, makes the whole demand unknown: its events may be exactly the ones
 * that need the pods, so the autoscaler holds rather than guess zero. A dispatcher that does not list
 * the Function has nothing for it (its triggers are not loaded yet, or it has no events).
 */
export function sumDemand(functionKey: string, dispatchers: readonly { name: string; reading: DispatcherReading | undefined }[]): FunctionDemand {
  const demand: Demand = { inflight: 0, events: 0, backlog: 0 };
  // Unbounded unless every dispatcher with events for the Function says how many it would send at once.
  let capacity: number | undefined;
  let bounded = true;
  let unavailableSince: number | undefined;
  for (const { name, reading } of dispatchers) {
    if (!reading) return { unknown: `dispatcher ${name} has not reported yet` };
    if ('error' in reading) return { unknown: `cannot read dispatcher ${name}: ${reading.error}` };
    const report = reading.report.functions[functionKey];
    if (!report) continue;
    demand.inflight += report.inflight;
    demand.events += report.events;
    demand.backlog += report.backlog;
    if (report.capacity === undefined) bounded = false;
    else capacity = (capacity ?? 0) + report.capacity;
    if (report.lastDeliveryTime !== undefined) {
      const at = Date.parse(report.lastDeliveryTime);
      if (!Number.isNaN(at)) demand.lastDeliveryAt = Math.max(demand.lastDeliveryAt ?? at, at);
    }
    if (report.unavailableSince !== undefined) {
      const since = Date.parse(report.unavailableSince);
      if (!Number.isNaN(since)) unavailableSince = Math.min(unavailableSince ?? since, since);
    }
  }
  if (bounded && capacity !== undefined) demand.capacity = capacity;
  return { demand, ...(unavailableSince !== undefined ? { unavailableSince } : {}) };
}
