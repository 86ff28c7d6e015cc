// The one interface every inference engine implements. The API and the scheduler only see these
// types, so they never know whether llama.cpp or MLX answered.

import type { ResolvedLoadSettings } from "./load-settings.ts";

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

export type ChatRole = "system" | "user" | "assistant" | "tool";

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text of the arguments, as OpenAI sends it. */
  arguments: string;
}

export type ChatMessage =
  | { role: "system"; content: string }
  | { role: "user"; content: string }
  | { role: "assistant"; content: string; toolCalls?: ToolCall[] }
  | { role: "tool"; content: string; toolCallId: string };

export interface ToolDefinition {
  name: string;
  description?: string;
  /** JSON schema of the parameters object. */
  parameters?: JsonSchema;
}

export type ToolChoice = "auto" | "none" | "required" | { name: string };

export type JsonSchema = { [key: string]: unknown };

export type ResponseFormat = { type: "text" } | { type: "json_object" } | { type: "json_schema"; schema: JsonSchema; name?: string };

export interface SamplingOptions {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  seed?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  repeatPenalty?: number;
  stop?: string[];
  /** Never sample end-of-generation tokens, so generation runs to maxTokens (llama-server's ignore_eos). */
  ignoreEos?: boolean;
}

export interface ChatRequest extends SamplingOptions {
  messages: ChatMessage[];
  tools?: ToolDefinition[];
  toolChoice?: ToolChoice;
  responseFormat?: ResponseFormat;
}

export interface CompletionRequest extends SamplingOptions {
  prompt: string;
}

export type FinishReason = "stop" | "length" | "tool_calls";

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface Timings {
  /** Milliseconds spent evaluating the prompt, up to the first generated token. */
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

export interface GenerationResult {
  text: string;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  usage: Usage;
  timings: Timings;
}

export interface GenerationHooks {
  /** Called with each piece of generated text as soon as it is final (never a partial UTF-8 char or a partial stop string). */
  onText?: (text: string) => void;
  signal?: AbortSignal;
}

export interface EmbeddingResult {
  vectors: number[][];
  promptTokens: number;
}

/** A model loaded by an engine: owns its weights and contexts until unloaded. */
export interface LoadedModel {
  readonly descriptor: ModelDescriptor;
  readonly options: ResolvedLoadSettings;
  /** Context length actually allocated per sequence (engines may round up). */
  readonly contextLength: number;
  /** Tokens a chat request's messages take once the chat template is applied (tools included). */
  countChatTokens(request: ChatRequest): Promise<number>;
  countTokens(text: string): number;
  tokenize(text: string): number[];
  detokenize(tokens: number[]): string;
  /** Generate on one of the model's sequences. The caller (scheduler) guarantees at most `parallel` at once. */
  chat(request: ChatRequest, hooks: GenerationHooks): Promise<GenerationResult>;
  complete(request: CompletionRequest, hooks: GenerationHooks): Promise<GenerationResult>;
  embed(inputs: string[], signal?: AbortSignal): Promise<EmbeddingResult>;
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
  dispose(): Promise<void>;
}
