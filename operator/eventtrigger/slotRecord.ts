import type { V1ConfigMap } from '@kubernetes/client-node';

/**
 * The replication slots a source's dispatcher was told to read, recorded on its ConfigMap, so the
 * operator knows which slots it made: a slot left behind by a rename, by a move of the source's
 * triggers elsewhere, or by the last trigger's deletion is dropped when its triggers asked for that
 * (`dropSlotOnDelete`), whatever the deleted trigger's own spec happens to say.
 */
export const SLOTS_ANNOTATION = 'eventide.dev/slots';

export interface RecordedSlot {
  slot: string;
  publication: string;
  /** Some trigger of the source had dropSlotOnDelete while the dispatcher read this slot. */
  drop: boolean;
}

/** The record a dispatcher ConfigMap carries; none (an older operator's ConfigMap, or a hand edit gone wrong) reads as empty. */
export function readSlotRecord(configMap: V1ConfigMap | undefined): RecordedSlot[] {
  const text = configMap?.metadata?.annotations?.[SLOTS_ANNOTATION];
  if (!text) return [];
  try {
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed)) return [];
    return parsed.filter((e): e is RecordedSlot => typeof e === 'object' && e !== null && typeof e.slot === 'string' && typeof e.publication === 'string' && typeof e.drop === 'boolean');
  } catch {
    return [];
  }
}

/** A slot to drop, and whether its publication goes too (not while the current slot still publishes through it). */
export interface SlotToDrop {
  slot: string;
  publication: string | undefined;
}

/**
 * The next record and what to drop. Pure. `current` is the slot the source's dispatcher reads now
 * (absent when the source has no trigger left). A previous slot marked `drop` stays recorded until it
 * is dropped; one not marked is forgotten (it is the user's to keep, and holds WAL while it exists).
 */
export function planSlots(recorded: readonly RecordedSlot[], current: RecordedSlot | undefined): { record: RecordedSlot[]; toDrop: SlotToDrop[]; kept: RecordedSlot[] } {
  const previous = recorded.filter((r) => r.slot !== current?.slot);
  const toDrop = previous.filter((r) => r.drop);
  const kept = previous.filter((r) => !r.drop);
  // Once current, a slot's drop flag follows the triggers; a slot no longer current keeps the flag it had.
  const record = [...(current ? [current] : []), ...toDrop];
  return {
    record,
    toDrop: toDrop.map((r) => ({ slot: r.slot, publication: current?.publication === r.publication ? undefined : r.publication })),
    kept,
  };
}
