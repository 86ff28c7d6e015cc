// Runs one MLX worker process and talks to it. The worker's life is an explicit state machine:
//
//   stopped ──start──▶ starting ──loaded──▶ ready ⇄ busy (requests running)
//                          │                  │      │
//                          └──── crashed ◀────┴──────┘   (exit, garbage on stdout, no heartbeat)
//                                   │
//                                   └─ next request, after back-off ─▶ starting
//   ready/busy/starting ──stop──▶ stopping ──exit──▶ stopped
//
// A crash fails every request in flight with a 5xx error at once; the worker is started again
// (the model reloaded) when the next request arrives, waiting out an exponential back-off first so
// a model that kills its worker on load cannot spin the machine.

import type { Subprocess } from "bun";
import { EngineError, errorMessage } from "../../errors.ts";
import { log } from "../../log.ts";
import {
  encodeRequest, type FromWorker, type Hello, type Loaded, MAX_LINE_BYTES, parseWorkerLine, PROTOCOL_VERSION, ProtocolViolation,
  type ToWorker, type WorkerReply,
} from "./protocol.ts";

export type WorkerState = "stopped" | "starting" | "ready" | "busy" | "stopping" | "crashed";

const allowed: Record<WorkerState, readonly WorkerState[]> = {
  stopped: ["starting"],
  starting: ["ready", "crashed", "stopping"],
  ready: ["busy", "stopping", "crashed"],
  busy: ["ready", "stopping", "crashed"],
  stopping: ["stopped"],
  crashed: ["starting", "stopping", "stopped"],
};

/** The worker died, hung or broke the protocol; requests it held cannot finish. */
export class WorkerCrashedError extends EngineError {
  constructor(message: string) {
    super(message, "worker_crashed");
  }
}

/** The worker answered a request with an error of its own. */
export class WorkerRequestError extends Error {
  override name = "WorkerRequestError";
  constructor(readonly reply: Extract<FromWorker, { type: "error" }>) {
    super(reply.message);
  }
}

export interface SupervisorOptions {
  /** Used in log lines and error messages. */
  label: string;
  /** argv: the runtime's python and the worker script. */
  command: string[];
  env?: Record<string, string | undefined>;
  /** What the worker loads once started (sent again after every restart). */
  load: Omit<Extract<ToWorker, { type: "load" }>, "type" | "id">;
  /** Silence (no heartbeat, no message) longer than this means the worker hung. */
  hangTimeoutMs?: number;
  /** First restart delay; doubles per crash in a row up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
}

type Listener = {
  onMessage: (msg: WorkerReply) => void;
  fail: (err: Error) => void;
};

export class WorkerSupervisor {
  private current: WorkerState = "stopped";
  private proc: Subprocess<"pipe", "pipe", "pipe"> | undefined;
  private readonly listeners = new Map<string, Listener>();
  private starting: Promise<void> | undefined;
  private lastMessageAt = 0;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private crashes = 0;
  private crashedAt = 0;
  private lastCrash: string | undefined;
  private nextId = 0;
  private generating = 0;
  hello: Hello | undefined;
  loaded: Loaded | undefined;
  private readonly hangTimeoutMs: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(private readonly opts: SupervisorOptions) {
    this.hangTimeoutMs = opts.hangTimeoutMs ?? 30_000;
    this.backoffMs = opts.backoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
  }

  get state(): WorkerState {
    return this.current;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Why the worker last crashed, for status output. */
  get crashReason(): string | undefined {
    return this.lastCrash;
  }

  private transition(to: WorkerState): void {
    const from = this.current;
    if (from === to) return;
    if (!allowed[from].includes(to)) throw new EngineError(`mlx worker cannot go from ${from} to ${to}`, "worker_state");
    this.current = to;
    log.debug("mlx worker state", { model: this.opts.label, from, to });
  }

  /** Delay before the next start is allowed; 0 when not after a crash. */
  backoffRemaining(now = Date.now()): number {
    if (this.current !== "crashed" || this.crashes === 0) return 0;
    const delay = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (this.crashes - 1));
    return Math.max(0, this.crashedAt + delay - now);
  }

  /** Starts the worker if it is not running (after the back-off when it crashed); resolves once the model is loaded. */
  async ensureRunning(): Promise<void> {
    if (this.current === "ready" || this.current === "busy") return;
    if (this.current === "stopping") throw new EngineError(`the MLX worker for ${this.opts.label} is shutting down`, "worker_stopping");
    this.starting ??= (async () => {
      const wait = this.backoffRemaining();
      if (wait > 0) {
        log.info("restarting mlx worker after back-off", { model: this.opts.label, ms: wait, crashes: this.crashes });
        await Bun.sleep(wait);
      }
      await this.spawn();
    })().finally(() => { this.starting = undefined; });
    return this.starting;
  }

  private async spawn(): Promise<void> {
    this.transition("starting");
    const started = performance.now();
    let proc: Subprocess<"pipe", "pipe", "pipe">;
    try {
      proc = Bun.spawn(this.opts.command, {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "pipe",
        // Bytecode caches stay enabled: they halve the import time of the next start.
        env: { ...process.env, ...this.opts.env, PYTHONUNBUFFERED: "1" },
      });
    } catch (err) {
      this.crash(`cannot start ${this.opts.command[0]}: ${errorMessage(err)}`);
      throw new WorkerCrashedError(`cannot start the MLX worker for ${this.opts.label}: ${errorMessage(err)}`);
    }
    this.proc = proc;
    this.lastMessageAt = Date.now();
    void this.readStdout(proc);
    void this.readStderr(proc);
    void proc.exited.then((code) => this.onExit(proc, code));
    this.watchdog = setInterval(() => this.checkAlive(proc), Math.max(50, Math.min(1000, this.hangTimeoutMs / 4)));

    const hello = await this.awaitHello();
    if (hello.protocol !== PROTOCOL_VERSION) {
      this.kill(proc, `speaks protocol ${hello.protocol}, this lmx speaks ${PROTOCOL_VERSION}`);
      throw new WorkerCrashedError(`the MLX worker speaks protocol version ${hello.protocol} but this lmx needs ${PROTOCOL_VERSION}; run 'lmx runtime update mlx'`);
    }
    this.hello = hello;
    let loaded: Loaded;
    try {
      loaded = await this.call({ type: "load", ...this.opts.load }, "loaded");
    } catch (err) {
      // A worker without its model is of no use; the next request starts a fresh one (after back-off).
      if (err instanceof WorkerRequestError) this.kill(proc, `could not load the model (${err.message})`);
      throw err;
    }
    this.loaded = loaded;
    this.transition("ready");
    log.info("mlx worker ready", {
      model: this.opts.label, pid: proc.pid, python: hello.python, mlx: hello.mlx, mlx_lm: hello.mlx_lm,
      load_ms: loaded.load_ms, ms: Math.round(performance.now() - started),
    });
  }

  private helloWaiter: { resolve: (h: Hello) => void; reject: (e: Error) => void } | undefined;

  private awaitHello(): Promise<Hello> {
    return new Promise((resolve, reject) => { this.helloWaiter = { resolve, reject }; });
  }

  private async readStdout(proc: Subprocess<"pipe", "pipe", "pipe">): Promise<void> {
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of proc.stdout) {
        buf += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) !== -1) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) this.onLine(proc, line);
          if (this.proc !== proc) return;
        }
        if (buf.length > MAX_LINE_BYTES) {
          this.kill(proc, `sent a line longer than ${MAX_LINE_BYTES} bytes`);
          return;
        }
      }
    } catch (err) {
      if (this.proc === proc) log.warn("mlx worker stdout failed", { model: this.opts.label, error: errorMessage(err) });
    }
  }

  private async readStderr(proc: Subprocess<"pipe", "pipe", "pipe">): Promise<void> {
    const decoder = new TextDecoder();
    let buf = "";
    const emit = (line: string) => {
      if (line.trim()) log.info(`mlx worker: ${line}`, { model: this.opts.label, pid: proc.pid });
    };
    try {
      for await (const chunk of proc.stderr) {
        buf += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) !== -1) {
          emit(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
        // A line that never ends is logged in pieces rather than kept in memory.
        if (buf.length > 16_384) { emit(buf); buf = ""; }
      }
      emit(buf);
    } catch {
      // The process is gone; its exit is handled in onExit.
    }
  }

  private onLine(proc: Subprocess<"pipe", "pipe", "pipe">, line: string): void {
    if (this.proc !== proc) return;
    this.lastMessageAt = Date.now();
    let msg: FromWorker;
    try {
      msg = parseWorkerLine(line);
    } catch (err) {
      this.kill(proc, `sent an invalid message (${errorMessage(err)})`);
      return;
    }
    switch (msg.type) {
      case "hello":
        if (!this.helloWaiter) { this.kill(proc, "said hello twice"); return; }
        this.helloWaiter.resolve(msg);
        this.helloWaiter = undefined;
        return;
      case "heartbeat":
        return;
      case "fatal":
        this.kill(proc, `gave up: ${msg.message}`);
        return;
      default: {
        if (this.helloWaiter) { this.kill(proc, `sent ${msg.type} before hello`); return; }
        const listener = this.listeners.get(msg.id);
        // Replies to a request LMX already gave up on (a cancel racing its end) are expected.
        if (listener) listener.onMessage(msg);
        else log.debug("mlx worker message for a finished request", { model: this.opts.label, id: msg.id, type: msg.type });
      }
    }
  }

  private checkAlive(proc: Subprocess<"pipe", "pipe", "pipe">): void {
    if (this.proc !== proc) return;
    const silent = Date.now() - this.lastMessageAt;
    if (silent > this.hangTimeoutMs) this.kill(proc, `stopped responding (no heartbeat for ${Math.round(silent / 1000)} s)`);
  }

  private onExit(proc: Subprocess<"pipe", "pipe", "pipe">, code: number | null): void {
    if (this.proc !== proc) return;
    const how = proc.signalCode ? `was killed by ${proc.signalCode}` : `exited with code ${code}`;
    if (this.current === "stopping") {
      this.cleanup(new WorkerCrashedError(`the MLX worker for ${this.opts.label} was stopped`));
      this.transition("stopped");
      return;
    }
    this.crash(how);
  }

  /** Kills a misbehaving worker; the crash is recorded now, not when the exit is noticed. */
  private kill(proc: Subprocess<"pipe", "pipe", "pipe">, why: string): void {
    if (this.proc !== proc) return;
    proc.kill("SIGKILL");
    this.crash(why);
  }

  private crash(why: string): void {
    this.lastCrash = why;
    this.crashes++;
    this.crashedAt = Date.now();
    log.error("mlx worker crashed", { model: this.opts.label, pid: this.proc?.pid, reason: why, crashes: this.crashes });
    const err = new WorkerCrashedError(`the MLX worker for ${this.opts.label} ${why}; requests it was running failed, and it restarts on the next request`);
    this.cleanup(err);
    if (this.current === "stopping") this.transition("stopped");
    else this.transition("crashed");
  }

  private cleanup(err: Error): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.proc = undefined;
    this.loaded = undefined;
    this.helloWaiter?.reject(err);
    this.helloWaiter = undefined;
    const pending = [...this.listeners.values()];
    this.listeners.clear();
    for (const l of pending) l.fail(err);
  }

  private write(msg: ToWorker): void {
    const proc = this.proc;
    if (!proc) throw new WorkerCrashedError(`the MLX worker for ${this.opts.label} is not running`);
    try {
      proc.stdin.write(encodeRequest(msg));
      void proc.stdin.flush();
    } catch (err) {
      if (err instanceof ProtocolViolation) throw new EngineError(err.message, "protocol_error");
      this.kill(proc, `cannot be written to (${errorMessage(err)})`);
      throw new WorkerCrashedError(`the MLX worker for ${this.opts.label} cannot be written to: ${errorMessage(err)}`);
    }
  }

  newId(prefix: string): string {
    return `${prefix}-${++this.nextId}`;
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
          else if (this.proc) this.kill(this.proc, `answered ${full.type} with ${reply.type}`);
        },
        fail: reject,
      });
      try {
        this.write(full);
      } catch (err) {
        this.listeners.delete(full.id);
        reject(err);
      }
    });
  }

  /**
   * A generation: events flow to `onEvent` until `done` (resolves) or `error` (rejects). The
   * signal sends a cancel and rejects at once; the worker drops the sequence at its next step.
   */
  generate(msg: Extract<ToWorker, { type: "generate" }>, onEvent: (e: WorkerReply) => void, signal?: AbortSignal): Promise<Extract<WorkerReply, { type: "done" }>> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = () => {
        if (settled) return false;
        settled = true;
        this.listeners.delete(msg.id);
        signal?.removeEventListener("abort", onAbort);
        this.generating--;
        if (this.generating === 0 && this.current === "busy") this.transition("ready");
        return true;
      };
      const onAbort = () => {
        if (!finish()) return;
        try {
          this.write({ type: "cancel", id: msg.id });
        } catch {
          // A worker that cannot take the cancel is already being replaced.
        }
        reject(signal?.reason instanceof Error ? signal.reason : new DOMException("aborted", "AbortError"));
      };
      this.generating++;
      if (this.current === "ready") this.transition("busy");
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
        this.write(msg);
      } catch (err) {
        if (finish()) reject(err);
      }
    });
  }

  /** Marks the worker healthy after a request succeeded, so the next crash starts the back-off afresh. */
  succeeded(): void {
    this.crashes = 0;
  }

  /** Asks the worker to exit, then kills it if it does not within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.starting) await this.starting.catch(() => undefined);
    if (this.current === "stopped") return;
    if (this.current === "crashed") { this.transition("stopped"); return; }
    const proc = this.proc;
    this.transition("stopping");
    if (!proc) { this.transition("stopped"); return; }
    try {
      proc.stdin.write(encodeRequest({ type: "shutdown" }));
      await proc.stdin.end();
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
    await proc.exited;
    clearTimeout(timer);
  }
}
