import type { LoadSettings } from "../config/load-settings.ts";
import { InvalidRequestError, ModelNotFoundError } from "../errors.ts";
import type { ProbeService, StoredProbe } from "../probe/service.ts";
import type { ModelStatus, Scheduler } from "../scheduler/scheduler.ts";
import type { LoadHistory } from "../models/history.ts";
import type { ModelRegistry, RegisteredModel } from "../models/registry.ts";

/** Hooks for deleting a downloaded model's files from the hub cache (set by the download layer). */
export interface FileRemover {
  removeModelFiles(model: { sourceRepo: string | null; revision: string | null; files: { path: string }[]; path: string }): void;
}

/** A model as the admin API sees it: its runtime state, its registry row (if LMX downloaded or imported it) and its latest probe. */
export interface ManagedModel {
  status: ModelStatus;
  registered: RegisteredModel | undefined;
  probe: StoredProbe | undefined;
}

export interface ManagedModelDetail extends ManagedModel {
  history: ReturnType<LoadHistory["recent"]>;
}

/** What the admin API does with models: list, inspect, load, unload, set defaults, delete. Returns domain objects; src/api/admin/ shapes the JSON. */
export class ModelManager {
  constructor(
    private readonly scheduler: Scheduler,
    private readonly registry: ModelRegistry,
    private readonly history: LoadHistory,
    private readonly probes: ProbeService,
    private readonly files?: FileRemover,
  ) {}

  private async managed(status: ModelStatus): Promise<ManagedModel> {
    return { status, registered: this.registry.get(status.descriptor.id), probe: await this.probes.latest(status.descriptor) };
  }

  async list(): Promise<ManagedModel[]> {
    return Promise.all((await this.scheduler.list()).map((s) => this.managed(s)));
  }

  async ps(): Promise<{ memoryBudget: number; memoryInUse: number; loaded: ModelStatus[] }> {
    return { memoryBudget: this.scheduler.memoryBudget, memoryInUse: this.scheduler.memoryInUse(), loaded: await this.scheduler.loaded() };
  }

  async show(id: string): Promise<ManagedModelDetail> {
    const status = await this.scheduler.get(id);
    return { ...(await this.managed(status)), history: this.history.recent(status.descriptor.id) };
  }

  /** Loads with `settings`; `save` also keeps them as the model's defaults for later (JIT) loads. */
  async load(id: string, settings: LoadSettings, save = false): Promise<ModelStatus> {
    const status = await this.scheduler.loadModel(id, settings);
    if (save) {
      if (!this.registry.get(status.descriptor.id)) {
        throw new InvalidRequestError(`'${id}' is not in the registry (it is a file in the models directory); save defaults in config.json instead`, "save");
      }
      this.registry.setLoadDefaults(status.descriptor.id, settings);
    }
    return status;
  }

  async unload(id: string): Promise<{ id: string; unloaded: boolean }> {
    const status = await this.scheduler.get(id);
    const unloaded = await this.scheduler.unload(status.descriptor.id);
    return { id: status.descriptor.id, unloaded };
  }

  async update(id: string, change: { loadDefaults?: LoadSettings; aliases?: string[] }): Promise<ManagedModelDetail> {
    const status = await this.scheduler.get(id);
    const model = this.registry.get(status.descriptor.id);
    if (!model) throw new InvalidRequestError(`'${id}' is not in the registry; configure it in config.json instead`, "id");
    if (change.loadDefaults) this.registry.setLoadDefaults(model.id, change.loadDefaults);
    if (change.aliases) this.registry.setAliases(model.id, change.aliases);
    return this.show(model.id);
  }

  /** Unloads and forgets a registered model; deletes its files too when LMX downloaded them. */
  async remove(id: string): Promise<{ id: string; filesDeleted: boolean }> {
    const model = this.registry.get(id);
    if (!model) {
      throw (await this.scheduler.list()).some((s) => s.descriptor.id === id)
        ? new InvalidRequestError(`'${id}' is a file LMX did not download; delete it yourself`, "id")
        : new ModelNotFoundError(id);
    }
    await this.scheduler.unload(model.id);
    if (model.origin === "download") this.files?.removeModelFiles(model);
    this.registry.remove(model.id);
    return { id: model.id, filesDeleted: model.origin === "download" };
  }
}
