// Engine builds as jobs of the admin API: one compiles at a time (a build uses every core), the
// rest wait in a short queue; progress goes to the event bus. Jobs live in memory only: a build
// cannot resume after a restart (its temp folder is deleted), so a restarted server has none.

import { randomBytes } from "node:crypto";
import { errorMessage, InvalidRequestError, NotFoundError, OverloadedError } from "../../errors.ts";
import type { EventBus } from "../../events/bus.ts";
import { log } from "../../log.ts";
import type { BuiltEngine } from "./builder.ts";
import { EngineBuildCancelled } from "./errors.ts";
import type { PhaseProgress } from "./progress.ts";
import type { KnownModelFile, ResolvedBuild, RunBuildOptions } from "./request.ts";

export type BuildJobState = "queued" | "running" | "done" | "failed" | "cancelled";

export interface EngineBuildJob {
  id: string;
  ref: string;
  repo: string;
  native: boolean;
  state: BuildJobState;
  phase: PhaseProgress["phase"] | null;
  percent: number | null;
  /** The registered engine version once done. */
  version: string | null;
  commit: string | null;
  logPath: string | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
}

export type BuildRunner = (build: ResolvedBuild, options: RunBuildOptions) => Promise<BuiltEngine>;

/** What the admin API needs: the jobs, the default repository (llamaRepo) and the models to verify with. */
export interface EngineBuilds {
  jobs: EngineBuildJobs;
  llamaRepo: string;
  knownModels: () => KnownModelFile[];
}

const MAX_QUEUED = 8;
const MAX_KEPT = 50;
const TERMINAL: BuildJobState[] = ["done", "failed", "cancelled"];

export class EngineBuildJobs {
  private readonly jobs = new Map<string, { job: EngineBuildJob; build: ResolvedBuild; abort: AbortController }>();
  private running: string | undefined;
  private stopped = false;

  constructor(private readonly events: EventBus, private readonly runner: BuildRunner) {}

  create(build: ResolvedBuild): EngineBuildJob {
    if (this.list().filter((j) => j.state === "queued").length >= MAX_QUEUED) {
      throw new OverloadedError(`${MAX_QUEUED} engine builds are already waiting; cancel one or try later`);
    }
    const now = Date.now();
    const job: EngineBuildJob = {
      id: "eb_" + randomBytes(6).toString("hex"), ref: build.ref.ref, repo: build.repo, native: build.cpu === "native", state: "queued",
      phase: null, percent: null, version: null, commit: null, logPath: null, error: null, createdAt: now, updatedAt: now,
    };
    this.jobs.set(job.id, { job, build, abort: new AbortController() });
    this.prune();
    this.events.publish({ type: "engine_build.queued", id: job.id, ref: job.ref });
    queueMicrotask(() => this.kick());
    return { ...job };
  }

  get(id: string): EngineBuildJob {
    const entry = this.jobs.get(id);
    if (entry === undefined) throw new NotFoundError(`no engine build '${id}'`);
    return { ...entry.job };
  }

  /** Newest first: the map keeps creation order, which two jobs made in the same millisecond would tie on. */
  list(): EngineBuildJob[] {
    return [...this.jobs.values()].map((e) => ({ ...e.job })).reverse();
  }

  cancel(id: string): EngineBuildJob {
    const entry = this.jobs.get(id);
    if (entry === undefined) throw new NotFoundError(`no engine build '${id}'`);
    if (TERMINAL.includes(entry.job.state)) throw new InvalidRequestError(`engine build ${id} is already ${entry.job.state}`, "id");
    entry.abort.abort();
    if (entry.job.state === "queued") this.settle(entry.job, { state: "cancelled" });
    return { ...entry.job };
  }

  /** Cancels everything (server shutdown): running builds remove their temp folders. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const entry of this.jobs.values()) if (!TERMINAL.includes(entry.job.state)) entry.abort.abort();
    const deadline = Date.now() + 10_000;
    while (this.running !== undefined && Date.now() < deadline) await Bun.sleep(20);
  }

  private kick(): void {
    if (this.stopped || this.running !== undefined) return;
    const next = [...this.jobs.values()].find((e) => e.job.state === "queued");
    if (next !== undefined) void this.start(next);
  }

  private async start(entry: { job: EngineBuildJob; build: ResolvedBuild; abort: AbortController }): Promise<void> {
    const { job } = entry;
    this.running = job.id;
    this.update(job, { state: "running" });
    this.events.publish({ type: "engine_build.started", id: job.id, ref: job.ref });
    log.info("engine build started", { id: job.id, ref: job.ref, repo: job.repo });
    try {
      const built = await this.runner(entry.build, {
        signal: entry.abort.signal,
        onLog: (path) => this.update(job, { logPath: path }),
        onProgress: (p) => {
          this.update(job, { phase: p.phase, percent: p.percent });
          this.events.publish({ type: "engine_build.progress", id: job.id, ref: job.ref, phase: p.phase, percent: p.percent });
        },
      });
      this.settle(job, { state: "done", version: built.version, commit: built.info.commit, logPath: built.logPath });
      log.info("engine build done", { id: job.id, version: built.version });
    } catch (err) {
      if (err instanceof EngineBuildCancelled || entry.abort.signal.aborted) this.settle(job, { state: "cancelled" });
      else {
        log.warn("engine build failed", { id: job.id, error: errorMessage(err) });
        this.settle(job, { state: "failed", error: errorMessage(err) });
      }
    } finally {
      this.running = undefined;
      this.kick();
    }
  }

  private update(job: EngineBuildJob, set: Partial<EngineBuildJob>): void {
    Object.assign(job, set, { updatedAt: Date.now() });
  }

  private settle(job: EngineBuildJob, set: Partial<EngineBuildJob> & { state: "done" | "failed" | "cancelled" }): void {
    this.update(job, set);
    if (set.state === "done") this.events.publish({ type: "engine_build.done", id: job.id, ref: job.ref, version: job.version ?? "", commit: job.commit ?? "" });
    else if (set.state === "failed") this.events.publish({ type: "engine_build.failed", id: job.id, ref: job.ref, error: job.error ?? "failed" });
    else this.events.publish({ type: "engine_build.cancelled", id: job.id, ref: job.ref });
  }

  /** Keeps the newest finished jobs; running and queued ones always stay. */
  private prune(): void {
    const finished = this.list().filter((j) => TERMINAL.includes(j.state));
    for (const job of finished.slice(Math.max(0, MAX_KEPT - (this.jobs.size - finished.length)))) this.jobs.delete(job.id);
  }
}
