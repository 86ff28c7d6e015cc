// The one interface every inference engine implements. The API and the scheduler only see these
// types, so they never know whether llama.cpp or MLX answered. Requests and the events a
// generation produces are the inference core's (src/core/), shared by every engine and adapter.
import type { EventSink } from "../core/events.ts";
import type { ChatPrompt, EmbeddingInput, EmbeddingResult, GenerationRequest } from "../core/request.ts";

import type { FlashAttentionMode, ResolvedLoadSettings } from "../config/load-settings.ts";

export type { ResolvedLoadSettings };

export type ModelFormat = "gguf" | "mlx";

export interface ModelDescriptor {
  /** Public id used in API requests. */
  id: string;
  format: ModelFormat;
  /** GGUF file (first shard for split files) or MLX folder. */
  path: string;
}

export interface ModelInfo {
  architecture: string | undefined;
  /** Context length the model metadata declares it was trained for. */
  declaredContextLength: number | undefined;
  hasChatTemplate: boolean;
  /** The chat template's text, when the model has one (Ollama's /api/show returns it). */
  chatTemplate?: string;
  /** The parameter count as the model's metadata names it ("0.5B", "8x7B"), when it does. */
  sizeLabel?: string;
  /** The model can produce sentence embeddings natively (encoder or pooling model). */
  isEmbeddingModel: boolean;
  sizeBytes: number;
  quantization: string | undefined;
}

export interface MemoryEstimate {
  /** Bytes of RAM the weights need. */
  modelBytes: number;
  /** Bytes of RAM the KV cache and compute buffers need for the given options. */
  contextBytes: number;
  /** Bytes of accelerator memory, when offloading. */
  gpuBytes: number;
}

export interface SpeculativeStatus {
  mode: "lookup" | "draft";
  /** The draft model's id ("draft" mode). */
  draft?: string;
  draftTokens: number;
  draftAcceptedTokens: number;
}

/** A model loaded by an engine: owns its weights and contexts until unloaded. */
export interface LoadedModel {
  readonly descriptor: ModelDescriptor;
  readonly options: ResolvedLoadSettings;
  /** Context length actually allocated per sequence (engines may round up). */
  readonly contextLength: number;
  /** The flash attention the engine chose ("auto": left to the backend); undefined where it has no such choice (MLX). */
  readonly flashAttention?: FlashAttentionMode;
  /** Speculative decoding and its counts since the load; undefined when off or unsupported. */
  speculative?(): SpeculativeStatus | undefined;
  /** Tokens a chat request's messages take once the chat template is applied (tools included). */
  countChatTokens(prompt: ChatPrompt): Promise<number>;
  countTokens(text: string): number;
  tokenize(text: string): number[];
  detokenize(tokens: number[]): string;
  /**
   * Generates on one of the model's sequences, pushing events to `emit` as they happen (see
   * core/events.ts for their order) and resolving after `finish`. Fails by rejecting with a typed
   * error (GenerationAbortedError once `signal` aborts). Request rules the core checks before
   * (core/tools.ts checkTools) are not checked again. The caller (scheduler) guarantees at most
   * `parallel` at once.
   *
   * `stop` is the soft stop (the core aborts it when a stop string matched, core/stop.ts): the
   * engine ends as if the model had stopped there, without an error: it may drop text still in
   * flight, then emits `usage` counting the tokens generated so far and `finish` "stop" (a
   * finished tool call keeps "tool_calls"). `signal` stays the hard abort: it rejects.
   */
  generate(request: GenerationRequest, emit: EventSink, signal: AbortSignal, stop?: AbortSignal): Promise<void>;
  /**
   * The model's pooled sentence vector of each input, as computed (the core normalizes). Token-id
   * inputs get the same begin/end tokens text would; ids outside the vocabulary and inputs longer
   * than the context are InvalidRequestErrors naming the input's index.
   */
  embed(inputs: readonly EmbeddingInput[], signal?: AbortSignal): Promise<EmbeddingResult>;
  /**
   * Natural-log probabilities of each `continuation` token given everything before it
   * (teacher forcing), on a fresh sequence; the engine adds BOS when the model expects one.
   * Used by the context probe; counts as one running request.
   */
  logprobs(prefix: number[], continuation: number[], signal?: AbortSignal): Promise<number[]>;
  /** Bytes of RAM this model holds now, as far as the engine can tell. */
  memoryInUse(): MemoryEstimate;
  /**
   * For engines whose loaded model can break for good (an MLX worker that keeps crashing): called
   * once with the error requests get from then on; the scheduler then frees the model and marks it failed.
   */
  onFailed?(listener: (err: Error) => void): void;
  unload(): Promise<void>;
}

export interface Engine {
  readonly name: string;
  readonly format: ModelFormat;
  version(): Promise<string>;
  inspect(descriptor: ModelDescriptor): Promise<ModelInfo>;
  estimateMemory(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<MemoryEstimate>;
  load(descriptor: ModelDescriptor, options: ResolvedLoadSettings): Promise<LoadedModel>;
  /**
   * For engines that shard a model across nodes: ends this node's rank of distributed group
   * `group` at once, loading or loaded, because `reason` (another node of the group is gone). A
   * load in progress rejects; a loaded model's requests fail and its onFailed fires. False when
   * this engine holds no rank of that group.
   */
  abandonGroup?(group: string, reason: string): boolean;
  /** For engines that shard a model across nodes: the versions of what computes, which must match on every node of a group. */
  runtimeVersions?(): Promise<Record<string, string | null>>;
  dispose(): Promise<void>;
}
