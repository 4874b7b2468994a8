import { createHash } from 'node:crypto';
import { flat } from '../flatText.js';
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
  if (input.commitLsn !== lastCommit) {
    lastCommit = input.commitLsn;
    lastCommitHex = lsnHex(lastCommit);
  }
  // Flat: the window holds every event's id (see flat()).
  return flat(`${lastCommitHex}-${lsnHex(input.changeLsn)}-${input.ordinal}-${trigger}`);
}

/** The commit LSN of the last id made, in hex: a transaction's events come one after another. */
let lastCommit = -1n;
let lastCommitHex = '';

function lsnHex(lsn: Lsn): string {
  return lsn.toString(16).padStart(16, '0');
}

/**
 * The event id as a UUID (version 8, from a hash of the id), for the Hasura payload: Hasura's ids are
 * UUIDs, and handlers written for it store them in uuid columns to deduplicate. Deterministic, so a
 * redelivery carries the same one.
 */
export function eventUuid(id: string): string {
  const bytes = createHash('sha256').update(id).digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
