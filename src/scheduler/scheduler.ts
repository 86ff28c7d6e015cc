import { errorMessage, ModelLoadError, ModelNotFoundError, OverloadedError } from "../errors.ts";
import type { Engine, LoadedModel, LoadOptions, ModelDescriptor, ModelInfo } from "../engines/types.ts";
import { log } from "../log.ts";
import type { ModelCatalog } from "../models/catalog.ts";
import { Lifecycle, type ModelState } from "./lifecycle.ts";
import { AbortedWhileQueuedError, Slots } from "./slots.ts";

/** Context used when neither the user nor the model says otherwise: big enough for chat, small enough for RAM. */
export const DEFAULT_CONTEXT = 4096;

export interface LoadDefaults {
  /** undefined: DEFAULT_CONTEXT capped at the declared context; 0: the declared context. */
  contextLength?: number;
  parallel: number;
  threads: number;
  batchSize?: number;
  queueLimit: number;
}

export interface ModelOverride {
  ctx?: number;
  parallel?: number;
  threads?: number;
}

export interface Lease {
  model: LoadedModel;
  release: () => void;
}

export interface ModelStatus {
  descriptor: ModelDescriptor;
  info?: ModelInfo;
  infoError?: string;
  state: ModelState;
  loadedContextLength?: number;
  running: number;
  queued: number;
}

class Entry {
  readonly lifecycle: Lifecycle;
  loaded: LoadedModel | undefined;
  loading: Promise<LoadedModel> | undefined;
  slots: Slots | undefined;
  lastUsed = 0;
  /** Serialises load and unload of this model. */
  op: Promise<unknown> = Promise.resolve();

  constructor(readonly id: string) {
    this.lifecycle = new Lifecycle((from, to) => log.debug("model state", { model: id, from, to }));
  }
}

export class Scheduler {
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly engine: Engine,
    private readonly defaults: LoadDefaults,
    private readonly overrides: Record<string, ModelOverride> = {},
  ) {}

  private entry(id: string): Entry {
    let e = this.entries.get(id);
    if (!e) {
      e = new Entry(id);
      this.entries.set(id, e);
    }
    return e;
  }

  private descriptor(id: string): ModelDescriptor {
    const d = this.catalog.get(id);
    if (!d) throw new ModelNotFoundError(id);
    return d;
  }

  async inspect(id: string): Promise<ModelInfo> {
    return this.engine.inspect(this.descriptor(id));
  }

  /** The options a model loads with: its override in config.json, then server settings, then the model's own metadata. */
  async loadOptions(descriptor: ModelDescriptor, info?: ModelInfo): Promise<LoadOptions> {
    const o = this.overrides[descriptor.id] ?? {};
    const declared = (info ?? (await this.engine.inspect(descriptor))).declaredContextLength;
    const requested = o.ctx ?? this.defaults.contextLength;
    let contextLength: number;
    if (requested === undefined) contextLength = Math.min(DEFAULT_CONTEXT, declared ?? DEFAULT_CONTEXT);
    else if (requested === 0) contextLength = declared ?? DEFAULT_CONTEXT;
    else contextLength = requested;
    return {
      contextLength,
      parallel: o.parallel ?? this.defaults.parallel,
      threads: o.threads || this.defaults.threads,
      batchSize: this.defaults.batchSize,
    };
  }

  private ensureLoaded(e: Entry, descriptor: ModelDescriptor): Promise<LoadedModel> {
    if (e.loaded && e.lifecycle.state === "ready") return Promise.resolve(e.loaded);
    // Concurrent requests for a cold model share one load.
    if (e.loading) return e.loading;
    const loading: Promise<LoadedModel> = e.op.then(async () => {
      if (e.loaded && e.lifecycle.state === "ready") return e.loaded;
      if (this.closed) throw new OverloadedError("server is shutting down");
      e.lifecycle.transition("loading");
      const started = performance.now();
      try {
        const options = await this.loadOptions(descriptor);
        log.info("loading model", { model: descriptor.id, path: descriptor.path, ctx: options.contextLength, parallel: options.parallel, threads: options.threads });
        const model = await this.engine.load(descriptor, options);
        e.loaded = model;
        e.slots = new Slots(options.parallel, this.defaults.queueLimit, `model '${descriptor.id}'`);
        e.lifecycle.transition("ready");
        log.info("model ready", { model: descriptor.id, ms: Math.round(performance.now() - started), ctx: model.contextLength });
        return model;
      } catch (err) {
        e.lifecycle.transition("failed");
        log.error("model load failed", { model: descriptor.id, error: errorMessage(err) });
        throw err instanceof ModelLoadError ? err : new ModelLoadError(`cannot load ${descriptor.id}: ${errorMessage(err)}`);
      }
    });
    e.op = loading.catch(() => undefined);
    e.loading = loading;
    const clear = () => { if (e.loading === loading) e.loading = undefined; };
    loading.then(clear, clear);
    return loading;
  }

  /** A loaded model and one of its parallel sequences, waiting in its queue if all are busy. */
  async acquire(id: string, signal?: AbortSignal): Promise<Lease> {
    const descriptor = this.descriptor(id);
    const e = this.entry(descriptor.id);
    const model = await this.ensureLoaded(e, descriptor);
    const release = await e.slots!.acquire(signal);
    e.lastUsed = Date.now();
    return {
      model,
      release: () => {
        e.lastUsed = Date.now();
        release();
      },
    };
  }

  async unload(id: string): Promise<void> {
    const e = this.entries.get(id);
    if (!e) return;
    await (e.op = e.op.then(async () => {
      if (!e.loaded) return;
      e.lifecycle.transition("unloading");
      e.slots?.rejectAll(new OverloadedError(`model '${id}' was unloaded while the request waited`));
      const model = e.loaded;
      e.loaded = undefined;
      e.slots = undefined;
      try {
        await model.unload();
      } finally {
        e.lifecycle.transition("unloaded");
        log.info("model unloaded", { model: id });
      }
    }).catch((err) => log.error("unload failed", { model: id, error: errorMessage(err) })));
  }

  async list(): Promise<ModelStatus[]> {
    this.catalog.refresh();
    return Promise.all(this.catalog.list().map(async (descriptor) => {
      const e = this.entries.get(descriptor.id);
      let info: ModelInfo | undefined;
      let infoError: string | undefined;
      try {
        info = await this.engine.inspect(descriptor);
      } catch (err) {
        infoError = errorMessage(err);
      }
      return {
        descriptor,
        info,
        infoError,
        state: e?.lifecycle.state ?? "unloaded",
        loadedContextLength: e?.loaded?.contextLength,
        running: e?.slots?.running ?? 0,
        queued: e?.slots?.queued ?? 0,
      };
    }));
  }

  async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.entries.keys()].map((id) => this.unload(id)));
    await this.engine.dispose();
  }
}

export { AbortedWhileQueuedError };
