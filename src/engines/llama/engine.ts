import { join } from "node:path";
import type { GgufFileInfo, Llama } from "node-llama-cpp";
import { EngineError, EngineRestartingError, errorMessage, InvalidModelFileError, ModelLoadError, UnsupportedArchitectureError } from "../../errors.ts";
import { type GgufModel, validateGgufModel } from "../../gguf/model.ts";
import { log } from "../../log.ts";
import { releaseFreedMemory } from "../../util/native-memory.ts";
import { attentionHeadSize } from "../../gguf/hparams.ts";
import type { Engine, LoadedModel, ResolvedLoadSettings, MemoryEstimate, ModelDescriptor, ModelInfo } from "../types.ts";
import { chooseBatchSize } from "./batch-size.ts";
import { DecodeGate } from "./batching.ts";
import { chooseFlashAttention, type FlashAttentionChoice } from "./flash-attention.ts";
import { LlamaLoadedModel } from "./loaded-model.ts";
import { MODEL_MEMORY } from "./model-memory.ts";
import { removeSavedStateLeftovers, SavedStates } from "./saved-states.ts";
import { loadDraft, Speculation } from "./speculative.ts";
import { currentEngineVersion, loadNodeLlamaCpp, pendingEngineSwitch, requestEngineSwitch } from "./loader.ts";
import { ensureTrialLoaded } from "./trial-load.ts";
import { fileVersion, type LoadRecords } from "./load-records.ts";
import { InvalidChatTemplateError, probeChatTemplate } from "./template-guard.ts";
import { chatWrapperFor } from "./chat-wrapper-memo.ts";

type NodeLlamaCpp = typeof import("node-llama-cpp");

/** node-llama-cpp's file-type names, minus the prefixes nobody uses when naming a quant. */
function quantName(nlc: NodeLlamaCpp, fileType: number | undefined): string | undefined {
  if (fileType === undefined) return undefined;
  const name = nlc.GgufFileType[fileType];
  return typeof name === "string" ? name.replace(/^(MOSTLY|ALL)_/, "") : undefined;
}

/** Memory estimates kept per model file (distinct context/parallel/batch settings). */
const ESTIMATES_PER_FILE = 16;

/** What the server wires into the engine (engines never import the layers above them). */
export interface LlamaCppEngineOptions {
  /** Words the error for a model llama.cpp does not know: the update layer names an engine that can load it. */
  unsupportedArchitecture?: (modelId: string, architecture: string) => Promise<string>;
  /** The bound on saved prompt states on disk, all models together (0: none). */
  promptCacheBytes?: number;
  /** Passed trial loads and memory estimates kept across restarts. */
  records?: LoadRecords;
}

export class LlamaCppEngine implements Engine {
  readonly name = "llama.cpp";
  readonly format = "gguf" as const;
  private runtime: Promise<{ nlc: NodeLlamaCpp; llama: Llama }> | undefined;
  private readonly infoCache = new Map<string, Promise<GgufFileInfo>>();
  private readonly estimates = new WeakMap<GgufModel, Map<string, Promise<MemoryEstimate>>>();
  /** Architectures llama.cpp has reported as unknown; it says so only in its log, not in the error. */
  private readonly unknownArchitectures = new Set<string>();
  /** Prompt states of conversations whose sequence another one took (saved-states.ts); none when the bound is 0. */
  private readonly savedStates: SavedStates | undefined;

  private readonly unsupportedArchitecture: (modelId: string, architecture: string) => Promise<string>;
  private readonly records: LoadRecords | undefined;

  constructor(private readonly lmxHome: string, opts: LlamaCppEngineOptions = {}) {
    this.unsupportedArchitecture = opts.unsupportedArchitecture ??
      (async (modelId, architecture) => `cannot load ${modelId}: its architecture "${architecture}" is not supported by this llama.cpp engine`);
    this.records = opts.records;
    const root = join(lmxHome, "prompt-cache");
    const promptCacheBytes = opts.promptCacheBytes ?? 0;
    if (promptCacheBytes > 0) this.savedStates = new SavedStates(root, promptCacheBytes);
    else void removeSavedStateLeftovers(root);
  }

  private get(): Promise<{ nlc: NodeLlamaCpp; llama: Llama }> {
    this.runtime ??= (async () => {
      const nlc = await loadNodeLlamaCpp(this.lmxHome);
      const llama = await nlc.getLlama({
        // Metal on Macs; CPU elsewhere (the bundle ships no CUDA/Vulkan binaries).
        gpu: process.platform === "darwin" ? "auto" : false,
        build: "never",
        // 0 lets each context use exactly the threads it asks for instead of sharing a global pool.
        maxThreads: 0,
        logLevel: nlc.LlamaLogLevel.error,
        logger: (level: unknown, message: string) => {
          const text = message.trim();
          const unknown = /unknown model architecture: '([^']+)'/.exec(text)?.[1];
          if (unknown !== undefined) this.unknownArchitectures.add(unknown);
          if (text) log.warn("llama.cpp: " + text, { level });
        },
      });
      return { nlc, llama };
    })();
    this.runtime.catch(() => { this.runtime = undefined; });
    return this.runtime;
  }

  async version(): Promise<string> {
    const { nlc, llama } = await this.get();
    return `node-llama-cpp ${await nlc.getModuleVersion()}, llama.cpp ${llama.llamaCppRelease.release}`;
  }

  private async fileInfo(path: string): Promise<GgufFileInfo> {
    // Our strict reader sees every file first (cached per file identity, so this is a stat when
    // nothing changed): node-llama-cpp's reader and llama.cpp trust the counts and shapes in it.
    validateGgufModel(path);
    let hit = this.infoCache.get(path);
    if (!hit) {
      hit = this.get().then(({ nlc }) => nlc.readGgufFileInfo(path, { readTensorInfo: true }));
      this.infoCache.set(path, hit);
      hit.catch(() => this.infoCache.delete(path));
    }
    try {
      return await hit;
    } catch (err) {
      throw new InvalidModelFileError(`cannot read GGUF file ${path}: ${errorMessage(err)}`);
    }
  }

  async inspect(descriptor: ModelDescriptor): Promise<ModelInfo> {
    const { nlc } = await this.get();
    const info = await this.fileInfo(descriptor.path);
    const meta = info.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
    const general = meta.general as { architecture?: string; file_type?: number; size_label?: string } | undefined;
    const arch = general?.architecture;
    const archMeta = arch ? meta[arch] : undefined;
    const ctx = archMeta?.context_length;
    const tokenizer = meta.tokenizer as { chat_template?: string } | undefined;
    const insights = await nlc.GgufInsights.from(info);
    return {
      architecture: arch,
      declaredContextLength: typeof ctx === "number" ? ctx : undefined,
      hasChatTemplate: typeof tokenizer?.chat_template === "string",
      chatTemplate: typeof tokenizer?.chat_template === "string" ? tokenizer.chat_template : undefined,
      sizeLabel: typeof general?.size_label === "string" ? general.size_label : undefined,
      isEmbeddingModel: archMeta?.pooling_type !== undefined && archMeta.pooling_type !== 0
        || (archMeta?.attention as { causal?: boolean } | undefined)?.causal === false,
      sizeBytes: insights.modelSize,
      quantization: quantName(nlc, general?.file_type),
    };
  }

  /**
   * The first load of each file runs in a child process (trial-load.ts), so a native abort costs
   * one request. It must come before anything hands the file to llama.cpp in this process, and
   * node-llama-cpp's memory estimate already does (it simulates the load with noAlloc).
   */
  private async trialLoad(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<void> {
    await ensureTrialLoaded({
      path: descriptor.path,
      lmxHome: this.lmxHome,
      contextLength: options.contextLength,
      gpuLayers: options.gpuLayers,
      embedding: (await this.inspect(descriptor)).isEmbeddingModel,
    }, { records: this.records });
  }

  async estimateMemory(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<MemoryEstimate> {
    await this.trialLoad(descriptor, options);
    const spec = options.speculative;
    const draft = spec?.mode === "draft" ? { id: spec.draftId, format: "gguf" as const, path: spec.draftPath } : undefined;
    if (draft) await this.trialLoad(draft, options);
    const own = await this.estimateOne(descriptor, options);
    if (!draft) return own;
    // The draft model and its context count toward the target's memory: they load and unload together.
    const extra = await this.estimateOne(draft, options);
    return { modelBytes: own.modelBytes + extra.modelBytes, contextBytes: own.contextBytes + extra.contextBytes, gpuBytes: own.gpuBytes + extra.gpuBytes };
  }

  /**
   * The scheduler estimates before a load and the load estimates again; each estimate simulates the
   * model in llama.cpp (≈0.5 s for a 150k-token vocabulary), so the result is kept per file version
   * (validateGgufModel's header object) and settings, and across restarts in the server's records.
   */
  private estimateOne(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<MemoryEstimate> {
    const file = validateGgufModel(descriptor.path);
    const key = JSON.stringify([options.contextLength, options.parallel, options.batchSize ?? null, options.gpuLayers ?? null, options.flashAttention ?? null]);
    let perFile = this.estimates.get(file);
    if (!perFile) this.estimates.set(file, (perFile = new Map()));
    let hit = perFile.get(key);
    if (!hit) {
      // Settings come from API callers: a handful per file is all a cache needs to hold.
      if (perFile.size >= ESTIMATES_PER_FILE) perFile.delete(perFile.keys().next().value!);
      hit = this.recordedEstimate(descriptor, options, key);
      perFile.set(key, hit);
      hit.catch(() => perFile.delete(key));
    }
    return hit;
  }

  private async recordedEstimate(descriptor: ModelDescriptor, options: ResolvedLoadSettings, settings: string): Promise<MemoryEstimate> {
    const records = this.records;
    if (!records) return this.simulate(descriptor, options);
    const file = fileVersion(descriptor.path);
    const engine = currentEngineVersion(this.lmxHome);
    let known: MemoryEstimate | undefined;
    try {
      known = records.estimate(file, engine, settings);
    } catch (err) {
      log.warn("cannot read the memory estimate records", { model: descriptor.id, error: errorMessage(err) });
    }
    if (known) {
      log.debug("memory estimate", { model: descriptor.id, from: "records" });
      return known;
    }
    const started = performance.now();
    const estimate = await this.simulate(descriptor, options);
    log.debug("memory estimate", { model: descriptor.id, from: "simulated load", ms: Math.round(performance.now() - started) });
    try {
      records.rememberEstimate(file, engine, settings, estimate);
    } catch (err) {
      log.warn("cannot record a memory estimate", { model: descriptor.id, error: errorMessage(err) });
    }
    return estimate;
  }

  private async simulate(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<MemoryEstimate> {
    const { nlc, llama } = await this.get();
    const insights = await nlc.GgufInsights.from(await this.fileInfo(descriptor.path), llama);
    try {
      const gpuLayers = options.gpuLayers ?? 0;
      const model = await insights.estimateModelResourceRequirementsV2({ gpuLayers });
      const ctx = await insights.estimateContextResourceRequirementsV2({
        contextSize: options.contextLength,
        modelGpuLayers: gpuLayers,
        sequences: options.parallel,
        batchSize: this.batchSize(options, llama),
        flashAttention: this.flashAttention(descriptor, options, llama).option,
      });
      return { modelBytes: model.cpuRam, contextBytes: ctx.cpuRam, gpuBytes: model.gpuVram + ctx.gpuVram };
    } finally {
      // The simulation loads the model in llama.cpp without its weights (vocabulary, tensor graph:
      // ≈55 MB for a 150k-token vocabulary) and keeps it until a garbage collection finalizes the
      // insights object, which a small JS heap can postpone for as long as the server runs.
      // node-llama-cpp frees it only through this internal session (public API has no dispose).
      await (insights as unknown as { _simulationSession?: { dispose?: () => Promise<void> } })._simulationSession?.dispose?.();
    }
  }

  private flashAttention(descriptor: ModelDescriptor, options: ResolvedLoadSettings, llama: Llama): FlashAttentionChoice {
    return chooseFlashAttention(options.flashAttention ?? "auto", llama.gpu !== false, attentionHeadSize(validateGgufModel(descriptor.path).header.metadata));
  }

  private batchSize(options: ResolvedLoadSettings, llama: Llama): number | undefined {
    return chooseBatchSize(options.batchSize, llama.gpu !== false, options.contextLength * options.parallel);
  }

  async load(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<LoadedModel> {
    const next = pendingEngineSwitch(this.lmxHome);
    if (next !== undefined && requestEngineSwitch(next)) {
      throw new EngineRestartingError(
        `llama.cpp engine ${next.nodeLlamaCppVersion} was selected; the server is restarting into it once running requests finish. Retry in a few seconds.`);
    }
    const { nlc, llama } = await this.get();
    const estimate = await this.estimateMemory(descriptor, options);
    // Checked again right before the load: the file may have changed since it was inspected.
    const file = validateGgufModel(descriptor.path);
    await this.trialLoad(descriptor, options);
    try {
      await probeChatTemplate(nlc, (await this.fileInfo(descriptor.path)).metadata);
    } catch (err) {
      if (err instanceof InvalidChatTemplateError) throw new InvalidChatTemplateError(`cannot load ${descriptor.id}: ${err.message}`);
      throw err;
    }
    let model;
    const gpuLayers = options.gpuLayers ?? (llama.gpu ? "auto" : 0);
    try {
      model = await llama.loadModel({ modelPath: descriptor.path, gpuLayers, ...MODEL_MEMORY });
    } catch (err) {
      const architecture = await this.inspect(descriptor).then((info) => info.architecture, () => undefined);
      if (architecture !== undefined && this.unknownArchitectures.has(architecture)) {
        throw new UnsupportedArchitectureError(architecture, await this.unsupportedArchitecture(descriptor.id, architecture));
      }
      throw new ModelLoadError(`cannot load ${descriptor.id}: ${errorMessage(err)}`);
    }
    try {
      // Keeps every generating sequence in each batch (see batching.ts).
      const gate = new DecodeGate();
      const flashAttention = this.flashAttention(descriptor, options, llama);
      // The context is made on a native thread while the main thread resolves the chat wrapper.
      const creating = model.createContext({
        contextSize: options.contextLength,
        sequences: options.parallel,
        threads: { ideal: options.threads, min: options.threads },
        batchSize: this.batchSize(options, llama),
        flashAttention: flashAttention.option,
        // A request never takes a sequence another one holds, so no evaluation waits on a global thread budget.
        batching: { dispatchSchedule: "nextCycle", itemPrioritizationStrategy: gate.strategy },
      });
      // Renders the model's template, which is untrusted code (template-guard.ts).
      const chatWrapper = await chatWrapperFor(nlc, model, file).catch(async (err: unknown) => {
        await creating.then((context) => context.dispose(), () => undefined);
        throw err;
      });
      const context = await creating;
      if (options.parallel > 1 && !gate.observe(context)) log.warn("this node-llama-cpp queues decodes differently; parallel batches keep their queue order (slower)", { model: descriptor.id });
      log.debug("chat wrapper resolved", { model: descriptor.id, wrapper: chatWrapper.wrapperName });
      const spec = options.speculative;
      let speculation: Speculation | undefined;
      if (spec?.mode === "draft") {
        const draftFlash = this.flashAttention({ id: spec.draftId, format: "gguf", path: spec.draftPath }, options, llama).option;
        const draft = await loadDraft(llama, spec.draftPath, { ...options, gpuLayers, batchSize: this.batchSize(options, llama), flashAttention: draftFlash }).catch(async (err: unknown) => {
          await context.dispose();
          throw new ModelLoadError(`cannot load draft model ${spec.draftId} for ${descriptor.id}: ${errorMessage(err)}`);
        });
        speculation = new Speculation(nlc, spec, draft);
      } else if (spec) speculation = new Speculation(nlc, spec);
      const loaded = new LlamaLoadedModel(nlc, llama, model, context, chatWrapper, descriptor, options, estimate, gate, flashAttention.reported, speculation, this.savedStates?.space());
      await releaseFreedMemory();
      return loaded;
    } catch (err) {
      await model.dispose();
      if (err instanceof ModelLoadError) throw err;
      if (err instanceof InvalidChatTemplateError) throw new InvalidChatTemplateError(`cannot load ${descriptor.id}: ${err.message}`);
      throw new ModelLoadError(`cannot create a ${options.contextLength}-token context for ${descriptor.id}: ${errorMessage(err)}`);
    }
  }

  async dispose(): Promise<void> {
    await this.savedStates?.dispose();
    if (!this.runtime) return;
    try {
      const { llama } = await this.runtime;
      await llama.dispose();
    } catch (err) {
      throw new EngineError(`disposing llama.cpp failed: ${errorMessage(err)}`);
    } finally {
      this.runtime = undefined;
    }
  }
}
