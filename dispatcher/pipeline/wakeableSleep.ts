/**
 * A loop's pause that something else can cut short: `sleep(ms)` resolves after `ms`, or at once when
 * `wake()` is called meanwhile. A wake with nobody asleep is dropped (the loop looks again anyway).
 */
export class WakeableSleep {
  private wakeUp: (() => void) | undefined;

  wake(): void {
    const wakeUp = this.wakeUp;
    this.wakeUp = undefined;
    wakeUp?.();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
