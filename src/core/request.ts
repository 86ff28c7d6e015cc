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
  /** Strings that end generation; the text before them is the reply. Never empty strings. */
  stop?: string[];
  /** Never sample end-of-generation tokens, so generation runs to maxTokens (llama-server's ignore_eos). */
  ignoreEos?: boolean;
}

/** A conversation rendered with the model's chat template. */
export interface ChatPrompt {
  messages: ChatMessage[];
  tools?: ToolDefinition[];
  toolChoice?: ToolChoice;
  responseFormat?: ResponseFormat;
}

export interface ChatGeneration extends SamplingOptions, ChatPrompt {
  kind: "chat";
}

/** Raw text continued as is, no template. */
export interface TextGeneration extends SamplingOptions {
  kind: "text";
  prompt: string;
}

export type GenerationRequest = ChatGeneration | TextGeneration;

/** Sentence embeddings of a list of inputs. */
export interface EmbeddingResult {
  vectors: number[][];
  promptTokens: number;
}
