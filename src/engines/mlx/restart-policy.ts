// When a crashed MLX worker may start again, and when to stop trying: an exponential back-off
// over the crashes since the last request that succeeded, and a bound on crashes within a window.

export interface RestartLimits {
  /** First restart delay; doubles per crash in a row up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** Restarts allowed within windowMs; one more crash gives up. */
  maxRestarts: number;
  windowMs: number;
}

export class RestartPolicy {
  /** Crashes since the last request that succeeded. */
  private inARow = 0;
  private lastCrashAt = 0;
  private recent: number[] = [];

  constructor(readonly limits: RestartLimits, private readonly now: () => number = Date.now) {}

  /** Records a crash; true when it is one too many within the window. */
  crashed(): boolean {
    const now = this.now();
    this.inARow++;
    this.lastCrashAt = now;
    this.recent = [...this.recent.filter((t) => now - t < this.limits.windowMs), now];
    return this.recent.length > this.limits.maxRestarts;
  }

  /** A request succeeded: the next crash starts the back-off afresh. */
  succeeded(): void {
    this.inARow = 0;
  }

  get crashesInARow(): number {
    return this.inARow;
  }

  get crashesInWindow(): number {
    return this.recent.length;
  }

  /** Milliseconds still to wait before the next start; 0 when no crash is pending. */
  delay(): number {
    if (this.inARow === 0) return 0;
    const wait = Math.min(this.limits.maxBackoffMs, this.limits.backoffMs * 2 ** (this.inARow - 1));
    return Math.max(0, this.lastCrashAt + wait - this.now());
  }
}
