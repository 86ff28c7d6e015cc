import { modelStatusJson } from "../api/model-json.ts";
import type { LoadSettings } from "../engines/load-settings.ts";
import { InvalidRequestError, ModelNotFoundError } from "../errors.ts";
import { probeFields } from "../probe/fields.ts";
import type { ProbeService } from "../probe/service.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import type { LoadHistory } from "./history.ts";
import type { ModelRegistry } from "./registry.ts";

/** Hooks for deleting a downloaded model's files from the hub cache (set by the download layer). */
export interface FileRemover {
  removeModelFiles(model: { sourceRepo: string | null; revision: string | null; files: { path: string }[]; path: string }): void;
}

/** What the admin API does with models: list, inspect, load, unload, set defaults, delete. */
export class ModelManager {
  constructor(
    private readonly scheduler: Scheduler,
    private readonly registry: ModelRegistry,
    private readonly history: LoadHistory,
    private readonly probes: ProbeService,
    private readonly files?: FileRemover,
  ) {}

  private async withRegistry(status: Awaited<ReturnType<Scheduler["get"]>>) {
    const r = this.registry.get(status.descriptor.id);
    return {
      ...modelStatusJson(status),
      ...probeFields(await this.probes.latest(status.descriptor)),
      source_repo: r?.sourceRepo ?? null,
      revision: r?.revision ?? null,
      origin: r?.origin ?? "local",
      aliases: r?.aliases ?? [],
      load_defaults: r?.loadDefaults ?? {},
    };
  }

  async list() {
    return Promise.all((await this.scheduler.list()).map((s) => this.withRegistry(s)));
  }

  async ps() {
    const loaded = await this.scheduler.loaded();
    return {
      memory_budget_bytes: this.scheduler.memoryBudget,
      memory_in_use_bytes: this.scheduler.memoryInUse(),
      data: loaded.map((s) => modelStatusJson(s)),
    };
  }

  async show(id: string) {
    const status = await this.scheduler.get(id);
    const r = this.registry.get(status.descriptor.id);
    return {
      ...(await this.withRegistry(status)),
      files: r?.files ?? [],
      has_chat_template: status.info?.hasChatTemplate ?? null,
      embedding_model: status.info?.isEmbeddingModel ?? null,
      history: this.history.recent(status.descriptor.id).map((h) => ({
        event: h.event, at: new Date(h.at).toISOString(), context_length: h.contextLength, memory_bytes: h.memoryBytes, duration_ms: h.durationMs, error: h.error,
      })),
    };
  }

  /** Loads with `settings`; `save` also keeps them as the model's defaults for later (JIT) loads. */
  async load(id: string, settings: LoadSettings, save = false) {
    const status = await this.scheduler.loadModel(id, settings);
    if (save) {
      if (!this.registry.get(status.descriptor.id)) {
        throw new InvalidRequestError(`'${id}' is not in the registry (it is a file in the models directory); save defaults in config.json instead`, "save");
      }
      this.registry.setLoadDefaults(status.descriptor.id, settings);
    }
    return modelStatusJson(status);
  }

  async unload(id: string) {
    const status = await this.scheduler.get(id);
    const unloaded = await this.scheduler.unload(status.descriptor.id);
    return { id: status.descriptor.id, unloaded };
  }

  async update(id: string, change: { loadDefaults?: LoadSettings; aliases?: string[] }) {
    const status = await this.scheduler.get(id);
    const model = this.registry.get(status.descriptor.id);
    if (!model) throw new InvalidRequestError(`'${id}' is not in the registry; configure it in config.json instead`, "id");
    if (change.loadDefaults) this.registry.setLoadDefaults(model.id, change.loadDefaults);
    if (change.aliases) this.registry.setAliases(model.id, change.aliases);
    return this.show(model.id);
  }

  async remove(id: string) {
    const model = this.registry.get(id);
    if (!model) {
      throw (await this.scheduler.list()).some((s) => s.descriptor.id === id)
        ? new InvalidRequestError(`'${id}' is a file LMX did not download; delete it yourself`, "id")
        : new ModelNotFoundError(id);
    }
    await this.scheduler.unload(model.id);
    if (model.origin === "download") this.files?.removeModelFiles(model);
    this.registry.remove(model.id);
    return { id: model.id, deleted: true, files_deleted: model.origin === "download" };
  }
}

