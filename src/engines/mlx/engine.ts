import { Tokenizer } from "@huggingface/tokenizers";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { EngineError, errorMessage, InvalidRequestError, LmxError, ModelLoadError, UnsupportedArchitectureError } from "../../errors.ts";
import { log } from "../../log.ts";
import type { Engine, LoadedModel, ResolvedLoadSettings, MemoryEstimate, ModelDescriptor, ModelInfo } from "../types.ts";
import { MlxLoadedModel } from "./loaded-model.ts";
import { FollowerRank, rankSetup } from "./rank.ts";
import { estimateWithDraft, type MlxModelFiles, modelInfo, readModelFiles } from "./model-files.ts";
import { WorkerRequestError, WorkerSupervisor } from "./supervisor.ts";

export interface MlxEngineOptions {
  /** Silence from a worker longer than this means it hung (it sends a heartbeat every second). */
  hangTimeoutMs?: number;
  /** First restart delay after a crash; doubles per crash in a row. */
  backoffMs?: number;
  /** Restarts allowed within restartWindowMs before the model is marked failed. */
  maxRestarts?: number;
  restartWindowMs?: number;
}

/** The Python environment the worker runs in: src/runtimes/ installs it, checks it and says where it is. */
export interface MlxPython {
  describe(): string;
  /** Throws a typed error (runtime_not_installed…) when there is no usable environment. */
  resolve(): Promise<{ python: string; worker: string; source: "managed" | "external" }>;
  /** The unsupported_architecture message: installed runtimes, whether one knows it, the command for one that does. */
  unsupportedArchitectureHint(architecture: string): Promise<string>;
}

/** MLX models (mlx-community safetensors folders), served by mlx-lm in a supervised Python worker per loaded model. */
export class MlxEngine implements Engine {
  readonly name = "mlx-lm";
  readonly format = "mlx" as const;
  private readonly files = new Map<string, { mtimeMs: number; files: MlxModelFiles }>();
  private readonly live = new Set<LoadedModel>();
  /** The worker of each distributed group this node holds a rank of, from the start of its load. */
  private readonly groups = new Map<string, WorkerSupervisor>();

  constructor(private readonly runtime: MlxPython, private readonly opts: MlxEngineOptions = {}) {}

  async version(): Promise<string> {
    return this.runtime.describe();
  }

  private modelFiles(path: string): MlxModelFiles {
    const config = join(path, "config.json");
    const mtimeMs = existsSync(config) ? statSync(config).mtimeMs : 0;
    const hit = this.files.get(path);
    if (hit && hit.mtimeMs === mtimeMs) return hit.files;
    const files = readModelFiles(path);
    this.files.set(path, { mtimeMs, files });
    return files;
  }

  async inspect(descriptor: ModelDescriptor): Promise<ModelInfo> {
    return modelInfo(this.modelFiles(descriptor.path));
  }

  /**
   * Also the point where a missing runtime is reported: the scheduler asks for the estimate before
   * it evicts anything or marks the model as loading, so the answer is a clean runtime_not_installed.
   */
  async estimateMemory(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<MemoryEstimate> {
    const files = this.modelFiles(descriptor.path);
    await this.runtime.resolve();
    const { kvBytes: _kv, ...estimate } = estimateWithDraft(files, this.draftFiles(descriptor, options), options);
    return estimate;
  }

  private draftFiles(descriptor: ModelDescriptor, options: ResolvedLoadSettings): { files: MlxModelFiles; shared: boolean } | undefined {
    const spec = options.speculative;
    return spec?.mode === "draft" ? { files: this.modelFiles(spec.draftPath), shared: spec.draftPath === descriptor.path } : undefined;
  }

  async load(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<LoadedModel> {
    const files = this.modelFiles(descriptor.path);
    const runtime = await this.runtime.resolve();
    const draft = options.speculative?.mode === "draft" ? options.speculative : undefined;
    const estimate = estimateWithDraft(files, this.draftFiles(descriptor, options), options);
    const placement = options.distributed;
    const rank = placement ? rankSetup(descriptor, placement) : undefined;
    const supervisor = new WorkerSupervisor({
      label: placement ? `${descriptor.id} (rank ${placement.rank} of ${placement.size})` : descriptor.id,
      command: [runtime.python, runtime.worker],
      // mlx's CPU backend sizes its thread pool from these; one model gets the threads the scheduler gave it.
      env: { OMP_NUM_THREADS: String(options.threads), MLX_NUM_THREADS: String(options.threads), TOKENIZERS_PARALLELISM: "false", ...rank?.env },
      load: {
        path: descriptor.path,
        context_length: options.contextLength,
        parallel: options.parallel,
        prefill_step_size: options.batchSize ?? 512,
        prompt_cache_bytes: estimate.kvBytes,
        ...(draft ? { draft: draft.draftPath } : {}),
        ...(placement ? { distributed: { rank: placement.rank, size: placement.size, join_timeout_s: placement.joinTimeoutS } } : {}),
      },
      once: rank?.once,
      hangTimeoutMs: this.opts.hangTimeoutMs,
      backoffMs: this.opts.backoffMs,
      maxRestarts: this.opts.maxRestarts,
      restartWindowMs: this.opts.restartWindowMs,
    });
    if (placement) this.groups.set(placement.group, supervisor);
    const ended = () => {
      if (placement && this.groups.get(placement.group) === supervisor) this.groups.delete(placement.group);
      rank?.dispose();
    };
    try {
      await supervisor.ensureRunning();
    } catch (err) {
      await supervisor.stop().catch(() => undefined);
      ended();
      if (err instanceof WorkerRequestError && err.reply.code === "runtime_broken") {
        throw new ModelLoadError(
          `the MLX runtime (${runtime.python}) is broken: ${err.message}. Reinstall it with 'lmx runtime update mlx'` +
          (runtime.source === "external" ? " or fix the environment the python setting points at" : ""), "runtime_broken");
      }
      if (err instanceof WorkerRequestError && err.reply.code === "unsupported_architecture") {
        const architecture = files.config.model_type ?? "unknown";
        throw new UnsupportedArchitectureError(architecture, `cannot load ${descriptor.id}: ${await this.runtime.unsupportedArchitectureHint(architecture)}`);
      }
      if (err instanceof WorkerRequestError && draft && (err.reply.code === "draft_vocabulary_mismatch" || err.reply.code === "draft_unsupported")) {
        throw new InvalidRequestError(`draft model '${draft.draftId}' cannot draft for '${descriptor.id}': ${err.reply.message}`, "draft", err.reply.code);
      }
      if (err instanceof LmxError && !(err instanceof EngineError)) throw err;
      throw new ModelLoadError(`cannot load ${descriptor.id} with mlx-lm: ${errorMessage(err)}`);
    }
    const memory = { modelBytes: estimate.modelBytes, contextBytes: estimate.contextBytes, gpuBytes: 0 };
    if (placement && placement.rank > 0) {
      const follower: FollowerRank = new FollowerRank(supervisor, descriptor, { ...options, distributed: placement }, memory, () => {
        this.live.delete(follower);
        ended();
      });
      this.live.add(follower);
      return follower;
    }
    let tokenizer: Tokenizer | undefined;
    const model = new MlxLoadedModel(supervisor, descriptor, options, memory, () => {
      if (tokenizer) return tokenizer;
      if (!files.hasTokenizerJson) throw new EngineError(`${descriptor.path} has no tokenizer.json, which LMX needs to count tokens outside the worker`, "tokenizer_missing");
      const read = (f: string) => JSON.parse(readFileSync(join(descriptor.path, f), "utf8")) as Record<string, unknown>;
      const config = existsSync(join(descriptor.path, "tokenizer_config.json")) ? read("tokenizer_config.json") : {};
      tokenizer = new Tokenizer(read("tokenizer.json"), config);
      return tokenizer;
    }, () => {
      this.live.delete(model);
      ended();
    });
    this.live.add(model);
    log.debug("mlx model loaded", { model: descriptor.id, pid: supervisor.pid });
    return model;
  }

  async runtimeVersions(): Promise<Record<string, string | null>> {
    const runtime = await this.runtime.resolve();
    // The worker's own report of what its interpreter imports (any architecture name will do).
    const proc = Bun.spawn([runtime.python, runtime.worker, "--knows-architecture", "llama"], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
    try {
      const out = (await new Response(proc.stdout).text()).trim().split("\n").pop() ?? "";
      await proc.exited;
      const parsed = JSON.parse(out) as { mlx?: unknown; mlx_lm?: unknown };
      const str = (x: unknown) => (typeof x === "string" ? x : null);
      return { mlx: str(parsed.mlx), "mlx-lm": str(parsed.mlx_lm) };
    } catch (err) {
      throw new EngineError(`cannot read the MLX runtime's versions (${runtime.python}): ${errorMessage(err)}`, "runtime_broken");
    } finally {
      clearTimeout(timer);
    }
  }

  abandonGroup(group: string, reason: string): boolean {
    const supervisor = this.groups.get(group);
    supervisor?.abandon(reason);
    return supervisor !== undefined;
  }

  /** True while any MLX model is loaded (the runtime may not be removed then). */
  get inUse(): boolean {
    return this.live.size > 0;
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.live].map((m) => m.unload().catch(() => undefined)));
  }
}
