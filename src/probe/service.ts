import { and, desc, eq } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { arch, platform, totalmem } from "node:os";
import type { ModelDescriptor, ModelInfo } from "../engines/types.ts";
import { errorMessage, InvalidRequestError, LmxError, NotFoundError } from "../errors.ts";
import type { EventBus } from "../events/bus.ts";
import { log } from "../log.ts";
import type { ModelRegistry } from "../models/registry.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import type { Db } from "../store/db.ts";
import { contextProbes, type ProbeStep } from "../store/schema.ts";
import { cpuInfo } from "../util/cpu.ts";
import { formatBytes } from "../util/size.ts";
import { COPY_MARGIN_THRESHOLD, copyCheck, needleCheck } from "./checks.ts";
import { sampledDigest } from "./digest.ts";
import { searchContextLength, type StepOutcome } from "./search.ts";

export interface ProbeOptions {
  max?: number;
  min?: number;
  budgetMinutes?: number;
}

export interface ProbeJob {
  id: string;
  model: string;
  state: "running" | "done" | "failed";
  steps: ProbeStep[];
  result?: StoredProbe;
  error?: string;
  startedAt: number;
}

export type StoredProbe = typeof contextProbes.$inferSelect & { stale: boolean };

/** The KV cache type LMX allocates (llama.cpp's default); results are kept per type. */
const KV_CACHE_TYPE = "f16";
const DEFAULT_MIN = 128;
const DEFAULT_BUDGET_MINUTES = 30;
/** Depths at which the information is placed: the far end, where contexts fail first, and the middle. */
const DEPTHS = [0.05, 0.5];

function machineKey(): string {
  const cpu = cpuInfo();
  const gpu = platform() === "darwin" && arch() === "arm64" ? "metal" : "cpu";
  return `${platform()}-${arch()} ${Math.round(totalmem() / 2 ** 30)}GiB ${cpu.model.trim()} ${gpu}`;
}

/**
 * Measures the context length a model really handles (see docs/context-probe.md), stores it in
 * SQLite keyed by model digest, engine version, KV cache type and machine, and serves it to the
 * scheduler as the default context for loads that name none.
 */
export class ProbeService {
  private readonly jobs = new Map<string, ProbeJob>();
  private readonly running = new Set<string>();
  private readonly engineVersions = new Map<string, string>();
  private readonly finished = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly scheduler: Scheduler,
    private readonly registry: ModelRegistry,
    private readonly events: EventBus,
  ) {}

  private digest(d: ModelDescriptor): string {
    const r = this.registry.get(d.id);
    const sha = r?.files[0]?.sha256;
    return r && r.path === d.path && sha ? `sha256:${sha}` : sampledDigest(d.path);
  }

  async engineVersion(d: ModelDescriptor): Promise<string> {
    let v = this.engineVersions.get(d.format);
    if (!v) {
      v = await this.scheduler.engineFor(d).version();
      this.engineVersions.set(d.format, v);
    }
    return v;
  }

  /** The newest stored result for this model on this machine, marked stale if another engine measured it. */
  async latest(d: ModelDescriptor): Promise<StoredProbe | undefined> {
    let digest: string;
    try {
      digest = this.digest(d);
    } catch {
      return undefined;
    }
    const row = this.db.select().from(contextProbes)
      .where(and(eq(contextProbes.modelDigest, digest), eq(contextProbes.kvCacheType, KV_CACHE_TYPE), eq(contextProbes.machine, machineKey())))
      .orderBy(desc(contextProbes.testedAt), desc(contextProbes.id)).limit(1).get();
    if (!row) return undefined;
    return { ...row, stale: row.engineVersion !== (await this.engineVersion(d)) };
  }

  /** Tested context to load with when nothing explicit is asked for (fresh results only). */
  async testedDefault(d: ModelDescriptor): Promise<number | undefined> {
    const r = await this.latest(d);
    return r && !r.stale && r.testedContext > 0 ? r.testedContext : undefined;
  }

  get(id: string): ProbeJob {
    const job = this.jobs.get(id);
    if (!job) throw new NotFoundError(`no probe job '${id}'`);
    return job;
  }

  list(): ProbeJob[] {
    return [...this.jobs.values()].sort((a, b) => b.startedAt - a.startedAt);
  }

  start(modelId: string, opts: ProbeOptions = {}): ProbeJob {
    if (this.running.has(modelId)) throw new InvalidRequestError(`a probe of '${modelId}' is already running`, "model", "probe_running");
    const job: ProbeJob = { id: "probe_" + randomBytes(6).toString("hex"), model: modelId, state: "running", steps: [], startedAt: Date.now() };
    this.jobs.set(job.id, job);
    this.running.add(modelId);
    this.events.publish({ type: "probe.started", id: job.id, model: modelId });
    this.finished.set(job.id, this.run(job, opts).finally(() => {
      this.running.delete(modelId);
      this.finished.delete(job.id);
    }));
    return job;
  }

  /** Re-probes, one at a time, every model whose result another engine version measured. */
  async reprobeStale(): Promise<void> {
    const stale = await this.modelsWhere((r) => r?.stale === true);
    if (stale.length) log.info("re-probing models measured by another engine", { models: stale });
    for (const id of stale) {
      if (this.stopped) return;
      if (this.running.has(id)) continue;
      const job = this.start(id);
      await this.finished.get(job.id);
    }
  }

  /** No new probes start after this (the server is shutting down). */
  stop(): void {
    this.stopped = true;
  }

  private async run(job: ProbeJob, opts: ProbeOptions): Promise<void> {
    const t0 = Date.now();
    try {
      const status = await this.scheduler.get(job.model);
      const d = status.descriptor;
      const info = status.info ?? (await this.scheduler.inspect(d.id));
      const declared = info.declaredContextLength;
      const max = Math.max(1, opts.max ?? declared ?? 8192);
      const min = Math.min(opts.min ?? DEFAULT_MIN, max);
      const memory = new Map<number, number>();
      // A re-check of a length must draw new passages, or it would repeat the first outcome exactly.
      const attempts = new Map<number, number>();
      const result = await searchContextLength({
        min,
        max,
        granularity: 8,
        resolution: 0.05,
        deadline: t0 + (opts.budgetMinutes ?? DEFAULT_BUDGET_MINUTES) * 60_000,
        check: (n) => {
          const attempt = attempts.get(n) ?? 0;
          attempts.set(n, attempt + 1);
          return this.check(d, info, n, attempt, memory);
        },
        onStep: (s) => {
          const step: ProbeStep = { ...s };
          job.steps.push(step);
          log.info("probe step", { model: d.id, ctx: s.contextLength, loads: s.loads, works: s.works, detail: s.detail });
          this.events.publish({ type: "probe.step", id: job.id, model: d.id, ...step });
        },
      });
      await this.scheduler.unload(d.id);
      const row = {
        modelId: d.id, modelDigest: this.digest(d), engineVersion: await this.engineVersion(d), kvCacheType: KV_CACHE_TYPE, machine: machineKey(),
        declaredContext: declared ?? null, testedContext: result.testedContextLength, memoryBytes: memory.get(result.testedContextLength) ?? null,
        decidedBy: result.decidedBy, reason: result.reason + (result.timedOut ? " (time budget reached)" : ""), steps: job.steps,
        durationMs: Date.now() - t0, testedAt: Date.now(),
      };
      const inserted = this.db.insert(contextProbes).values(row).returning().get();
      job.result = { ...inserted, stale: false };
      job.state = "done";
      this.events.publish({ type: "probe.done", id: job.id, model: d.id, testedContextLength: row.testedContext, reason: row.reason });
      log.info("probe done", { model: d.id, tested: row.testedContext, declared, reason: row.reason, ms: row.durationMs });
    } catch (err) {
      job.state = "failed";
      job.error = errorMessage(err);
      this.events.publish({ type: "probe.failed", id: job.id, model: job.model, error: job.error });
      log.warn("probe failed", { model: job.model, error: job.error });
    }
  }

  /** One step: does length n load within the budget, and does the model use its far end? */
  private async check(d: ModelDescriptor, info: ModelInfo, n: number, attempt: number, memory: Map<number, number>): Promise<StepOutcome> {
    try {
      const loaded = await this.scheduler.loadModel(d.id, { contextLength: n, parallel: 1, ttl: 0 });
      if (loaded.memory) memory.set(n, loaded.memory.modelBytes + loaded.memory.contextBytes);
    } catch (err) {
      if (err instanceof LmxError && (err.code === "insufficient_memory" || err.code === "model_load_failed")) {
        return { loads: false, works: false, decidedBy: "load", detail: errorMessage(err) };
      }
      throw err;
    }
    const lease = await this.scheduler.acquire(d.id);
    try {
      const copies = [];
      for (const [i, depth] of DEPTHS.entries()) copies.push(await copyCheck(lease.model, n, depth, 1000 + i * 7919 + attempt * 15_485_863 + n, lease.signal));
      const copyOk = copies.every((c) => c.margin >= COPY_MARGIN_THRESHOLD);
      const copyText = `copy margin ${copies.map((c) => `${c.margin.toFixed(2)}@${Math.round(c.depth * 100)}%`).join(" ")} nats/token (needs ≥ ${COPY_MARGIN_THRESHOLD})`;
      let needleText = "needle: n/a (no chat template)";
      let needleOk = false;
      if (info.hasChatTemplate && !info.isEmbeddingModel) {
        const needles = [];
        for (const [i, depth] of DEPTHS.entries()) {
          try {
            needles.push(await needleCheck(lease.model, n, depth, 2000 + i * 104729 + attempt * 15_485_863 + n, lease.signal));
          } catch (err) {
            needles.push({ depth, found: false, answer: `(${errorMessage(err)})` });
          }
        }
        needleOk = needles.every((x) => x.found);
        needleText = `needle ${needles.map((x) => `${x.found ? "found" : "missed"}@${Math.round(x.depth * 100)}%`).join(" ")}`;
      }
      const mem = memory.get(n);
      return {
        loads: true,
        works: copyOk || needleOk,
        decidedBy: needleOk ? "needle" : "copy",
        detail: `${copyText}; ${needleText}${mem ? `; ${formatBytes(mem)}` : ""}`,
      };
    } finally {
      lease.release();
    }
  }

  /** Models with no fresh result, for `lmx probe --all`. */
  untested(): Promise<string[]> {
    return this.modelsWhere((r) => !r || r.stale);
  }

  private async modelsWhere(pick: (latest: StoredProbe | undefined) => boolean): Promise<string[]> {
    const out: string[] = [];
    for (const s of await this.scheduler.list()) {
      if (!s.info || s.info.isEmbeddingModel) continue;
      if (pick(await this.latest(s.descriptor))) out.push(s.descriptor.id);
    }
    return out;
  }
}
