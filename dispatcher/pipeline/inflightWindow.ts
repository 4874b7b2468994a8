/**
 * Bounds the events and bytes held in memory between reading the stream and settling them. When the
 * window is full the reader waits, so Postgres keeps the WAL instead of the dispatcher's heap growing.
 */
export class InflightWindow {
  private events = 0;
  private bytes = 0;
  private waiters: (() => void)[] = [];

  constructor(
    readonly maxEvents: number,
    readonly maxBytes: number,
  ) {}

  /** True when one more event could be admitted right now. */
  hasRoom(): boolean {
    // An event larger than the byte budget is still admitted into an empty window, or it could never pass.
    return this.events < this.maxEvents && (this.bytes < this.maxBytes || this.events === 0);
  }

  /** Resolves once there is room; resolves at once when there already is. */
  waitForRoom(): Promise<void> {
    if (this.hasRoom()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Counts an event as held. Callers check hasRoom()/waitForRoom() first; admitting past the bound is allowed for one event. */
  admit(bytes: number): void {
    this.events += 1;
    this.bytes += bytes;
  }

  /** An event was settled; wakes the reader if that made room. */
  release(bytes: number): void {
    this.events -= 1;
    this.bytes -= bytes;
    while (this.waiters.length > 0 && this.hasRoom()) this.waiters.shift()!();
  }

  get heldEvents(): number {
    return this.events;
  }

  get heldBytes(): number {
    return this.bytes;
  }
}
