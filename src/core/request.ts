// The one request type every API adapter builds and every engine serves. Adapters translate their
// wire format into this; nothing here knows about HTTP or about a particular engine.

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text of the arguments, as OpenAI sends it. */
  arguments: string;
}

export type ChatMessage =
  | { role: "system"; content: string }
  | { role: "user"; content: string }
  /** `reasoning`: the model's thinking in that turn, as a client sent it back (reasoning_content). */
  | { role: "assistant"; content: string; toolCalls?: ToolCall[]; reasoning?: string }
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
  /** Strings that end generation; the text before them is the reply. Never empty strings. */
  stop?: string[];
  /** Never sample end-of-generation tokens, so generation runs to maxTokens (llama-server's ignore_eos). */
  ignoreEos?: boolean;
  /** Added to the logits of these token ids before sampling (-100 bans a token, 100 all but forces it). */
  logitBias?: Record<number, number>;
  /** Report each generated token's log-probability with this many top alternatives (0-20); undefined: none. */
  logprobs?: number;
}

/** How much a thinking model thinks: "none" turns thinking off where the template can. */
export type ReasoningEffort = "none" | "minimal" | "low" | "medium" | "high";

/** Where a thinking model's thoughts go: their own field, left in the text as the model wrote them, or dropped. */
export type ReasoningFormat = "separate" | "inline" | "none";

/** A conversation rendered with the model's chat template. */
export interface ChatPrompt {
  messages: ChatMessage[];
  tools?: ToolDefinition[];
  toolChoice?: ToolChoice;
  responseFormat?: ResponseFormat;
  /** More than one tool call per turn (default true); false: at most one. */
  parallelToolCalls?: boolean;
  reasoningEffort?: ReasoningEffort;
  /** Extra variables for the chat template (e.g. enable_thinking); values are JSON. */
  templateKwargs?: Record<string, unknown>;
}

export interface ChatGeneration extends SamplingOptions, ChatPrompt {
  kind: "chat";
  /** Where thoughts go in the result; the server's default when unset. */
  reasoningFormat?: ReasoningFormat;
  /**
   * Most tokens a thought may take before it is closed and the answer begins (Anthropic's
   * thinking.budget_tokens). llama.cpp enforces it; the MLX worker cannot cut a thought short.
   */
  thinkingBudget?: number;
}

/** Raw text continued as is, no template. */
export interface TextGeneration extends SamplingOptions {
  kind: "text";
  prompt: string;
  /** Text after the insertion point: fill-in-the-middle between `prompt` and this (models with FIM tokens). */
  suffix?: string;
  /** Report the prompt's tokens' logprobs too, before the generated ones (echo with logprobs); the first is null. */
  scorePrompt?: boolean;
}

export type GenerationRequest = ChatGeneration | TextGeneration;

/** One input to embed: text, or token ids of the model's vocabulary. */
export type EmbeddingInput = string | readonly number[];

/** Sentence embeddings of a list of inputs. */
export interface EmbeddingResult {
  vectors: number[][];
  promptTokens: number;
}
