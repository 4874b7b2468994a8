/**
 * A cap on deliveries in flight shared by several lanes: `Function.spec.concurrency` across every
 * trigger that targets the function. A lane takes a slot before it starts a request and gives it back
 * when the request ends; a lane that finds the gate full leaves a wake-up and tries again once a slot
 * is free. Waiting lanes are woken in the order they waited, one per freed slot, so no trigger of the
 * function starves its siblings.
 */
export class ConcurrencyGate {
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private limitValue: number) {}

  get limit(): number {
    return this.limitValue;
  }

  /** Requests in flight through this gate now. */
  get used(): number {
    return this.inFlight;
  }

  /** A new limit (a reload); a higher one wakes waiting lanes at once. */
  setLimit(limit: number): void {
    this.limitValue = limit;
    this.wakeWhileFree();
  }

  tryAcquire(): boolean {
    if (this.inFlight >= this.limitValue) return false;
    this.inFlight += 1;
    return true;
  }

  release(): void {
    this.inFlight -= 1;
    this.wakeWhileFree();
  }

  /** Calls `wake` once, when a slot may be free; a lane registers at most one at a time. */
  whenFree(wake: () => void): void {
    this.waiting.push(wake);
    this.wakeWhileFree();
  }

  private wakeWhileFree(): void {
    // Woken lanes try again on a later tick: a wake-up must not re-enter the lane that is releasing.
    let free = this.limitValue - this.inFlight;
    while (free > 0 && this.waiting.length > 0) {
      const wake = this.waiting.shift()!;
      free -= 1;
      queueMicrotask(wake);
    }
  }
}

/** The gates of the Functions that set a concurrency, by `namespace/name`. */
export class FunctionGates {
  private readonly gates = new Map<string, ConcurrencyGate>();

  /** Sets the limits after a (re)load; a Function whose limit was removed keeps no gate. */
  configure(limits: ReadonlyMap<string, number>): void {
    for (const [fn, limit] of limits) {
      const gate = this.gates.get(fn);
      if (gate) gate.setLimit(limit);
      else this.gates.set(fn, new ConcurrencyGate(limit));
    }
    for (const [fn, gate] of this.gates) {
      if (limits.has(fn)) continue;
      // Requests still in flight release into a gate nobody takes from; waiting lanes go on unlimited.
      gate.setLimit(Number.MAX_SAFE_INTEGER);
      this.gates.delete(fn);
    }
  }

  /** No Function sets a concurrency (the common case). */
  get empty(): boolean {
    return this.gates.size === 0;
  }

  gateFor(fn: string | undefined): ConcurrencyGate | undefined {
    return fn === undefined ? undefined : this.gates.get(fn);
  }

  /** Requests in flight per Function with a limit. */
  usage(): Map<string, { inFlight: number; limit: number }> {
    return new Map([...this.gates].map(([fn, gate]) => [fn, { inFlight: gate.used, limit: gate.limit }]));
  }
}
