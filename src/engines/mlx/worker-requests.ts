// The requests in flight on one MLX worker process: each waits for its replies by id. A single
// call waits for one reply of the type it expects; a generation gets events until `done` or
// `error`, and can be cancelled (the client left) or ended early (the core's soft stop).

import type { ToWorker, WorkerReply } from "./protocol.ts";
import { WorkerRequestError } from "./worker-errors.ts";

type Listener = {
  onMessage: (msg: WorkerReply) => void;
  fail: (err: Error) => void;
};

export interface WorkerLink {
  /** Sends one message to the worker; throws when it cannot be sent. */
  write(msg: ToWorker): void;
  /** The worker broke the protocol (an answer of the wrong type): it is killed. */
  misbehaved(why: string): void;
  /** A generation started (+1) or ended (−1); `running` are left running. */
  generating(change: 1 | -1, running: number): void;
}

export class WorkerRequests {
  private readonly listeners = new Map<string, Listener>();
  private nextId = 0;
  private running = 0;

  constructor(private readonly link: WorkerLink) {}

  newId(prefix: string): string {
    return `${prefix}-${++this.nextId}`;
  }

  /** Hands a reply to the request it answers; false when that request is already over. */
  deliver(msg: WorkerReply): boolean {
    const listener = this.listeners.get(msg.id);
    listener?.onMessage(msg);
    return listener !== undefined;
  }

  /** Fails every request in flight with `err` (the worker is gone). */
  failAll(err: Error): void {
    const pending = [...this.listeners.values()];
    this.listeners.clear();
    for (const l of pending) l.fail(err);
  }

  /** One request whose answer is a single message of type `expect` (or an error). */
  call<T extends WorkerReply["type"]>(msg: Extract<ToWorker, { id: string }> | Omit<Extract<ToWorker, { type: "load" }>, "id">, expect: T): Promise<Extract<WorkerReply, { type: T }>> {
    const full = ("id" in msg ? msg : { ...msg, id: this.newId(msg.type) }) as Extract<ToWorker, { id: string }>;
    return new Promise((resolve, reject) => {
      this.listeners.set(full.id, {
        onMessage: (reply) => {
          this.listeners.delete(full.id);
          if (reply.type === "error") reject(new WorkerRequestError(reply));
          else if (reply.type === expect) resolve(reply as Extract<WorkerReply, { type: T }>);
          else this.link.misbehaved(`answered ${full.type} with ${reply.type}`);
        },
        fail: reject,
      });
      try {
        this.link.write(full);
      } catch (err) {
        this.listeners.delete(full.id);
        reject(err);
      }
    });
  }

  /**
   * A generation: events flow to `onEvent` until `done` (resolves) or `error` (rejects). The
   * signal sends a cancel and rejects at once; the worker drops the sequence at its next step.
   * `stop` (the core's soft stop) sends `end`: the worker finishes the sequence and its `done` resolves.
   */
  generate(msg: Extract<ToWorker, { type: "generate" }>, onEvent: (e: WorkerReply) => void, signal?: AbortSignal, stop?: AbortSignal): Promise<Extract<WorkerReply, { type: "done" }>> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = () => {
        if (settled) return false;
        settled = true;
        this.listeners.delete(msg.id);
        signal?.removeEventListener("abort", onAbort);
        stop?.removeEventListener("abort", onStop);
        this.link.generating(-1, --this.running);
        return true;
      };
      const onAbort = () => {
        if (!finish()) return;
        try {
          this.link.write({ type: "cancel", id: msg.id });
        } catch {
          // A worker that cannot take the cancel is already being replaced.
        }
        reject(signal?.reason instanceof Error ? signal.reason : new DOMException("aborted", "AbortError"));
      };
      const onStop = () => {
        if (settled) return;
        try {
          this.link.write({ type: "end", id: msg.id });
        } catch {
          // A worker that cannot take it is being replaced; the request fails with the crash.
        }
      };
      this.link.generating(1, ++this.running);
      this.listeners.set(msg.id, {
        onMessage: (reply) => {
          if (reply.type === "done") { if (finish()) resolve(reply); }
          else if (reply.type === "error") { if (finish()) reject(new WorkerRequestError(reply)); }
          else onEvent(reply);
        },
        fail: (err) => { if (finish()) reject(err); },
      });
      if (signal?.aborted) { onAbort(); return; }
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this.link.write(msg);
      } catch (err) {
        if (finish()) reject(err);
        return;
      }
      if (stop?.aborted) onStop();
      else stop?.addEventListener("abort", onStop, { once: true });
    });
  }
}
