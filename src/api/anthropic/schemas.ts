// Request shapes of Anthropic's Messages API (POST /v1/messages and /v1/messages/count_tokens).
// Objects are loose: what clients send that LMX cannot act on (cache_control, citations,
// context_management, container, mcp_servers, service_tier, beta fields) passes; what would
// change the answer and cannot be honoured is refused by name in requests.ts.
import * as v from "valibot";

const MAX_TOKENS_LIMIT = 1_048_576;
/** Most stop sequences per request (each at most 1024 characters, core/stop.ts). */
export const MAX_STOP_SEQUENCES = 64;

/** Prompt caching is Anthropic's own; LMX caches prompt prefixes by itself, so the marker is ignored. */
const CacheControl = v.optional(v.nullable(v.looseObject({ type: v.string() })));

export const TextBlock = v.looseObject({ type: v.literal("text"), text: v.string(), cache_control: CacheControl });
/** Refused in requests.ts with a message that says why: the models served cannot see. */
const ImageBlock = v.looseObject({ type: v.literal("image") });
const DocumentBlock = v.looseObject({ type: v.literal("document") });

const ToolResultBlock = v.looseObject({
  type: v.literal("tool_result"),
  tool_use_id: v.pipe(v.string(), v.minLength(1)),
  content: v.optional(v.union([v.string(), v.array(v.variant("type", [TextBlock, ImageBlock, DocumentBlock]))])),
  is_error: v.optional(v.boolean()),
  cache_control: CacheControl,
});

const ToolUseBlock = v.looseObject({
  type: v.literal("tool_use"),
  id: v.pipe(v.string(), v.minLength(1)),
  name: v.pipe(v.string(), v.minLength(1)),
  input: v.record(v.string(), v.unknown()),
  cache_control: CacheControl,
});

/** Earlier thinking, given back to the template as the turn's reasoning; the signature is not checked. */
const ThinkingBlock = v.looseObject({ type: v.literal("thinking"), thinking: v.string(), signature: v.optional(v.string()) });
/** Thinking Anthropic encrypted: LMX cannot read it, and never produces it. */
const RedactedThinkingBlock = v.looseObject({ type: v.literal("redacted_thinking"), data: v.string() });

export const ContentBlock = v.variant("type", [TextBlock, ImageBlock, DocumentBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, RedactedThinkingBlock]);
export type ContentBlock = v.InferOutput<typeof ContentBlock>;

const Content = v.union([v.string(), v.array(ContentBlock)], "content must be a string or a list of content blocks");

export const MessageParam = v.looseObject({
  /** "system" is not Anthropic's, but Claude Code sends it inside `messages`: it is a system turn. */
  role: v.picklist(["user", "assistant", "system"]),
  content: Content,
});
export type MessageParam = v.InferOutput<typeof MessageParam>;

export const SystemParam = v.union([v.string(), v.array(TextBlock)], "system must be a string or a list of text blocks");

/**
 * A custom tool (`input_schema`, `type` absent or "custom"), or one Anthropic defines and runs
 * (`type` like "web_search_20250305"), which LMX cannot run and leaves out of the prompt.
 */
const Tool = v.looseObject({
  type: v.optional(v.nullable(v.string())),
  name: v.pipe(v.string(), v.regex(/^[a-zA-Z0-9_-]{1,128}$/, "must be 1-128 letters, digits, '_' or '-'")),
  description: v.optional(v.string()),
  input_schema: v.optional(v.record(v.string(), v.unknown())),
  cache_control: CacheControl,
});
export type Tool = v.InferOutput<typeof Tool>;

const parallel = { disable_parallel_tool_use: v.optional(v.boolean()) };
const ToolChoice = v.variant("type", [
  v.looseObject({ type: v.literal("auto"), ...parallel }),
  v.looseObject({ type: v.literal("any"), ...parallel }),
  v.looseObject({ type: v.literal("tool"), name: v.pipe(v.string(), v.minLength(1)), ...parallel }),
  v.looseObject({ type: v.literal("none") }),
]);
export type ToolChoice = v.InferOutput<typeof ToolChoice>;

const Thinking = v.variant("type", [
  /** The budget is not enforced: the thought counts toward max_tokens like any token. */
  v.looseObject({ type: v.literal("enabled"), budget_tokens: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_TOKENS_LIMIT))) }),
  v.looseObject({ type: v.literal("disabled") }),
  v.looseObject({ type: v.literal("adaptive") }),
]);

/** Claude Code's `output_config`: how hard to think, and structured output. */
const OutputConfig = v.looseObject({
  effort: v.optional(v.nullable(v.string())),
  format: v.optional(v.nullable(v.variant("type", [
    v.looseObject({ type: v.literal("json_schema"), schema: v.record(v.string(), v.unknown()) }),
  ]))),
});

/** What the prompt is made of: shared by a generation and a token count. */
const PromptFields = {
  model: v.pipe(v.string(), v.minLength(1)),
  messages: v.pipe(v.array(MessageParam), v.minLength(1, "must contain at least one message")),
  system: v.optional(v.nullable(SystemParam)),
  tools: v.optional(v.nullable(v.array(Tool))),
  tool_choice: v.optional(v.nullable(ToolChoice)),
  thinking: v.optional(v.nullable(Thinking)),
  output_config: v.optional(v.nullable(OutputConfig)),
};

export const MessagesBody = v.looseObject({
  ...PromptFields,
  max_tokens: v.pipe(v.number("max_tokens is required"), v.integer(), v.minValue(1), v.maxValue(MAX_TOKENS_LIMIT)),
  stop_sequences: v.optional(v.nullable(v.pipe(v.array(v.string()), v.maxLength(MAX_STOP_SEQUENCES, `at most ${MAX_STOP_SEQUENCES} stop sequences`)))),
  temperature: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(1)))),
  top_p: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(1)))),
  top_k: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100_000)))),
  stream: v.optional(v.nullable(v.boolean())),
  metadata: v.optional(v.nullable(v.looseObject({ user_id: v.optional(v.nullable(v.string())) }))),
});
export type MessagesBody = v.InferOutput<typeof MessagesBody>;

export const CountTokensBody = v.looseObject(PromptFields);
export type CountTokensBody = v.InferOutput<typeof CountTokensBody>;
