import { createHash } from 'node:crypto';
import type { Lsn } from '../lsn.js';

/** Trigger key → its short hash; computed once per trigger, not once per event. */
const triggerHashes = new Map<string, string>();

/**
 * A deterministic event id: the same change seen by the same trigger gets the same id after any
 * restart, so functions can deduplicate. Commit LSN, the change's WAL position and its ordinal
 * within that WAL record identify the change; a short hash of the trigger tells apart two triggers
 * firing on one change.
 */
export function eventId(input: { triggerKey: string; commitLsn: Lsn; changeLsn: Lsn; ordinal: number }): string {
  let trigger = triggerHashes.get(input.triggerKey);
  if (trigger === undefined) {
    trigger = createHash('sha256').update(input.triggerKey).digest('hex').slice(0, 8);
    triggerHashes.set(input.triggerKey, trigger);
  }
  return `${input.commitLsn.toString(16).padStart(16, '0')}-${input.changeLsn.toString(16).padStart(16, '0')}-${input.ordinal}-${trigger}`;
}
