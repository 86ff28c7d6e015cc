// The worker threads chat templates render in (template-worker.ts): one warm worker per sandbox,
// terminated and replaced when a render overruns its time or memory limit. See template-guard.ts.

import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import { log } from "../../log.ts";
import type { RenderJob, RenderLimits, RenderOutcome } from "./template-worker.ts";

export interface SandboxLimits {
  /** Wall-clock time of one render; the worker is terminated after it. */
  timeMs: number;
  /** Growth of this process's resident memory during one render before the worker is terminated. */
  maxMemoryGrowthBytes: number;
}

const POLL_MS = 10;

/**
 * In the compiled executable the worker is an extra entrypoint (scripts/build.ts), addressed by its
 * path relative to the entrypoints' common folder, which the build defines here.
 */
declare const LMX_TEMPLATE_WORKER: string | undefined;
const LMX_TEMPLATE_WORKER_PATH = typeof LMX_TEMPLATE_WORKER === "string" ? LMX_TEMPLATE_WORKER : undefined;

/** One warm worker thread; a render that overruns terminates it and the next render starts another. */
export class RenderSandbox {
  private worker: Worker | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private lastError: string | undefined;

  constructor(private readonly limits: SandboxLimits & RenderLimits) {}

  private current(): Worker {
    if (this.worker === undefined) {
      const worker = new Worker(LMX_TEMPLATE_WORKER_PATH ?? new URL("./template-worker.ts", import.meta.url));
      // Never what keeps the process alive: shutdown must not wait for an idle renderer.
      worker.unref();
      worker.on("error", (err) => {
        this.lastError = String(err);
        log.error("chat template worker failed", { error: this.lastError });
      });
      worker.on("exit", () => { if (this.worker === worker) this.worker = undefined; });
      this.worker = worker;
    }
    return this.worker;
  }

  private kill(worker: Worker): void {
    if (this.worker === worker) this.worker = undefined;
    void worker.terminate();
  }

  private post(worker: Worker, template: string, itemsJson: string): { port: MessagePort; flag: Int32Array } {
    const { port1, port2 } = new MessageChannel();
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const { timeMs: _t, maxMemoryGrowthBytes: _m, ...caps } = this.limits;
    const job: RenderJob = { port: port2, flag, template, itemsJson, limits: caps };
    worker.postMessage(job, [port2]);
    return { port: port1, flag };
  }

  private overrun(kind: "time" | "memory"): RenderOutcome {
    return kind === "time"
      ? { ok: false, limit: "time", message: `rendering took longer than ${this.limits.timeMs} ms` }
      : { ok: false, limit: "memory", message: `rendering used more than ${Math.round(this.limits.maxMemoryGrowthBytes / 2 ** 20)} MB` };
  }

  /** Renders off the main thread; one job at a time so each gets the whole time limit. */
  render(template: string, itemsJson: string): Promise<RenderOutcome> {
    const run = (): Promise<RenderOutcome> => new Promise((resolve) => {
      const worker = this.current();
      const rssAtStart = process.memoryUsage.rss();
      const { port } = this.post(worker, template, itemsJson);
      const finish = (outcome: RenderOutcome): void => {
        clearTimeout(timer);
        clearInterval(poll);
        worker.off("exit", onExit);
        port.close();
        resolve(outcome);
      };
      const onExit = (): void => finish({ ok: false, broken: true, message: `the chat template renderer stopped: ${this.lastError ?? "no error given"}` });
      const timer = setTimeout(() => { this.kill(worker); finish(this.overrun("time")); }, this.limits.timeMs);
      const poll = setInterval(() => {
        if (process.memoryUsage.rss() - rssAtStart > this.limits.maxMemoryGrowthBytes) {
          this.kill(worker);
          finish(this.overrun("memory"));
        }
      }, POLL_MS);
      worker.once("exit", onExit);
      port.once("message", (outcome: RenderOutcome) => finish(outcome));
    });
    const result = this.queue.then(run, run);
    this.queue = result;
    return result;
  }

  /** Blocks the calling thread on the worker's answer, for at most the time limit. */
  renderSync(template: string, itemsJson: string): RenderOutcome {
    const worker = this.current();
    const rssAtStart = process.memoryUsage.rss();
    const deadline = performance.now() + this.limits.timeMs;
    const { port, flag } = this.post(worker, template, itemsJson);
    try {
      while (Atomics.wait(flag, 0, 0, POLL_MS) === "timed-out") {
        if (performance.now() > deadline) {
          this.kill(worker);
          return this.overrun("time");
        }
        if (process.memoryUsage.rss() - rssAtStart > this.limits.maxMemoryGrowthBytes) {
          this.kill(worker);
          return this.overrun("memory");
        }
      }
      const received = receiveMessageOnPort(port);
      return (received?.message as RenderOutcome | undefined) ?? { ok: false, message: "the template renderer gave no answer" };
    } finally {
      port.close();
    }
  }
}
