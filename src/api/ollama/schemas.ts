// Request shapes of Ollama's API (/api/*). These valibot schemas are the validator, the TypeScript
// types and the published docs at once. Bounds follow the OpenAI adapter's.
import * as v from "valibot";
import { MAX_EMBEDDING_INPUTS } from "../../core/embeddings.ts";

const MAX_TOKENS_LIMIT = 1_048_576;
/** Longest model name, duration string or template accepted: far beyond any real one. */
const MAX_NAME = 512;

const int = (min: number, max: number) => v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max))));
const range = (min: number, max: number) => v.optional(v.nullable(v.pipe(v.number(), v.minValue(min), v.maxValue(max))));
const flag = v.optional(v.nullable(v.boolean()));
const Name = v.pipe(v.string(), v.minLength(1, "must not be empty"), v.maxLength(MAX_NAME));
const JsonObject = v.record(v.string(), v.unknown());

/**
 * `options`: the sampling settings LMX honours, plus Ollama's others. Those only change how the
 * model runs (num_gpu, num_thread, use_mmap …) are accepted and ignored; those that would change
 * the answer are checked in requests.ts.
 */
export const Options = v.looseObject({
  temperature: range(0, 2),
  top_p: range(0, 1),
  top_k: int(0, 100_000),
  min_p: range(0, 1),
  /** -1 and -2 (Ollama's "no limit" and "fill the context"): until the model stops or the context is full. */
  num_predict: int(-2, MAX_TOKENS_LIMIT),
  num_ctx: int(1, MAX_TOKENS_LIMIT),
  stop: v.optional(v.nullable(v.pipe(v.array(v.string()), v.maxLength(16, "at most 16 stop strings")))),
  seed: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(-(2 ** 53)), v.maxValue(2 ** 53)))),
  repeat_penalty: range(0, 10),
  presence_penalty: range(-2, 2),
  frequency_penalty: range(-2, 2),
  repeat_last_n: int(-1, MAX_TOKENS_LIMIT),
  typical_p: range(0, 1),
  tfs_z: range(0, 100),
  mirostat: int(0, 2),
  mirostat_tau: range(0, 100),
  mirostat_eta: range(0, 100),
  num_keep: int(-1, MAX_TOKENS_LIMIT),
  num_batch: int(1, 65_536),
  num_gpu: int(-1, 100_000),
  main_gpu: int(0, 1024),
  num_thread: int(0, 4096),
  low_vram: flag,
  use_mmap: flag,
  use_mlock: flag,
  numa: flag,
  vocab_only: flag,
  f16_kv: flag,
  penalize_newline: flag,
});
export type Options = v.InferOutput<typeof Options>;

/** How long the model stays loaded after the request: seconds, or a Go duration ("5m", "1h30m", "-1"). */
const KeepAlive = v.optional(v.nullable(v.union([v.number(), v.pipe(v.string(), v.maxLength(64))])));

/** `"json"`, a JSON schema, or `""` (plain text). */
const Format = v.optional(v.nullable(v.union([v.literal("json"), v.literal(""), JsonObject])));

/** Thinking on or off, or how hard (the models that have levels). */
const Think = v.optional(v.nullable(v.union([v.boolean(), v.picklist(["low", "medium", "high"])])));

const Images = v.optional(v.nullable(v.array(v.string())));

const ToolCall = v.looseObject({
  /** LMX extension: the id this server gave the call, for tool results to point back to it. */
  id: v.optional(v.nullable(v.string())),
  function: v.looseObject({
    index: v.optional(v.nullable(v.number())),
    name: v.pipe(v.string(), v.minLength(1)),
    /** An object, as Ollama sends it; a string holding one is accepted too. */
    arguments: v.optional(v.nullable(v.union([JsonObject, v.string()]))),
  }),
});

export const ChatMessage = v.looseObject({
  role: v.picklist(["system", "user", "assistant", "tool"]),
  content: v.optional(v.nullable(v.string())),
  images: Images,
  tool_calls: v.optional(v.nullable(v.array(ToolCall))),
  /** The model's thinking in that turn, as this server returned it. */
  thinking: v.optional(v.nullable(v.string())),
  /** On a tool result: the tool that produced it (Ollama's way to match a result to its call). */
  tool_name: v.optional(v.nullable(v.string())),
  /** LMX extension on a tool result: the id of the call it answers (see ToolCall.id). */
  tool_call_id: v.optional(v.nullable(v.string())),
});
export type ChatMessage = v.InferOutput<typeof ChatMessage>;

const Tool = v.looseObject({
  type: v.optional(v.literal("function")),
  function: v.looseObject({
    name: v.pipe(v.string(), v.regex(/^[a-zA-Z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '_', '.' or '-'")),
    description: v.optional(v.nullable(v.string())),
    parameters: v.optional(v.nullable(JsonObject)),
  }),
});

/** LMX extension with the OpenAI meaning: Ollama has no way to require or name the call. */
const ToolChoice = v.optional(v.nullable(v.union([
  v.picklist(["none", "auto", "required"]),
  v.object({ type: v.literal("function"), function: v.object({ name: v.string() }) }),
])));

const Common = {
  model: Name,
  options: v.optional(v.nullable(Options)),
  stream: flag,
  keep_alive: KeepAlive,
  format: Format,
  think: Think,
};

export const ChatBody = v.looseObject({
  ...Common,
  /** Empty or absent: the model is loaded (or, with keep_alive 0, unloaded) and nothing is generated. */
  messages: v.optional(v.nullable(v.array(ChatMessage))),
  tools: v.optional(v.nullable(v.array(Tool))),
  tool_choice: ToolChoice,
});
export type ChatBody = v.InferOutput<typeof ChatBody>;

export const GenerateBody = v.looseObject({
  ...Common,
  /** Empty or absent: the model is loaded (or, with keep_alive 0, unloaded) and nothing is generated. */
  prompt: v.optional(v.nullable(v.string())),
  suffix: v.optional(v.nullable(v.string())),
  system: v.optional(v.nullable(v.string())),
  template: v.optional(v.nullable(v.string())),
  raw: flag,
  images: Images,
  context: v.optional(v.nullable(v.array(v.number()))),
});
export type GenerateBody = v.InferOutput<typeof GenerateBody>;

const EmbedText = v.pipe(v.string(), v.minLength(1, "an input must not be an empty string"));

export const EmbedBody = v.looseObject({
  model: Name,
  input: v.union([
    EmbedText,
    v.pipe(v.array(EmbedText), v.minLength(1, "input must not be an empty list"), v.maxLength(MAX_EMBEDDING_INPUTS, `input takes at most ${MAX_EMBEDDING_INPUTS} items`)),
  ], "input must be a string or a list of strings"),
  truncate: flag,
  dimensions: int(1, 1_000_000),
  options: v.optional(v.nullable(Options)),
  keep_alive: KeepAlive,
});
export type EmbedBody = v.InferOutput<typeof EmbedBody>;

export const EmbeddingsBody = v.looseObject({
  model: Name,
  prompt: EmbedText,
  options: v.optional(v.nullable(Options)),
  keep_alive: KeepAlive,
});
export type EmbeddingsBody = v.InferOutput<typeof EmbeddingsBody>;

/** A request naming one model: `model`, or `name` as older clients send it. */
export const ModelRef = v.looseObject({
  model: v.optional(Name),
  name: v.optional(Name),
  verbose: flag,
});
export type ModelRef = v.InferOutput<typeof ModelRef>;

/** `node=local`: this server's own loaded models only (what one LMX asks of another). */
export const PsQuery = v.looseObject({
  node: v.optional(v.picklist(["local"], "node may only be 'local'")),
});

export const PullBody = v.looseObject({
  model: v.optional(Name),
  name: v.optional(Name),
  insecure: flag,
  stream: flag,
});
export type PullBody = v.InferOutput<typeof PullBody>;

export const CopyBody = v.looseObject({ source: Name, destination: Name });
