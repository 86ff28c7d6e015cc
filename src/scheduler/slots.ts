import { OverloadedError } from "../errors.ts";

export class AbortedWhileQueuedError extends Error {
  override name = "AbortedWhileQueuedError";
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (err: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * `capacity` requests run at once; up to `queueLimit` wait in FIFO order; anything beyond that is
 * refused at once with 503 so a client can back off instead of hanging. A waiter whose client goes
 * away leaves the queue immediately.
 */
export class Slots {
  private active = 0;
  private readonly waiting: Waiter[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(readonly capacity: number, readonly queueLimit: number, private readonly label: string) {}

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new AbortedWhileQueuedError("aborted"));
    if (this.active < this.capacity) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.queueLimit) {
      return Promise.reject(new OverloadedError(
        `${this.label} is busy: ${this.active} requests running and ${this.waiting.length} queued (queue limit ${this.queueLimit}). Retry later.`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.waiting.indexOf(waiter);
          if (i !== -1) this.waiting.splice(i, 1);
          reject(new AbortedWhileQueuedError("aborted while queued"));
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.waiting.push(waiter);
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next) {
        if (next.onAbort) next.signal?.removeEventListener("abort", next.onAbort);
        // The slot passes straight to the next waiter; `active` stays the same.
        next.resolve(this.releaser());
      } else {
        this.active--;
        if (this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
      }
    };
  }

  /** Resolves once nothing runs (true), or after `timeoutMs` (false). */
  waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Fails everyone still waiting (the model is being unloaded). */
  rejectAll(err: Error): void {
    for (const w of this.waiting.splice(0)) {
      if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
      w.reject(err);
    }
  }
}
