/**
 * The in-memory window, shared fairly between triggers. The window bounds the events and bytes held
 * in memory; each trigger is guaranteed a share of it, and may borrow free room beyond its share only
 * while every sibling keeps the room its working set needs. A trigger that may not admit an event
 * does not stop the reader: its event goes to the trigger's backlog instead.
 */

/** What admission needs to know of one trigger. */
export interface ShareState {
  /** Events of this trigger held in memory now. */
  held: number;
  /** The room its working set needs: what its concurrency and batch size keep busy, twice over. */
  need: number;
}

/** What admission needs to know of the whole window. */
export interface WindowState {
  maxEvents: number;
  maxBytes: number;
  heldEvents: number;
  heldBytes: number;
  triggers: number;
  /** Sum over every trigger of the room it needs and does not hold yet (capped at the fair share). */
  unmet: number;
}

/** The share every trigger is guaranteed. */
export function fairShare(maxEvents: number, triggers: number): number {
  return Math.max(1, Math.floor(maxEvents / Math.max(1, triggers)));
}

/** How much of its need a trigger does not hold yet, capped at its fair share. */
export function unmetNeed(share: ShareState, fair: number): number {
  return Math.max(0, Math.min(fair, share.need) - share.held);
}

/**
 * Whether one more event of `bytes` may be held for the trigger. Pure. Within its fair share a
 * trigger admits while the window has room; beyond it, it borrows only room no sibling needs.
 */
export function mayAdmit(share: ShareState, window: WindowState, bytes: number): boolean {
  // An event larger than the byte budget still passes when its trigger holds nothing, or it never could.
  const bytesFit = window.heldBytes + bytes <= window.maxBytes || share.held === 0;
  if (!bytesFit || window.heldEvents >= window.maxEvents) return false;
  const fair = fairShare(window.maxEvents, window.triggers);
  if (share.held < fair) return true;
  const reservedForOthers = window.unmet - unmetNeed(share, fair);
  return window.heldEvents + 1 + reservedForOthers <= window.maxEvents;
}

/** The window with its per-trigger accounting; decisions are made by mayAdmit. */
export class WindowShares {
  private readonly shares = new Map<string, ShareState>();
  private heldEvents = 0;
  private heldBytes = 0;
  private unmet = 0;

  constructor(
    readonly maxEvents: number,
    readonly maxBytes: number,
  ) {}

  /** Sets the triggers and their needs (at start and after a reload); a removed trigger's holdings stay counted until released. */
  configure(needs: ReadonlyMap<string, number>): void {
    for (const [key, need] of needs) {
      const share = this.shares.get(key);
      if (share) share.need = need;
      else this.shares.set(key, { held: 0, need });
    }
    for (const [key, share] of this.shares) if (!needs.has(key) && share.held === 0) this.shares.delete(key);
    this.recomputeUnmet();
  }

  /** Admits the event when the trigger may hold it; false means it has to wait elsewhere (the backlog). */
  tryAdmit(trigger: string, bytes: number): boolean {
    const share = this.share(trigger);
    if (!mayAdmit(share, this.state(), bytes)) return false;
    this.change(share, 1, bytes);
    return true;
  }

  /** Room the trigger could take now, in events (what the drainer may load). */
  roomFor(trigger: string): number {
    const share = this.share(trigger);
    const fair = fairShare(this.maxEvents, this.shares.size);
    const free = this.maxEvents - this.heldEvents;
    if (this.heldBytes >= this.maxBytes && share.held > 0) return 0;
    const withinShare = Math.max(0, fair - share.held);
    const borrowable = Math.max(0, free - (this.unmet - unmetNeed(share, fair)));
    return Math.max(0, Math.min(free, Math.max(withinShare, borrowable)));
  }

  /** An admitted event left memory (delivered, dead-lettered or parked). */
  release(trigger: string, bytes: number): void {
    const share = this.shares.get(trigger);
    if (!share) return;
    this.change(share, -1, -bytes);
  }

  get events(): number {
    return this.heldEvents;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  private share(trigger: string): ShareState {
    let share = this.shares.get(trigger);
    if (!share) {
      share = { held: 0, need: 1 };
      this.shares.set(trigger, share);
      this.recomputeUnmet();
    }
    return share;
  }

  private state(): WindowState {
    return { maxEvents: this.maxEvents, maxBytes: this.maxBytes, heldEvents: this.heldEvents, heldBytes: this.heldBytes, triggers: this.shares.size, unmet: this.unmet };
  }

  private change(share: ShareState, events: number, bytes: number): void {
    const fair = fairShare(this.maxEvents, this.shares.size);
    this.unmet -= unmetNeed(share, fair);
    share.held += events;
    this.unmet += unmetNeed(share, fair);
    this.heldEvents += events;
    this.heldBytes += bytes;
  }

  private recomputeUnmet(): void {
    const fair = fairShare(this.maxEvents, this.shares.size);
    this.unmet = 0;
    for (const share of this.shares.values()) this.unmet += unmetNeed(share, fair);
  }
}
