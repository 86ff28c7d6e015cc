// Tool and response-format rules every engine shares: which tools a request offers, whether
// tool_choice forces a call, the JSON shape a forced call takes and how it is checked. Engines
// differ only in how they enforce the shape (llama.cpp: a grammar; MLX: a check after generation).
import { randomBytes } from "node:crypto";
import { InvalidRequestError } from "../errors.ts";
import type { EventSink } from "./events.ts";
import { JsonCallStream } from "./json-call-stream.ts";
import { validateJsonSchema } from "./json-schema.ts";
import type { ChatPrompt, JsonSchema, ResponseFormat, ToolCall, ToolDefinition } from "./request.ts";

export function toolCallId(): string {
  return "call_" + randomBytes(12).toString("base64url");
}

/**
 * Checks that do not need the model, run before a slot is taken. Parameter names are Chat
 * Completions' (the first adapter); other adapters map them to their own fields.
 */
export function checkTools(prompt: ChatPrompt): void {
  const names = new Set<string>();
  prompt.tools?.forEach((t, i) => {
    if (names.has(t.name)) throw new InvalidRequestError(`duplicate tool name '${t.name}'`, `tools[${i}].function.name`);
    names.add(t.name);
  });
  const choice = prompt.toolChoice;
  if (choice === undefined) return;
  if (choice !== "none" && choice !== "auto" && names.size === 0) throw new InvalidRequestError("tool_choice requires tools", "tool_choice");
  if (typeof choice === "object" && !names.has(choice.name)) {
    throw new InvalidRequestError(`tool_choice names '${choice.name}', which is not in tools`, "tool_choice.function.name");
  }
}

export type ChatPlan =
  /** Plain chat, optionally constrained to JSON by `format`. */
  | { mode: "text"; format?: Exclude<ResponseFormat, { type: "text" }> }
  /** Tools the model may call in its own tool syntax (tool_choice auto). */
  | { mode: "tools"; tools: ToolDefinition[] }
  /** tool_choice forced a call: the reply is one JSON object `schema` describes, parsed with `parseForcedCall`. */
  | { mode: "forced"; tools: ToolDefinition[]; schema: JsonSchema; preamble: string };

/** How a chat request is to be generated, with the response-format conflicts refused. */
export function planChat(prompt: ChatPrompt): ChatPlan {
  const tools = prompt.toolChoice === "none" ? [] : prompt.tools ?? [];
  const choice = prompt.toolChoice ?? "auto";
  const forced = tools.length > 0 && choice !== "auto" && choice !== "none";
  const format = prompt.responseFormat?.type === "text" ? undefined : prompt.responseFormat;
  if (forced && format) throw new InvalidRequestError("response_format cannot be combined with a forced tool_choice", "response_format");
  if (!forced && tools.length > 0 && format) {
    throw new InvalidRequestError("response_format json_object/json_schema cannot be combined with tools; use tool_choice 'none' or drop response_format", "response_format");
  }
  if (forced) {
    const candidates = typeof choice === "object" ? tools.filter((t) => t.name === choice.name) : tools;
    if (candidates.length === 0) throw new InvalidRequestError(`tool_choice names '${(choice as { name: string }).name}', which is not in tools`, "tool_choice");
    return { mode: "forced", tools: candidates, schema: forcedCallSchema(candidates), preamble: forcedToolPreamble(candidates) };
  }
  if (tools.length > 0) return { mode: "tools", tools };
  return format ? { mode: "text", format } : { mode: "text" };
}

const NO_PARAMETERS: JsonSchema = { type: "object", properties: {} };

function forcedCallSchema(tools: ToolDefinition[]): JsonSchema {
  const variants = tools.map((t) => ({
    type: "object",
    properties: { name: { const: t.name }, arguments: t.parameters ?? NO_PARAMETERS },
    required: ["name", "arguments"],
  }));
  return variants.length === 1 ? variants[0]! : { oneOf: variants };
}

/**
 * The tools described in a system message: in forced mode the reply is plain JSON, so the chat
 * template's own tool syntax is not used and the model learns of the tools from this.
 */
export function forcedToolPreamble(tools: ToolDefinition[]): string {
  const described = tools.map((t) => ({ name: t.name, description: t.description, parameters: t.parameters ?? NO_PARAMETERS }));
  return [
    "You can call tools. Reply with exactly one tool call as a JSON object of the form",
    '{"name": <tool name>, "arguments": <arguments object>} and nothing else.',
    "Available tools:",
    JSON.stringify(described, null, 2),
  ].join("\n");
}

/** " (generation stopped at max_tokens after N tokens)" when that explains a broken reply. */
export function cutShortNote(finish: "stop" | "length", completionTokens: number): string {
  return finish === "length" ? ` (generation stopped at max_tokens after ${completionTokens} tokens)` : "";
}

/** A forced reply as a tool call, or what is wrong with it (the engine picks the error type). */
export function parseForcedCall(raw: string, tools: ToolDefinition[], note: string): { call: ToolCall } | { problem: string } {
  let parsed: { name?: unknown; arguments?: unknown };
  try {
    parsed = JSON.parse(raw) as typeof parsed;
  } catch {
    return { problem: `the model's tool call is not complete JSON${note}: ${JSON.stringify(raw.slice(0, 200))}` };
  }
  const tool = tools.find((t) => t.name === parsed.name);
  if (!tool) return { problem: `the model called ${JSON.stringify(parsed.name)}, which is not one of the allowed tools (${tools.map((t) => t.name).join(", ")})` };
  const args = parsed.arguments ?? {};
  const problem = validateJsonSchema(args, tool.parameters ?? { type: "object" });
  if (problem) return { problem: `the model's arguments for '${tool.name}' do not match its parameters schema: ${problem}` };
  return { call: { id: toolCallId(), name: tool.name, arguments: JSON.stringify(args) } };
}

/**
 * A reply that must be JSON (response_format), checked after generation by engines that cannot
 * constrain sampling; returns what is wrong, or undefined.
 */
export function checkJsonReply(text: string, format: Exclude<ResponseFormat, { type: "text" }>, note: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return `this reply is not valid JSON${note}: ${JSON.stringify(text.slice(0, 200))}`;
  }
  if (format.type === "json_object") {
    return value === null || typeof value !== "object" || Array.isArray(value) ? "the model replied with JSON that is not an object, as json_object requires" : undefined;
  }
  const problem = validateJsonSchema(value, format.schema);
  return problem ? `this reply does not match the JSON schema: ${problem}` : undefined;
}

/** Tool calls known whole at the end of a generation, as the events of the stream. */
export function emitToolCalls(emit: EventSink, calls: ToolCall[]): void {
  calls.forEach((c, index) => {
    emit({ type: "tool_call_start", index, id: c.id, name: c.name });
    emit({ type: "tool_call_delta", index, arguments: c.arguments });
    emit({ type: "tool_call_end", index });
  });
}

/**
 * A forced call that max_tokens cut short, answered as far as it got (OpenAI does the same): the
 * call with its partial arguments when the tool's name was written, else the raw text.
 */
export function emitCutShortCall(emit: EventSink, raw: string): void {
  const id = toolCallId();
  const stream = new JsonCallStream({
    start: (name) => emit({ type: "tool_call_start", index: 0, id, name }),
    args: (fragment) => emit({ type: "tool_call_delta", index: 0, arguments: fragment }),
  });
  stream.feed(raw);
  if (stream.started) emit({ type: "tool_call_end", index: 0 });
  else if (raw) emit({ type: "text", text: raw });
}
