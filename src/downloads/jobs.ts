import { desc, eq, sql } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { errorMessage, InvalidRequestError, NotFoundError } from "../errors.ts";
import type { EventBus } from "../events/bus.ts";
import { log } from "../log.ts";
import type { Db } from "../store/db.ts";
import { downloads, type DownloadState } from "../store/schema.ts";

export type DownloadJob = typeof downloads.$inferSelect;

/** What a job reports while it runs. */
export interface JobProgress {
  file: string | null;
  bytesDone: number;
  bytesTotal: number;
  bytesPerSecond: number;
  etaSeconds: number | null;
  /** While a stalled or failed request waits for its retry: "no data for 20 s, retrying 2/5". */
  retrying: string | null;
}

/** The part that talks to the hub; jobs only schedule, persist and report. */
export interface JobExecutor {
  /** Validates a spec before a job is created, so bad names never become jobs. */
  validate(spec: string): { repo: string };
  run(job: DownloadJob, ctx: {
    signal: AbortSignal;
    /** The files chosen and why (e.g. "Q4_K_M not in repo, using Q5_K_M"). */
    onPlan: (files: { path: string; size: number }[], note: string) => void;
    onProgress: (p: JobProgress) => void;
    /** Registers the finished model in the same transaction that marks the job done. */
    finish: (register: (tx: Db) => string) => void;
  }): Promise<void>;
}

const TERMINAL: DownloadState[] = ["done", "failed", "cancelled"];

/**
 * Download jobs that survive restarts: every state change is a committed row, a job that was
 * running when the process died goes back to the queue at start-up and resumes from its partial
 * file, and a model becomes visible only in the same transaction that marks its job done.
 */
export class DownloadJobs {
  private readonly running = new Map<string, AbortController>();
  private readonly cancelled = new Set<string>();
  private stopped = false;
  private lastWrite = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly events: EventBus,
    private readonly executor: JobExecutor,
    private readonly concurrency = 1,
  ) {
    // Jobs interrupted by a crash or a stop resume.
    this.db.update(downloads).set({ state: "queued", updatedAt: Date.now() }).where(eq(downloads.state, "running")).run();
    queueMicrotask(() => this.kick());
  }

  create(spec: string, revision = "main"): DownloadJob {
    const { repo } = this.executor.validate(spec);
    const now = Date.now();
    const job = { id: "dl_" + randomBytes(6).toString("hex"), spec, repo, revision, state: "queued" as const, createdAt: now, updatedAt: now };
    this.db.insert(downloads).values(job).run();
    this.events.publish({ type: "download.queued", id: job.id, spec });
    this.kick();
    return this.get(job.id);
  }

  /** Downloads transferring now (queued ones not counted). */
  get active(): number {
    return this.running.size;
  }

  get(id: string): DownloadJob {
    const job = this.db.select().from(downloads).where(eq(downloads.id, id)).get();
    if (!job) throw new NotFoundError(`no download '${id}'`);
    return job;
  }

  list(limit = 100): DownloadJob[] {
    return this.db.select().from(downloads).orderBy(desc(downloads.createdAt), desc(sql`rowid`)).limit(limit).all();
  }

  cancel(id: string): DownloadJob {
    const job = this.get(id);
    if (TERMINAL.includes(job.state)) throw new InvalidRequestError(`download ${id} is already ${job.state}`, "id");
    this.cancelled.add(id);
    const running = this.running.get(id);
    if (running) running.abort();
    else this.settle(id, "cancelled");
    return this.get(id);
  }

  private update(id: string, set: Partial<typeof downloads.$inferInsert>): void {
    this.db.update(downloads).set({ ...set, updatedAt: Date.now() }).where(eq(downloads.id, id)).run();
  }

  private settle(id: string, state: "failed" | "cancelled", error?: string): void {
    this.update(id, { state, error: error ?? null });
    const job = this.get(id);
    if (state === "failed") this.events.publish({ type: "download.failed", id, spec: job.spec, error: error ?? "failed" });
    else this.events.publish({ type: "download.cancelled", id, spec: job.spec });
  }

  private kick(): void {
    if (this.stopped) return;
    while (this.running.size < this.concurrency) {
      const busy = [...this.running.keys()];
      const next = this.db.select().from(downloads).where(eq(downloads.state, "queued")).orderBy(downloads.createdAt, sql`rowid`).all()
        .find((j) => !busy.includes(j.id));
      if (!next) return;
      void this.start(next);
    }
  }

  private async start(job: DownloadJob): Promise<void> {
    const ac = new AbortController();
    this.running.set(job.id, ac);
    this.update(job.id, { state: "running", error: null });
    this.events.publish({ type: "download.started", id: job.id, spec: job.spec });
    log.info("download started", { id: job.id, spec: job.spec });
    let finished = false;
    try {
      await this.executor.run(job, {
        signal: ac.signal,
        onPlan: (files, note) => {
          this.update(job.id, { files, note, bytesTotal: files.reduce((a, f) => a + f.size, 0) });
          log.info("download plan", { id: job.id, files: files.length, note });
        },
        onProgress: (p) => {
          const now = Date.now();
          // The row is for restarts and listings; once a second is plenty. Events carry every update.
          if (now - (this.lastWrite.get(job.id) ?? 0) >= 1000) {
            this.lastWrite.set(job.id, now);
            this.update(job.id, { bytesDone: p.bytesDone, bytesTotal: p.bytesTotal });
          }
          this.events.publish({
            type: "download.progress", id: job.id, spec: job.spec, file: p.file ?? "", bytesDone: p.bytesDone, bytesTotal: p.bytesTotal,
            rate: Math.round(p.bytesPerSecond), etaSeconds: p.etaSeconds === null ? null : Math.round(p.etaSeconds), retrying: p.retrying,
          });
          if (p.retrying) log.warn("download retrying", { id: job.id, file: p.file, retrying: p.retrying });
        },
        finish: (register) => {
          this.db.transaction((tx) => {
            const modelId = register(tx as unknown as Db);
            tx.update(downloads).set({ state: "done", modelId, updatedAt: Date.now() }).where(eq(downloads.id, job.id)).run();
          });
          finished = true;
        },
      });
      if (!finished) throw new Error("download ended without registering its model");
      const done = this.get(job.id);
      this.update(job.id, { bytesDone: done.bytesTotal });
      this.events.publish({ type: "download.done", id: job.id, spec: job.spec, model: done.modelId ?? undefined });
      log.info("download done", { id: job.id, model: done.modelId });
    } catch (err) {
      if (this.cancelled.has(job.id)) this.settle(job.id, "cancelled");
      else if (ac.signal.aborted && this.stopped) this.update(job.id, { state: "queued" });
      else {
        log.warn("download failed", { id: job.id, error: errorMessage(err) });
        this.settle(job.id, "failed", errorMessage(err));
      }
    } finally {
      this.running.delete(job.id);
      this.cancelled.delete(job.id);
      this.lastWrite.delete(job.id);
      this.kick();
    }
  }

  /** Stops running jobs; they stay queued and resume at the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const ac of this.running.values()) ac.abort();
    // Jobs put themselves back in the queue; one that does not stop in time is re-queued at the next start.
    const deadline = Date.now() + 5000;
    while (this.running.size > 0 && Date.now() < deadline) await Bun.sleep(20);
  }
}
