import {
  EngineCrashedError, errorMessage, InsufficientMemoryError, InvalidModelFileError, InvalidRequestError, LmxError, ModelEndedError, ModelLoadError, ModelNotFoundError, OverloadedError,
} from "../errors.ts";
import type { LoadSettings, Placement } from "../config/load-settings.ts";
import type { Engine, LoadedModel, ModelDescriptor, ModelFormat, ModelInfo, ResolvedLoadSettings } from "../engines/types.ts";
import { log } from "../log.ts";
import type { ModelCatalog } from "../models/catalog.ts";
import { formatBytes, formatBytesApart } from "../util/size.ts";
import { bounded } from "../util/watch.ts";
import type { Lease, ModelLoad, ModelOccupancy, ModelStatus, SchedulerSeams, SchedulerSettings } from "./types.ts";
import { Entry, totalBytes } from "./entry.ts";
import { checkShardedLoad, resolveLoad } from "./resolve-load.ts";
import { AbortedWhileQueuedError, Slots } from "./slots.ts";
import { sameSpeculative } from "./speculative.ts";
import { occupancyOf, statusOf } from "./status.ts";

export { DEFAULT_CONTEXT } from "./resolve-load.ts";

export type { Lease, ModelLoad, ModelOccupancy, ModelStatus, SchedulerSeams, SchedulerSettings } from "./types.ts";

export class Scheduler {
  private readonly entries = new Map<string, Entry>();
  /** Loads run one at a time so two models cannot both pass the memory check and then overflow together. */
  private loadLock: Promise<unknown> = Promise.resolve();
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  /** Past the grace period: models and engines are being freed. */
  private stopping = false;
  /** Requests between asking for a model and holding one of its slots. */
  private acquiring = 0;
  private readonly now: () => number;

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly engines: Partial<Record<ModelFormat, Engine>>,
    private readonly settings: SchedulerSettings,
    /** Per-model settings from config.json. */
    private readonly configured: Record<string, LoadSettings> = {},
    private readonly seams: SchedulerSeams = {},
  ) {
    this.now = seams.now ?? Date.now;
    this.sweeper = setInterval(() => void this.expireIdle(), 1000);
    this.sweeper.unref?.();
  }

  get memoryBudget(): number {
    return this.settings.memoryBudget;
  }

  private entry(id: string): Entry {
    let e = this.entries.get(id);
    if (!e) {
      e = new Entry(id);
      this.entries.set(id, e);
    }
    return e;
  }

  /** The engine for a model's format, or a clear error when this server has none. */
  engineFor(descriptor: ModelDescriptor): Engine {
    const engine = this.engines[descriptor.format];
    if (!engine) {
      throw new InvalidRequestError(
        `'${descriptor.id}' is a ${descriptor.format.toUpperCase()} model and this server has no ${descriptor.format} engine.`, "model", "engine_unavailable");
    }
    return engine;
  }

  private descriptor(id: string): ModelDescriptor {
    const d = this.catalog.get(id);
    if (!d) throw new ModelNotFoundError(id);
    return d;
  }

  /** The model a generation names: its id, an alias, or a name a route maps to one. */
  private requested(name: string): ModelDescriptor {
    const { descriptor, routedTo } = this.catalog.forRequest(name);
    if (!descriptor) throw new ModelNotFoundError(name, routedTo);
    return descriptor;
  }

  async inspect(id: string): Promise<ModelInfo> {
    const d = this.descriptor(id);
    return this.engineFor(d).inspect(d);
  }

  /**
   * The settings a model loads with, most specific first: this load request, the model's saved
   * defaults, config.json, server settings, then the model's own metadata.
   */
  async resolveLoad(descriptor: ModelDescriptor, request: LoadSettings = {}, placement?: Placement): Promise<ModelLoad> {
    return resolveLoad({ settings: this.settings, configured: this.configured, seams: this.seams, catalog: this.catalog }, this.engineFor(descriptor), descriptor, request, placement);
  }

  /** Throws the 400 a load of `id` across nodes with these settings would meet, before any node is asked. */
  checkShardedLoad(id: string, request: LoadSettings): void {
    checkShardedLoad({ settings: this.settings, configured: this.configured, seams: this.seams, catalog: this.catalog }, this.descriptor(id), request);
  }

  private sameSettings(a: ResolvedLoadSettings, b: ResolvedLoadSettings): boolean {
    return a.contextLength === b.contextLength && a.parallel === b.parallel && a.threads === b.threads && (a.gpuLayers ?? null) === (b.gpuLayers ?? null)
      && (a.flashAttention ?? "auto") === (b.flashAttention ?? "auto") && sameSpeculative(a.speculative, b.speculative)
      && a.distributed?.group === b.distributed?.group;
  }

  /** Frees memory for `needed` bytes by unloading idle models, least recently used first. */
  private async makeRoom(forId: string, needed: number): Promise<void> {
    const used = () => this.memoryInUse();
    const budget = this.settings.memoryBudget;
    if (used() + needed <= budget) return;
    // A follower rank is never idle in this sense: its group serves requests on another node.
    const idle = [...this.entries.values()].filter((e) => e.loaded && e.id !== forId && !e.busy && !((e.loaded.options.distributed?.rank ?? 0) > 0))
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const victim of idle) {
      if (used() + needed <= budget) break;
      if (victim.busy) continue;
      log.info("evicting idle model to make room", { model: victim.id, for: forId, frees: formatBytes(totalBytes(victim.memory)) });
      await this.unloadEntry(victim, "evict");
    }
    if (used() + needed > budget) {
      const loaded = [...this.entries.values()].filter((e) => e.loaded)
        .map((e) => `${e.id} (${formatBytes(totalBytes(e.memory))}${e.busy ? ", busy" : ""})`);
      throw new InsufficientMemoryError(
        `cannot load ${forId}: needs ${formatBytesApart(needed, budget)}, budget ${formatBytesApart(budget, needed)}, loaded: ${loaded.length ? loaded.join(", ") : "nothing"}. ` +
        "Unload a model, lower context_length or parallel, or raise --memory-budget.");
    }
  }

  private withLoadLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.loadLock.then(fn);
    this.loadLock = run.catch(() => undefined);
    return run;
  }

  private load(e: Entry, descriptor: ModelDescriptor, request?: LoadSettings, placement?: Placement): Promise<LoadedModel> {
    const loading: Promise<LoadedModel> = e.op.then(() => this.withLoadLock(() => this.loadLocked(e, descriptor, request, placement).catch((err: unknown) => {
      // A load the shutdown cut short (its engine freed, its trial process stopped) is the shutdown's 503, not a broken model.
      if (this.closed && !(err instanceof OverloadedError)) throw new OverloadedError(`server is shutting down; loading ${descriptor.id} was abandoned`);
      throw err;
    })));
    e.op = loading.catch(() => undefined);
    return loading;
  }

  private async loadLocked(e: Entry, descriptor: ModelDescriptor, request?: LoadSettings, placement?: Placement): Promise<LoadedModel> {
    if (this.closed) throw new OverloadedError("server is shutting down");
    const options = await this.resolveLoad(descriptor, request, placement);
    if (e.loaded) {
      if ((!request && !placement) || this.sameSettings(e.loaded.options, options)) {
        e.ttlSeconds = options.ttl;
        return e.loaded;
      }
      await this.unloadEntry(e, "request");
    }
    const engine = this.engineFor(descriptor);
    const failed = (err: unknown) => {
      e.lifecycle.transition("failed");
      log.error("model load failed", { model: descriptor.id, error: errorMessage(err) });
      this.seams.events?.publish({ type: "model.load_failed", model: descriptor.id, error: errorMessage(err) });
    };
    let estimate;
    try {
      estimate = await engine.estimateMemory(descriptor, options);
    } catch (err) {
      // The estimate is the first thing to hand the file to the engine (llama.cpp's trial load
      // runs there): a broken file, or an engine that crashes on it, fails the model, not just
      // this request.
      if (err instanceof InvalidModelFileError || err instanceof EngineCrashedError) {
        e.lifecycle.transition("loading");
        failed(err);
      }
      throw err;
    }
    await this.makeRoom(descriptor.id, totalBytes(estimate));
    e.lifecycle.transition("loading");
    this.seams.events?.publish({ type: "model.loading", model: descriptor.id, contextLength: options.contextLength, parallel: options.parallel, threads: options.threads });
    const started = performance.now();
    try {
      log.info("loading model", { model: descriptor.id, path: descriptor.path, ctx: options.contextLength, parallel: options.parallel, threads: options.threads, estimate: formatBytes(totalBytes(estimate)) });
      const model = await engine.load(descriptor, options);
      model.onFailed?.((err) => this.failLoaded(e, model, err));
      e.loaded = model;
      e.memory = model.memoryInUse();
      e.slots = new Slots(options.parallel, this.settings.queueLimit, `model '${descriptor.id}'`);
      e.ttlSeconds = options.ttl;
      e.lastUsed = e.loadedAt = this.now();
      e.lifecycle.transition("ready");
      const ms = Math.round(performance.now() - started);
      log.info("model ready", { model: descriptor.id, ms, ctx: model.contextLength });
      this.seams.events?.publish({ type: "model.loaded", model: descriptor.id, contextLength: model.contextLength, memoryBytes: totalBytes(e.memory), ms });
      return model;
    } catch (err) {
      failed(err);
      // A 4xx from the engine (a bad model file, a refused chat template) is the model's fault, not the server's: kept as is.
      throw err instanceof ModelLoadError || (err instanceof LmxError && err.status < 500) ? err : new ModelLoadError(`cannot load ${descriptor.id}: ${errorMessage(err)}`);
    }
  }

  private ensureLoaded(e: Entry, descriptor: ModelDescriptor): Promise<LoadedModel> {
    if (e.loaded && e.lifecycle.state === "ready") return Promise.resolve(e.loaded);
    // Concurrent requests for a cold model share one load.
    if (e.loading) return e.loading;
    const loading = this.load(e, descriptor);
    e.loading = loading;
    const clear = () => { if (e.loading === loading) e.loading = undefined; };
    loading.then(clear, clear);
    return loading;
  }

  /** Explicit load (admin API). Reloads when the model is loaded with different options. */
  async loadModel(id: string, request: LoadSettings = {}, placement?: Placement): Promise<ModelStatus> {
    const descriptor = this.descriptor(id);
    await this.load(this.entry(descriptor.id), descriptor, request, placement);
    return this.status(descriptor);
  }

  /** Ends this node's rank of distributed group `group`, loading or loaded (a node of it is gone); false when it holds none. */
  abandonGroup(group: string, reason: string): boolean {
    return Object.values(this.engines).some((engine) => engine?.abandonGroup?.(group, reason) ?? false);
  }

  /** The model loaded as part of distributed group `group`, if any. */
  groupMember(group: string): { id: string; placement: Placement; state: string } | undefined {
    for (const e of this.entries.values()) {
      const p = e.loaded?.options.distributed;
      if (p?.group === group) return { id: e.id, placement: p, state: e.lifecycle.state };
    }
    return undefined;
  }

  /** A loaded model and one of its parallel sequences, waiting in its queue if all are busy. */
  async acquire(id: string, signal?: AbortSignal): Promise<Lease> {
    if (this.closed) throw new OverloadedError("server is shutting down");
    // Counted from here, not only once a slot is held: a graceful stop must also wait for a
    // request whose model is still loading or that is between the load and its slot.
    this.acquiring++;
    try {
      return await this.acquireLease(id, signal);
    } finally {
      this.acquiring--;
    }
  }

  private async acquireLease(id: string, signal?: AbortSignal): Promise<Lease> {
    const descriptor = this.requested(id);
    const e = this.entry(descriptor.id);
    for (;;) {
      const model = await this.ensureLoaded(e, descriptor);
      const slots = e.slots;
      // Unloaded between the load and here (evicted, or unloaded by a bot): load again.
      if (!slots || e.loaded !== model) continue;
      const release = await slots.acquire(signal);
      // The grace period is over: the engines are being freed, so nothing new may start on them.
      if (this.stopping) {
        release();
        throw new OverloadedError("server is shutting down");
      }
      e.lastUsed = this.now();
      const ac = new AbortController();
      const onAbort = () => ac.abort();
      signal?.addEventListener("abort", onAbort, { once: true });
      e.inflight.add(ac);
      return {
        model,
        signal: ac.signal,
        release: () => {
          signal?.removeEventListener("abort", onAbort);
          e.inflight.delete(ac);
          e.lastUsed = this.now();
          release();
        },
      };
    }
  }

  /** The engine gave up on a loaded model: free it and mark it failed; the next request loads it afresh. */
  private failLoaded(e: Entry, model: LoadedModel, err: Error): void {
    const run = e.op.then(async () => {
      if (e.loaded !== model) return;
      if (err instanceof ModelEndedError) {
        await this.unloadEntry(e, "ended");
        return;
      }
      log.error("model failed; unloading it", { model: e.id, error: err.message });
      await this.unloadEntry(e, "failed", err);
    });
    e.op = run.catch((error: unknown) => log.error("unloading a failed model failed", { model: e.id, error: errorMessage(error) }));
  }

  private async unloadEntry(e: Entry, reason: "request" | "evict" | "ttl" | "shutdown" | "failed" | "ended", failure?: Error): Promise<void> {
    if (!e.loaded) return;
    e.lifecycle.transition("unloading", reason);
    e.slots?.rejectAll(failure ?? new OverloadedError(`model '${e.id}' was unloaded while the request waited`));
    // Running generations end before their model is freed under them. A failed model's requests
    // are ending already, with the engine's error, which an abort would replace by a vaguer one.
    if (reason !== "failed") for (const ac of e.inflight) ac.abort();
    if (e.slots && !(await e.slots.waitIdle(10_000))) log.warn("requests still running after abort; unloading anyway", { model: e.id });
    const model = e.loaded;
    e.loaded = undefined;
    e.slots = undefined;
    e.memory = undefined;
    try {
      await model.unload();
    } finally {
      if (reason === "failed") {
        e.lifecycle.transition("failed", failure?.message);
        this.seams.events?.publish({ type: "model.failed", model: e.id, error: failure ? errorMessage(failure) : "failed" });
      } else {
        e.lifecycle.transition("unloaded", reason);
        log.info("model unloaded", { model: e.id, reason });
        this.seams.events?.publish({ type: "model.unloaded", model: e.id, reason });
      }
    }
  }

  /** Unloads a model (waits for nothing: running generations end with an error). Serialised with loads. */
  async unload(id: string, reason: "request" | "ttl" | "shutdown" = "request"): Promise<boolean> {
    const e = this.entries.get(this.catalog.get(id)?.id ?? id);
    if (!e) return false;
    let did = false;
    const run = e.op.then(async () => {
      if (!e.loaded) return;
      did = true;
      await this.unloadEntry(e, reason);
    });
    e.op = run.catch((err: unknown) => log.error("unload failed", { model: id, error: errorMessage(err) }));
    await run;
    return did;
  }

  /**
   * How long a loaded model stays loaded once idle, as a client asks on a request (Ollama's
   * keep_alive) until a load or another such request changes it: `seconds` > 0, null for ever, or
   * 0 to unload it as soon as no request uses it. False when the model is not loaded.
   */
  keepAlive(id: string, seconds: number | null): boolean {
    const e = this.entries.get(this.catalog.get(id)?.id ?? id);
    if (!e?.loaded) return false;
    // A model still in use gets the smallest positive TTL: the sweep unloads it once it is idle.
    e.ttlSeconds = seconds === null ? 0 : seconds === 0 ? Number.MIN_VALUE : seconds;
    if (seconds === 0 && !e.busy) void this.unload(e.id, "ttl");
    return true;
  }

  private async expireIdle(): Promise<void> {
    const now = this.now();
    for (const e of this.entries.values()) {
      if (!e.loaded || e.busy || e.ttlSeconds <= 0) continue;
      if (now - e.lastUsed >= e.ttlSeconds * 1000) await this.unload(e.id, "ttl");
    }
  }

  private async status(descriptor: ModelDescriptor): Promise<ModelStatus> {
    let info: ModelInfo | undefined;
    let infoError: string | undefined;
    try {
      info = await this.engineFor(descriptor).inspect(descriptor);
    } catch (err) {
      infoError = errorMessage(err);
    }
    return statusOf(descriptor, this.entries.get(descriptor.id), info, infoError);
  }

  async get(id: string): Promise<ModelStatus> {
    return this.status(this.descriptor(id));
  }

  async list(): Promise<ModelStatus[]> {
    this.catalog.refresh();
    return Promise.all(this.catalog.list().map((d) => this.status(d)));
  }

  /** Loaded models only. */
  async loaded(): Promise<ModelStatus[]> {
    const ids = [...this.entries.values()].filter((e) => e.loaded).map((e) => e.id);
    return Promise.all(ids.map((id) => this.status(this.catalog.get(id) ?? { id, format: "gguf", path: "" })));
  }

  /** Every known model's engine and load, without reading any model file (cheap enough for each metrics scrape). */
  occupancy(): ModelOccupancy[] {
    this.catalog.refresh();
    return this.catalog.list().map((d) => occupancyOf(d, this.entries.get(d.id), this.engines[d.format]?.name ?? d.format));
  }

  memoryInUse(): number {
    return [...this.entries.values()].filter((e) => e.loaded).reduce((a, e) => a + totalBytes(e.memory), 0);
  }

  /** Refuses new loads and requests from now on; running and queued ones carry on. */
  drain(): void {
    this.closed = true;
  }

  /** Resolves true once no request runs, waits or loads a model, or false after `timeoutMs`. */
  async waitIdle(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.acquiring === 0 && ![...this.entries.values()].some((e) => e.busy || e.loading)) return true;
      if (Date.now() >= end) return false;
      await Bun.sleep(Math.min(50, Math.max(1, end - Date.now())));
    }
  }

  /**
   * Aborts what still runs, unloads every model and frees the engines, each step given at most
   * `stepLimitMs`: a step that does not finish is left to the process exit (which frees it anyway)
   * rather than hanging the shutdown. Known case: node-llama-cpp 3.21.1's Llama.dispose() waits until
   * no dispose-prevention handle is left, and failed model loads leak one (measured: after two failed
   * loads of a truncated GGUF one handle stays after dispose, which then never resolves).
   */
  async shutdown(stepLimitMs = 5000): Promise<void> {
    this.closed = true;
    this.stopping = true;
    // Generations end before their models are freed, even where an unload waits behind a load
    // still running (and gives up after the step limit) while the engine is disposed regardless.
    for (const e of this.entries.values()) for (const ac of e.inflight) ac.abort();
    if (this.sweeper) clearInterval(this.sweeper);
    await Promise.all([...this.entries.keys()].map((id) => bounded(`model '${id}' to unload`, this.unload(id, "shutdown"), stepLimitMs)));
    for (const engine of Object.values(this.engines)) if (engine) await bounded(`the ${engine.name} engine to dispose`, engine.dispose(), stepLimitMs);
  }
}

export { AbortedWhileQueuedError };
