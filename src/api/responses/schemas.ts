// Request shapes of the OpenAI Responses API (POST /v1/responses). These valibot schemas are the
// validator, the TypeScript types and the published docs at once. Objects are loose: fields a
// client sends that LMX cannot act on and that cannot change the answer pass (Codex sends
// `prompt_cache_key`, `client_metadata`, `include` entries); the few that would change it are
// refused by name in requests.ts.
import * as v from "valibot";

const MAX_TOKENS_LIMIT = 1_048_576;
/** Most items in `input` (messages, calls, outputs): far more than any context holds. */
export const MAX_INPUT_ITEMS = 20_000;
/** Most tools, namespaces' nested tools included. */
export const MAX_TOOLS = 1024;
/** OpenAI's metadata bounds. */
export const MAX_METADATA_KEYS = 16;

const Text = v.string();
const Id = v.pipe(v.string(), v.minLength(1), v.maxLength(256));
/** Function and custom tool names: OpenAI's rule, with '.' and ':' which MCP-style names use. */
const ToolName = v.pipe(v.string(), v.regex(/^[a-zA-Z0-9_.:-]{1,128}$/, "must be 1-128 letters, digits, '_', '.', ':' or '-'"));

/** A content part: which types a text model can take is decided in requests.ts, with a clear 400 for the rest. */
const Part = v.looseObject({ type: v.string(), text: v.optional(v.unknown()) });
const Parts = v.array(Part);
const Content = v.union([Text, Parts], "content must be a string or a list of content parts");

const MessageItem = v.looseObject({
  type: v.literal("message"),
  role: v.picklist(["user", "assistant", "system", "developer"]),
  content: Content,
  id: v.optional(Id),
  status: v.optional(v.string()),
});

const FunctionCallItem = v.looseObject({
  type: v.literal("function_call"),
  call_id: Id,
  name: ToolName,
  arguments: Text,
  namespace: v.optional(v.string()),
  id: v.optional(Id),
  status: v.optional(v.string()),
});

const FunctionCallOutputItem = v.looseObject({
  type: v.literal("function_call_output"),
  call_id: Id,
  output: Content,
  id: v.optional(Id),
  status: v.optional(v.string()),
});

const CustomToolCallItem = v.looseObject({
  type: v.literal("custom_tool_call"),
  call_id: Id,
  name: ToolName,
  input: Text,
  namespace: v.optional(v.string()),
  id: v.optional(Id),
});

const CustomToolCallOutputItem = v.looseObject({
  type: v.literal("custom_tool_call_output"),
  call_id: Id,
  output: Content,
  id: v.optional(Id),
});

const ReasoningText = v.looseObject({ type: v.string(), text: Text });
const ReasoningItem = v.looseObject({
  type: v.literal("reasoning"),
  id: v.optional(Id),
  summary: v.optional(v.array(ReasoningText)),
  content: v.optional(v.nullable(v.array(ReasoningText))),
  /** Another server's sealed thinking: LMX cannot read it and leaves it out. */
  encrypted_content: v.optional(v.nullable(v.string())),
});

/**
 * Records of hosted tools (run by OpenAI's servers) and of client-side shells LMX never offers: a
 * conversation carried over from elsewhere may hold them; they are left out of the prompt.
 */
export const HOSTED_ITEM_TYPES = [
  "web_search_call", "file_search_call", "computer_call", "computer_call_output", "code_interpreter_call",
  "image_generation_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
  "apply_patch_call", "apply_patch_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
  "mcp_approval_response", "tool_search_call", "tool_search_output", "compaction",
] as const;
const HostedItem = v.looseObject({ type: v.picklist(HOSTED_ITEM_TYPES) });

const ItemReference = v.looseObject({ type: v.literal("item_reference"), id: Id });

/** A message without `type` (the SDK's EasyInputMessage) is a message. */
const withMessageType = v.transform((x: Record<string, unknown>) => (x.type === undefined && "role" in x ? { ...x, type: "message" } : x));

export const InputItem = v.pipe(
  v.looseObject({ type: v.optional(v.string()) }),
  withMessageType,
  v.variant("type", [MessageItem, FunctionCallItem, FunctionCallOutputItem, CustomToolCallItem, CustomToolCallOutputItem, ReasoningItem, HostedItem, ItemReference]),
);
export type InputItem = v.InferOutput<typeof InputItem>;

const JsonSchemaObject = v.record(v.string(), v.unknown());

const FunctionTool = v.looseObject({
  type: v.literal("function"),
  name: ToolName,
  description: v.optional(v.nullable(v.string())),
  parameters: v.optional(v.nullable(JsonSchemaObject)),
  strict: v.optional(v.nullable(v.boolean())),
});
export type FunctionTool = v.InferOutput<typeof FunctionTool>;

/** Free-text input (Codex's apply_patch). A `format` grammar is accepted; the model writes free text. */
const CustomTool = v.looseObject({
  type: v.literal("custom"),
  name: ToolName,
  description: v.optional(v.nullable(v.string())),
  format: v.optional(v.unknown()),
});
export type CustomTool = v.InferOutput<typeof CustomTool>;

const NamespaceTool = v.looseObject({
  type: v.literal("namespace"),
  name: ToolName,
  description: v.optional(v.nullable(v.string())),
  tools: v.pipe(v.array(v.variant("type", [FunctionTool, CustomTool])), v.maxLength(MAX_TOOLS)),
});
export type NamespaceTool = v.InferOutput<typeof NamespaceTool>;

/** Tools OpenAI's servers run (web_search, file_search, code_interpreter, mcp, …): accepted, never offered to the model. */
const HostedTool = v.looseObject({ type: v.pipe(v.string(), v.check((t) => t !== "function" && t !== "custom" && t !== "namespace")) });

const Tool = v.variant("type", [FunctionTool, CustomTool, NamespaceTool, HostedTool]);
export type Tool = FunctionTool | CustomTool | NamespaceTool | { type: string };

/** `auto` / `none` / `required`, or an object: `{type: "function"|"custom", name}`, `{type: "allowed_tools", mode, tools}`; checked in tools.ts. */
const ToolChoice = v.union([
  v.picklist(["none", "auto", "required"]),
  v.looseObject({
    type: v.string(),
    name: v.optional(v.string()),
    mode: v.optional(v.string()),
    tools: v.optional(v.pipe(v.array(v.looseObject({ type: v.string(), name: v.optional(v.string()) })), v.maxLength(MAX_TOOLS))),
  }),
], "tool_choice must be 'auto', 'none', 'required' or a tool choice object");
export type ToolChoiceBody = v.InferOutput<typeof ToolChoice>;

const TextFormat = v.variant("type", [
  v.looseObject({ type: v.literal("text") }),
  v.looseObject({ type: v.literal("json_object") }),
  v.looseObject({
    type: v.literal("json_schema"),
    name: v.optional(v.string()),
    description: v.optional(v.string()),
    schema: JsonSchemaObject,
    strict: v.optional(v.nullable(v.boolean())),
  }),
]);

const Metadata = v.pipe(
  v.record(v.pipe(v.string(), v.maxLength(64, "metadata keys are at most 64 characters")), v.pipe(v.string(), v.maxLength(512, "metadata values are at most 512 characters"))),
  v.maxEntries(MAX_METADATA_KEYS, `metadata takes at most ${MAX_METADATA_KEYS} keys`),
);

const range = (min: number, max: number) => v.optional(v.nullable(v.pipe(v.number(), v.minValue(min), v.maxValue(max))));

export const ResponseBody = v.looseObject({
  model: v.pipe(v.string(), v.minLength(1)),
  /** A string is one user message; the items are validated one by one, so an error names the item's field. */
  input: v.optional(v.pipe(
    v.union([Text, v.array(v.unknown())], "input must be a string or a list of items"),
    v.transform((x): unknown[] => (typeof x === "string" ? [{ type: "message", role: "user", content: x }] : x)),
    v.array(InputItem),
    v.maxLength(MAX_INPUT_ITEMS, `input takes at most ${MAX_INPUT_ITEMS} items`),
  )),
  instructions: v.optional(v.nullable(Text)),
  max_output_tokens: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_TOKENS_LIMIT)))),
  temperature: range(0, 2),
  top_p: range(0, 1),
  parallel_tool_calls: v.optional(v.nullable(v.boolean())),
  tools: v.optional(v.nullable(v.pipe(v.array(Tool), v.maxLength(MAX_TOOLS, `at most ${MAX_TOOLS} tools`)))),
  tool_choice: v.optional(v.nullable(ToolChoice)),
  text: v.optional(v.nullable(v.looseObject({ format: v.optional(v.nullable(TextFormat)), verbosity: v.optional(v.nullable(v.string())) }))),
  reasoning: v.optional(v.nullable(v.looseObject({
    effort: v.optional(v.nullable(v.picklist(["none", "minimal", "low", "medium", "high", "xhigh"]))),
    summary: v.optional(v.nullable(v.string())),
  }))),
  metadata: v.optional(v.nullable(Metadata)),
  user: v.optional(v.nullable(v.string())),
  truncation: v.optional(v.nullable(v.picklist(["auto", "disabled"]))),
  include: v.optional(v.nullable(v.pipe(v.array(v.string()), v.maxLength(64)))),
  store: v.optional(v.nullable(v.boolean())),
  previous_response_id: v.optional(v.nullable(Id)),
  stream: v.optional(v.nullable(v.boolean())),
});
export type ResponseBody = v.InferOutput<typeof ResponseBody>;

export const ResponseIdParams = v.object({ id: Id });

export const InputItemsQuery = v.looseObject({
  limit: v.optional(v.pipe(v.string(), v.transform(Number), v.number("limit must be a number"), v.integer("limit must be an integer"), v.minValue(1), v.maxValue(100))),
  order: v.optional(v.picklist(["asc", "desc"])),
  after: v.optional(Id),
});
