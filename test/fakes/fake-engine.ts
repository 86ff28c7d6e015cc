// A scripted engine behind the real Engine interface, for tests of everything above the engines
// (scheduler, queue, cancellation, the core service, every API adapter) that run in milliseconds
// and can reach states a real model rarely shows: stalls, mid-stream failures, crashes, slow or
// failing loads, exact memory figures. It follows the engine contract (core/events.ts order, the
// core's tool and context rules), so an adapter that works on it works on a real engine.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { completionBudget } from "../../src/core/context.ts";
import type { EventSink, FinishReason } from "../../src/core/events.ts";
import type { ChatPrompt, EmbeddingInput, EmbeddingResult, GenerationRequest } from "../../src/core/request.ts";
import { timings } from "../../src/core/timings.ts";
import { planChat } from "../../src/core/tools.ts";
import type { Engine, LoadedModel, ResolvedLoadSettings, MemoryEstimate, ModelDescriptor, ModelInfo } from "../../src/engines/types.ts";
import { EngineError, GenerationAbortedError, ModelLoadError } from "../../src/errors.ts";

/** One step of a scripted generation. Each `text` piece counts as one generated token. */
export type Step =
  | { text: string }
  | { reasoning: string }
  /** A tool call whose arguments arrive in `pieces` (default: whole). */
  | { toolCall: { name: string; arguments: string; id?: string; pieces?: number } }
  /** A prompt batch was evaluated. */
  | { progress: true }
  | { sleep: number }
  /** Goes quiet until aborted (a generation that makes no progress). */
  | { stall: true }
  /** Goes quiet and ignores abort too (a wedged engine), until `release()` is called on the model. */
  | { wedge: true }
  /** Fails mid-stream with an engine error. */
  | { fail: string }
  /** The model process dies: this and every later generation fail until it is loaded again. */
  | { crash: string };

/** A generation ends with "stop" when its steps run out, "tool_calls" if it called a tool, "length" at max_tokens. */
export interface Script {
  steps: Step[];
  /** Prompt tokens the engine reports as served from its prompt cache (at most the prompt). */
  cachedTokens?: number;
  /** Speculative decoding's counts, reported as the engine would (absent: it was off). */
  drafts?: { draftTokens: number; draftAcceptedTokens: number };
}

export interface FakeModelSpec {
  id: string;
  declaredContext?: number;
  /** Bytes reported by estimateMemory and memoryInUse: weights, and per token of context. */
  modelBytes?: number;
  bytesPerContextToken?: number;
  /** Milliseconds each load takes. */
  loadMs?: number;
  /** Loads fail with this message (until cleared). */
  loadError?: string;
  /** Milliseconds the memory estimate takes (llama.cpp's trial load of a new file runs there). */
  estimateMs?: number;
  /** The estimate fails with this plain (untyped) error, as a trial process stopped under it would. */
  estimateError?: string;
  /** The estimate throws this typed error, as a trial load that crashed does. */
  estimateThrows?: Error;
  /** Milliseconds between two scripted steps (tokens). */
  stepMs?: number;
  /** The chat template's text the model reports (none by default). */
  chatTemplate?: string;
  /** The script for a request; default: "Hello" " world". */
  script?: (request: GenerationRequest) => Script;
}

const DEFAULT_SCRIPT: Script = { steps: [{ text: "Hello" }, { text: " world" }] };

/** Whitespace-separated words are tokens; a chat prompt adds 3 per message for its template and 1 per 16 bytes of tools. */
function countTokens(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

function chatTokens(prompt: ChatPrompt): number {
  return prompt.messages.reduce((n, m) => n + 3 + countTokens(m.content), 0) + (prompt.tools ? Math.ceil(JSON.stringify(prompt.tools).length / 16) : 0);
}

const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

export class FakeLoadedModel implements LoadedModel {
  /** Generations running now, and every request this model received. */
  running = 0;
  readonly requests: GenerationRequest[] = [];
  unloaded = false;
  private crashed: string | undefined;
  private wedged: (() => void)[] = [];

  constructor(readonly descriptor: ModelDescriptor, readonly options: ResolvedLoadSettings, private readonly spec: FakeModelSpec, private readonly memory: MemoryEstimate) {}

  get contextLength(): number {
    return this.options.contextLength;
  }

  async countChatTokens(prompt: ChatPrompt): Promise<number> {
    return chatTokens(prompt);
  }

  countTokens(text: string): number {
    return countTokens(text);
  }

  tokenize(text: string): number[] {
    return text.split(/\s+/).filter(Boolean).map((w) => w.length);
  }

  detokenize(tokens: number[]): string {
    return tokens.map((n) => "x".repeat(n)).join(" ");
  }

  /** Lets every wedged generation go (as a stuck engine that finally returns). */
  release(): void {
    for (const go of this.wedged.splice(0)) go();
  }

  /** Generations that ended on the core's soft stop before their script ran out. */
  stoppedEarly = 0;
  /** The soft-stop signal each generation received (undefined without stop strings). */
  readonly stopSignals: (AbortSignal | undefined)[] = [];

  async generate(request: GenerationRequest, emit: EventSink, signal: AbortSignal, stop?: AbortSignal): Promise<void> {
    if (this.unloaded) throw new EngineError(`model '${this.descriptor.id}' was unloaded`);
    if (this.crashed) throw new EngineError(`generation failed: ${this.crashed}`, "worker_crashed");
    const promptTokens = request.kind === "chat" ? chatTokens(request) : countTokens(request.prompt);
    if (request.kind === "chat") planChat(request);
    const budget = completionBudget(promptTokens, request.maxTokens, this.contextLength, request.kind === "chat" ? "messages" : "prompt");
    this.requests.push(request);
    this.stopSignals.push(stop);
    const script = (this.spec.script ?? (() => DEFAULT_SCRIPT))(request);
    const started = performance.now();
    let first: number | undefined;
    let tokens = 0;
    let reasoningTokens = 0;
    let calls = 0;
    let finish: FinishReason = "stop";
    this.running++;
    try {
      for (const step of script.steps) {
        if (signal.aborted) throw new GenerationAbortedError();
        if (this.spec.stepMs) await sleep(this.spec.stepMs, signal);
        if (signal.aborted) throw new GenerationAbortedError();
        if (tokens >= budget) { finish = "length"; break; }
        if (stop?.aborted) { this.stoppedEarly++; finish = "stop"; break; }
        if ("text" in step || "reasoning" in step) {
          first ??= performance.now();
          tokens++;
          if ("reasoning" in step) reasoningTokens++;
          emit("text" in step ? { type: "text", text: step.text } : { type: "reasoning", text: step.reasoning });
        } else if ("toolCall" in step) {
          const c = step.toolCall;
          const index = calls++;
          emit({ type: "tool_call_start", index, id: c.id ?? `call_fake${index}`, name: c.name });
          const size = Math.max(1, Math.ceil(c.arguments.length / Math.max(1, c.pieces ?? 1)));
          for (let at = 0; at < c.arguments.length; at += size) {
            emit({ type: "tool_call_delta", index, arguments: c.arguments.slice(at, at + size) });
            tokens++;
          }
          emit({ type: "tool_call_end", index });
          finish = "tool_calls";
        } else if ("progress" in step) emit({ type: "progress" });
        else if ("sleep" in step) await sleep(step.sleep, signal);
        else if ("stall" in step) await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
        else if ("wedge" in step) await new Promise<void>((resolve) => this.wedged.push(resolve));
        else if ("fail" in step) throw new EngineError(`generation failed: ${step.fail}`);
        else if ("crash" in step) {
          this.crashed = step.crash;
          throw new EngineError(`generation failed: ${step.crash}`, "worker_crashed");
        }
      }
      if (signal.aborted) throw new GenerationAbortedError();
      const end = performance.now();
      const cachedTokens = Math.min(script.cachedTokens ?? 0, promptTokens);
      emit({ type: "usage", usage: { promptTokens, completionTokens: tokens, reasoningTokens, cachedTokens, ...script.drafts }, timings: timings(promptTokens, tokens, (first ?? end) - started, end - (first ?? end)) });
      emit({ type: "finish", reason: finish });
    } finally {
      this.running--;
    }
  }

  /** Raw, unnormalized vectors, as an engine pools them: [characters or sum of ids, tokens, 1]. */
  async embed(inputs: readonly EmbeddingInput[], signal?: AbortSignal): Promise<EmbeddingResult> {
    if (signal?.aborted) throw new GenerationAbortedError();
    const tokens = (x: EmbeddingInput) => (typeof x === "string" ? countTokens(x) : x.length);
    const size = (x: EmbeddingInput) => (typeof x === "string" ? x.length : x.reduce((a, b) => a + b, 0));
    return { vectors: inputs.map((x) => [size(x), tokens(x), 1]), promptTokens: inputs.reduce((n, x) => n + tokens(x), 0) };
  }

  async logprobs(_prefix: number[], continuation: number[]): Promise<number[]> {
    return continuation.map(() => Math.log(0.5));
  }

  memoryInUse(): MemoryEstimate {
    return this.memory;
  }

  async unload(): Promise<void> {
    this.unloaded = true;
    this.release();
  }
}

export class FakeEngine implements Engine {
  readonly name = "fake";
  readonly format = "gguf" as const;
  readonly specs = new Map<string, FakeModelSpec>();
  /** Ids in the order loads started and unloads finished. */
  readonly loads: string[] = [];
  readonly unloads: string[] = [];
  /** The model instance of each load, newest last. */
  readonly instances: FakeLoadedModel[] = [];
  disposed = false;

  /** Each fake model has an (empty) file, since the scheduler refuses models whose file is gone. */
  private readonly dir = mkdtempSync(join(tmpdir(), "lmx-fake-models-"));

  constructor(specs: FakeModelSpec[]) {
    for (const s of specs) {
      this.specs.set(s.id, s);
      writeFileSync(this.path(s.id), "");
    }
  }

  path(id: string): string {
    return join(this.dir, `${encodeURIComponent(id)}.gguf`);
  }

  descriptors(): ModelDescriptor[] {
    return [...this.specs.keys()].map((id) => ({ id, format: "gguf", path: this.path(id) }));
  }

  private spec(d: ModelDescriptor): FakeModelSpec {
    const s = this.specs.get(d.id);
    if (!s) throw new ModelLoadError(`no fake model '${d.id}'`);
    return s;
  }

  /** The newest loaded instance of a model. */
  model(id: string): FakeLoadedModel {
    const m = this.instances.findLast((x) => x.descriptor.id === id);
    if (!m) throw new Error(`'${id}' was never loaded`);
    return m;
  }

  async version(): Promise<string> {
    return "fake 1";
  }

  async inspect(d: ModelDescriptor): Promise<ModelInfo> {
    const s = this.spec(d);
    return { architecture: "fake", declaredContextLength: s.declaredContext ?? 2048, hasChatTemplate: true, chatTemplate: s.chatTemplate, isEmbeddingModel: false, sizeBytes: s.modelBytes ?? 1000, quantization: "F32" };
  }

  async estimateMemory(d: ModelDescriptor, options: ResolvedLoadSettings): Promise<MemoryEstimate> {
    const s = this.spec(d);
    if (s.estimateMs) await Bun.sleep(s.estimateMs);
    if (s.estimateError) throw new Error(s.estimateError);
    if (s.estimateThrows) throw s.estimateThrows;
    return { modelBytes: s.modelBytes ?? 1000, contextBytes: (s.bytesPerContextToken ?? 0) * options.contextLength * options.parallel, gpuBytes: 0 };
  }

  async load(d: ModelDescriptor, options: ResolvedLoadSettings): Promise<LoadedModel> {
    const s = this.spec(d);
    this.loads.push(d.id);
    if (s.loadMs) await Bun.sleep(s.loadMs);
    if (s.loadError) throw new ModelLoadError(`cannot load ${d.id}: ${s.loadError}`);
    const model = new FakeLoadedModel(d, options, s, await this.estimateMemory(d, options));
    const unload = model.unload.bind(model);
    model.unload = async () => {
      await unload();
      this.unloads.push(d.id);
    };
    this.instances.push(model);
    return model;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
  }
}
