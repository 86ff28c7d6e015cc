// Request shapes of the OpenAI-compatible API. These valibot schemas are the validator, the
// TypeScript types and (through @elysiajs/openapi) the published docs at once.
import * as v from "valibot";
import { MAX_EMBEDDING_INPUTS } from "../../core/embeddings.ts";

const MAX_TOKENS_LIMIT = 1_048_576;
/** Most choices one request may ask for (`n`): each runs on its own sequence. */
export const MAX_CHOICES = 8;
/** Most entries in `logit_bias` (OpenAI allows 300; a bias table is cheap, a huge one is not). */
export const MAX_LOGIT_BIAS = 1024;

const TextPart = v.object({ type: v.literal("text"), text: v.string() });
const OtherPart = v.looseObject({ type: v.string() });
/** Message content: a string or an array of parts; only text parts can be served by a text model. */
const Content = v.union([v.string(), v.array(v.union([TextPart, OtherPart]))]);

const ToolCallSchema = v.object({
  id: v.pipe(v.string(), v.minLength(1)),
  type: v.optional(v.literal("function")),
  function: v.object({ name: v.pipe(v.string(), v.minLength(1)), arguments: v.string() }),
});

export const ChatMessageSchema = v.variant("role", [
  v.looseObject({ role: v.picklist(["system", "developer"]), content: Content, name: v.optional(v.string()) }),
  v.looseObject({ role: v.literal("user"), content: Content, name: v.optional(v.string()) }),
  v.looseObject({
    role: v.literal("assistant"),
    content: v.optional(v.nullable(Content)),
    tool_calls: v.optional(v.nullable(v.array(ToolCallSchema))),
    name: v.optional(v.string()),
    /** The model's thinking in that turn, as this server returned it (also accepted as `reasoning`). */
    reasoning_content: v.optional(v.nullable(v.string())),
    reasoning: v.optional(v.nullable(v.string())),
  }),
  v.looseObject({ role: v.literal("tool"), content: Content, tool_call_id: v.pipe(v.string(), v.minLength(1)) }),
]);
export type ChatMessageBody = v.InferOutput<typeof ChatMessageSchema>;

const JsonSchemaObject = v.record(v.string(), v.unknown());

const FunctionTool = v.object({
  type: v.literal("function"),
  function: v.object({
    name: v.pipe(v.string(), v.regex(/^[a-zA-Z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '_', '.' or '-'")),
    description: v.optional(v.string()),
    parameters: v.optional(JsonSchemaObject),
    strict: v.optional(v.nullable(v.boolean())),
  }),
});

const ToolChoiceSchema = v.union([
  v.picklist(["none", "auto", "required"]),
  v.object({ type: v.literal("function"), function: v.object({ name: v.string() }) }),
]);

const ResponseFormatSchema = v.variant("type", [
  v.object({ type: v.literal("text") }),
  v.object({ type: v.literal("json_object") }),
  v.object({
    type: v.literal("json_schema"),
    json_schema: v.object({
      name: v.optional(v.string()),
      description: v.optional(v.string()),
      schema: v.optional(JsonSchemaObject),
      strict: v.optional(v.nullable(v.boolean())),
    }),
  }),
]);

const Stop = v.optional(v.nullable(v.union([v.string(), v.pipe(v.array(v.string()), v.maxLength(16))])));
const count = (max: number) => v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(max))));
const range = (min: number, max: number) => v.optional(v.nullable(v.pipe(v.number(), v.minValue(min), v.maxValue(max))));

/** Token id (as a decimal string, OpenAI's shape) → bias added to its logit; -100 bans it, 100 all but forces it. */
const LogitBias = v.optional(v.nullable(v.pipe(
  v.record(v.pipe(v.string(), v.regex(/^\d{1,9}$/, "keys must be token ids (decimal integers)")), v.pipe(v.number(), v.minValue(-100), v.maxValue(100))),
  v.maxEntries(MAX_LOGIT_BIAS, `at most ${MAX_LOGIT_BIAS} entries`),
)));

/** Sampling fields shared by chat and text completions. */
const SamplingFields = {
  model: v.pipe(v.string(), v.minLength(1)),
  max_tokens: count(MAX_TOKENS_LIMIT),
  temperature: range(0, 2),
  top_p: range(0, 1),
  top_k: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100_000)))),
  min_p: range(0, 1),
  seed: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(-(2 ** 53)), v.maxValue(2 ** 53)))),
  stop: Stop,
  presence_penalty: range(-2, 2),
  frequency_penalty: range(-2, 2),
  repeat_penalty: range(0, 10),
  /** LMX extension as in llama-server: never sample an end-of-generation token (benchmarks). */
  ignore_eos: v.optional(v.nullable(v.boolean())),
  stream: v.optional(v.nullable(v.boolean())),
  stream_options: v.optional(v.nullable(v.object({ include_usage: v.optional(v.boolean()) }))),
  n: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_CHOICES, `at most ${MAX_CHOICES} choices per request`)))),
  logit_bias: LogitBias,
  user: v.optional(v.string()),
};

export const ChatCompletionBody = v.looseObject({
  ...SamplingFields,
  messages: v.pipe(v.array(ChatMessageSchema), v.minLength(1, "must contain at least one message")),
  max_completion_tokens: count(MAX_TOKENS_LIMIT),
  tools: v.optional(v.nullable(v.array(FunctionTool))),
  tool_choice: v.optional(v.nullable(ToolChoiceSchema)),
  parallel_tool_calls: v.optional(v.nullable(v.boolean())),
  response_format: v.optional(v.nullable(ResponseFormatSchema)),
  reasoning_effort: v.optional(v.nullable(v.picklist(["none", "minimal", "low", "medium", "high"]))),
  /** Extra variables for the model's chat template, e.g. {"enable_thinking": false} (vLLM and llama-server take the same). */
  chat_template_kwargs: v.optional(v.nullable(v.pipe(v.record(v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, "must be a template variable name")), v.unknown()), v.maxEntries(32, "at most 32 variables")))),
  /** LMX extension (llama-server has it too): where thoughts go for this request. */
  reasoning_format: v.optional(v.nullable(v.picklist(["separate", "inline", "none"]))),
  logprobs: v.optional(v.nullable(v.boolean())),
  top_logprobs: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(20)))),
});
export type ChatCompletionBody = v.InferOutput<typeof ChatCompletionBody>;

export const CompletionBody = v.looseObject({
  ...SamplingFields,
  prompt: v.union([v.string(), v.pipe(v.array(v.string()), v.minLength(1), v.maxLength(64))]),
  echo: v.optional(v.nullable(v.boolean())),
  /** Legacy logprobs: how many alternatives per token (0-5); null or absent: none. */
  logprobs: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(5)))),
  suffix: v.optional(v.nullable(v.string())),
  best_of: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_CHOICES)))),
});
export type CompletionBody = v.InferOutput<typeof CompletionBody>;

const EmbeddingText = v.pipe(v.string(), v.minLength(1, "an input must not be an empty string"));
/** Token ids: whether each is in the model's vocabulary is the engine's check; a list longer than any context, ours. */
const EmbeddingTokens = v.pipe(
  v.array(v.pipe(v.number(), v.integer("token ids are integers"), v.minValue(0, "token ids are not negative"), v.maxValue(2 ** 31 - 1, "token id out of range"))),
  v.minLength(1, "a list of token ids must not be empty"),
  v.maxLength(MAX_TOKENS_LIMIT),
);
const EmbeddingList = <T extends v.GenericSchema>(item: T) =>
  v.pipe(v.array(item), v.minLength(1, "input must not be an empty list"), v.maxLength(MAX_EMBEDDING_INPUTS, `input takes at most ${MAX_EMBEDDING_INPUTS} items`));

export const EmbeddingBody = v.looseObject({
  model: v.pipe(v.string(), v.minLength(1)),
  input: v.union(
    [EmbeddingText, EmbeddingList(EmbeddingText), EmbeddingTokens, EmbeddingList(EmbeddingTokens)],
    "input must be a string, a list of strings, a list of token ids, or a list of lists of token ids",
  ),
  encoding_format: v.optional(v.nullable(v.picklist(["float", "base64"]))),
  dimensions: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1)))),
  user: v.optional(v.string()),
});
export type EmbeddingBody = v.InferOutput<typeof EmbeddingBody>;
