// Runs one MLX worker process and talks to it. The worker's life is an explicit state machine
// (worker-lifecycle.ts). A crash (exit, garbage on stdout, no heartbeat) fails the requests whose
// output already reached a client; requests that had nothing out yet are served again by the
// restarted worker (`serve`). Restarts wait out an exponential back-off, and a worker that crashes
// more than `maxRestarts` times within `restartWindowMs` is given up on ("failed", with its last
// stderr lines in the error) so a model that kills its worker cannot spin the machine.

import type { Subprocess } from "bun";
import { EngineError, errorMessage } from "../../errors.ts";
import { log } from "../../log.ts";
import type { StateMachine } from "../../util/state-machine.ts";
import {
  encodeRequest, type FromWorker, type Hello, type Loaded, MAX_LINE_BYTES, parseWorkerLine, PROTOCOL_VERSION, ProtocolViolation,
  type ToWorker, type WorkerReply,
} from "./protocol.ts";
import { forEachLine } from "./lines.ts";
import { RestartPolicy } from "./restart-policy.ts";
import { WorkerRequests } from "./worker-requests.ts";
import { WorkerCrashedError, WorkerFailedError, WorkerRequestError, WorkerUnavailableError } from "./worker-errors.ts";
import { workerLifecycle, type WorkerState } from "./worker-lifecycle.ts";

export { WorkerCrashedError, WorkerFailedError, WorkerRequestError, WorkerUnavailableError };
export type { WorkerState };

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
  /** Restarts allowed within restartWindowMs; one more crash marks the worker failed. */
  maxRestarts?: number;
  restartWindowMs?: number;
  /**
   * A worker that must never be restarted (one rank of a distributed model: a new process cannot
   * rejoin its group): its first crash fails it with `lost(why)`; its announced end (`ended`) with `ended(message)`.
   */
  once?: { lost: (why: string) => Error; ended: (message: string) => Error };
}

/** Lines of the worker's stderr kept for error messages. */
const STDERR_TAIL_LINES = 12;

export class WorkerSupervisor {
  private readonly lifecycle: StateMachine<WorkerState>;
  private proc: Subprocess<"pipe", "pipe", "pipe"> | undefined;
  private readonly requests: WorkerRequests;
  private starting: Promise<void> | undefined;
  private lastMessageAt = 0;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private readonly restarts: RestartPolicy;
  private lastCrash: string | undefined;
  private failure: Error | undefined;
  private readonly failedListeners: ((err: Error) => void)[] = [];
  private stderrTail: string[] = [];
  /** What the worker said when it announced its own end (see SupervisorOptions.once). */
  private endedWith: string | undefined;
  /** Resolves once the current process's stderr is read to the end. */
  private stderrDone: Promise<void> = Promise.resolve();
  /** Set by stop(): the worker is never started again. */
  private closed = false;
  hello: Hello | undefined;
  loaded: Loaded | undefined;
  private readonly hangTimeoutMs: number;

  constructor(private readonly opts: SupervisorOptions) {
    this.hangTimeoutMs = opts.hangTimeoutMs ?? 30_000;
    this.restarts = new RestartPolicy({
      backoffMs: opts.backoffMs ?? 500,
      maxBackoffMs: opts.maxBackoffMs ?? 30_000,
      maxRestarts: opts.maxRestarts ?? 5,
      windowMs: opts.restartWindowMs ?? 120_000,
    });
    this.requests = new WorkerRequests({
      write: (msg) => this.write(msg),
      misbehaved: (why) => { if (this.proc) this.kill(this.proc, why); },
      generating: (change, running) => {
        if (change > 0 && this.state === "ready") this.transition("busy");
        else if (change < 0 && running === 0 && this.state === "busy") this.transition("ready");
      },
    });
    this.lifecycle = workerLifecycle(opts.label, {
      onChange: ({ from, to, reason }) => log.debug("mlx worker state", { model: opts.label, from, to, reason }),
    });
  }

  get state(): WorkerState {
    return this.lifecycle.state;
  }

  /** Called once if the worker is given up on (too many crashes), with the error requests get from then on. */
  onFailed(listener: (err: Error) => void): void {
    this.failedListeners.push(listener);
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Why the worker last crashed, for status output. */
  get crashReason(): string | undefined {
    return this.lastCrash;
  }

  private transition(to: WorkerState, reason?: string): void {
    if (this.lifecycle.state !== to) this.lifecycle.transition(to, reason);
  }

  /** Delay before the next start is allowed; 0 when not after a crash. */
  backoffRemaining(): number {
    return this.state === "crashed" ? this.restarts.delay() : 0;
  }

  /**
   * Starts the worker if it is not running (after the back-off when it crashed); resolves once the
   * model is loaded. A restart that fails is a 503 with Retry-After; a failed worker stays failed.
   */
  async ensureRunning(): Promise<void> {
    if (this.lifecycle.is("ready", "busy")) return;
    if (this.failure) throw this.failure;
    if (this.closed || this.state === "stopping") throw new EngineError(`the MLX worker for ${this.opts.label} is shutting down`, "worker_stopping");
    this.starting ??= (async () => {
      const restart = this.state === "crashed";
      const wait = this.backoffRemaining();
      if (wait > 0) {
        log.info("restarting mlx worker after back-off", { model: this.opts.label, ms: wait, crashes: this.restarts.crashesInARow });
        await Bun.sleep(wait);
      }
      if (this.closed) throw new EngineError(`the MLX worker for ${this.opts.label} is shutting down`, "worker_stopping");
      try {
        await this.spawn();
      } catch (err) {
        if (this.failure) throw this.failure;
        if (!restart) throw err;
        const retryAfter = Math.max(1, Math.ceil(this.backoffRemaining() / 1000));
        throw new WorkerUnavailableError(
          `the MLX worker for ${this.opts.label} crashed and could not be restarted (it ${this.lastCrash}); retry in ${retryAfter} s`, retryAfter);
      }
    })().finally(() => { this.starting = undefined; });
    return this.starting;
  }

  /**
   * Runs `attempt` on the running worker. When the worker crashes under it and `retryable()` says
   * nothing of it reached the client yet, the worker is started again and the attempt runs once
   * more: a crash costs the requests that were mid-stream, not the ones still waiting for output.
   */
  async serve<T>(attempt: () => Promise<T>, retryable: () => boolean = () => true): Promise<T> {
    await this.ensureRunning();
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof WorkerCrashedError)) throw err;
      // The crash that used up the restarts: the request learns why the model is given up on.
      if (this.failure) throw this.failure;
      if (!retryable() || this.closed) throw err;
      log.info("serving a request again on a restarted mlx worker", { model: this.opts.label, crash: this.lastCrash });
      await this.ensureRunning();
      try {
        return await attempt();
      } catch (again) {
        throw again instanceof WorkerCrashedError && this.failure ? this.failure : again;
      }
    }
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
    this.stderrTail = [];
    void this.readStdout(proc);
    this.stderrDone = this.readStderr(proc);
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
    try {
      await forEachLine(proc.stdout, MAX_LINE_BYTES, (line, complete) => {
        if (!complete) {
          // The last piece at exit is garbage too, but the exit already says what happened.
          if (line.length > MAX_LINE_BYTES) this.kill(proc, `sent a line longer than ${MAX_LINE_BYTES} bytes`);
          return false;
        }
        if (line.trim()) this.onLine(proc, line);
        return this.proc === proc;
      });
    } catch (err) {
      if (this.proc === proc) log.warn("mlx worker stdout failed", { model: this.opts.label, error: errorMessage(err) });
    }
  }

  private async readStderr(proc: Subprocess<"pipe", "pipe", "pipe">): Promise<void> {
    try {
      // A line that never ends is logged in pieces rather than kept in memory.
      await forEachLine(proc.stderr, 16_384, (line) => {
        if (!line.trim()) return true;
        log.info(`mlx worker: ${line}`, { model: this.opts.label, pid: proc.pid });
        if (this.proc !== proc && this.proc !== undefined) return true;
        this.stderrTail.push(line.length > 500 ? line.slice(0, 500) + "…" : line);
        if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
        return true;
      });
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
      case "ended":
        this.endedWith = msg.message;
        return;
      default: {
        if (this.helloWaiter) { this.kill(proc, `sent ${msg.type} before hello`); return; }
        // Replies to a request LMX already gave up on (a cancel racing its end) are expected.
        if (!this.requests.deliver(msg)) log.debug("mlx worker message for a finished request", { model: this.opts.label, id: msg.id, type: msg.type });
      }
    }
  }

  private checkAlive(proc: Subprocess<"pipe", "pipe", "pipe">): void {
    if (this.proc !== proc) return;
    const silent = Date.now() - this.lastMessageAt;
    if (silent > this.hangTimeoutMs) this.kill(proc, `stopped responding (no heartbeat for ${Math.round(silent / 1000)} s)`);
  }

  private async onExit(proc: Subprocess<"pipe", "pipe", "pipe">, code: number | null): Promise<void> {
    if (this.proc !== proc) return;
    const how = proc.signalCode ? `was killed by ${proc.signalCode}` : `exited with code ${code}`;
    // Its last words (a traceback) belong in the crash report; the pipe drains right after the exit.
    if (this.state !== "stopping") await Promise.race([this.stderrDone, Bun.sleep(250)]);
    if (this.proc !== proc) return;
    if (this.state === "stopping") {
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

  /** Ends the worker at once: its requests fail with `why` (a node of its distributed group is gone). */
  abandon(why: string): void {
    if (this.proc) this.kill(this.proc, why);
  }

  private crash(why: string): void {
    if (this.opts.once && this.state !== "stopping") {
      this.failOnce(this.endedWith !== undefined ? this.opts.once.ended(this.endedWith) : this.opts.once.lost(why), why);
      return;
    }
    this.lastCrash = why;
    const tooMany = this.restarts.crashed();
    log.error("mlx worker crashed", { model: this.opts.label, pid: this.proc?.pid, reason: why, crashes: this.restarts.crashesInARow });
    const err = new WorkerCrashedError(`the MLX worker for ${this.opts.label} ${why}; requests it was streaming failed, and it is restarted`);
    this.cleanup(err);
    if (this.state === "stopping") { this.transition("stopped", why); return; }
    this.transition("crashed", why);
    if (tooMany) this.fail();
  }

  /** The end of a worker that is never restarted: no back-off, no crash count; requests get `err`. */
  private failOnce(err: Error, why: string): void {
    this.lastCrash = why;
    log.error("mlx worker ended; it is not restarted", { model: this.opts.label, pid: this.proc?.pid, reason: why });
    this.failure = err;
    this.cleanup(err);
    this.transition("crashed", why);
    this.transition("failed", why);
    for (const l of this.failedListeners) l(err);
  }

  private fail(): void {
    const window = Math.round(this.restarts.limits.windowMs / 1000);
    const stderr = this.stderrTail.length ? `; its last stderr lines:\n${this.stderrTail.join("\n")}` : "; it wrote nothing to stderr";
    this.failure = new WorkerFailedError(
      `the MLX worker for ${this.opts.label} crashed ${this.restarts.crashesInWindow} times within ${window} s and is not restarted again ` +
      `(last: ${this.lastCrash})${stderr}`);
    this.transition("failed", this.lastCrash);
    log.error("mlx worker failed; giving up on it", { model: this.opts.label, crashes: this.restarts.crashesInWindow, stderr: this.stderrTail.join(" | ") });
    for (const l of this.failedListeners) l(this.failure);
  }

  private cleanup(err: Error): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.proc = undefined;
    this.loaded = undefined;
    this.helloWaiter?.reject(err);
    this.helloWaiter = undefined;
    this.requests.failAll(err);
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
    return this.requests.newId(prefix);
  }

  /** One request whose answer is a single message of type `expect` (or an error). */
  call<T extends WorkerReply["type"]>(msg: Extract<ToWorker, { id: string }> | Omit<Extract<ToWorker, { type: "load" }>, "id">, expect: T): Promise<Extract<WorkerReply, { type: T }>> {
    return this.requests.call(msg, expect);
  }

  /** A generation (see WorkerRequests.generate); the worker is busy while any runs. */
  generate(msg: Extract<ToWorker, { type: "generate" }>, onEvent: (e: WorkerReply) => void, signal?: AbortSignal, stop?: AbortSignal): Promise<Extract<WorkerReply, { type: "done" }>> {
    return this.requests.generate(msg, onEvent, signal, stop);
  }

  /** Marks the worker healthy after a request succeeded, so the next crash starts the back-off afresh. */
  succeeded(): void {
    this.restarts.succeeded();
  }

  /** Asks the worker to exit, then kills it if it does not within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.closed = true;
    if (this.starting) await this.starting.catch(() => undefined);
    if (this.state === "stopped") return;
    if (this.lifecycle.is("crashed", "failed")) { this.transition("stopped"); return; }
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
