// Messages API bodies → the inference core's chat request. Content blocks become the core's
// turns: tool_result blocks tool turns, tool_use blocks the assistant's tool calls, thinking blocks
// the assistant's reasoning. Blocks the models served cannot take (images, documents) are refused
// with the block named, before a model is loaded or a slot taken.
import type { ChatGeneration, ChatMessage, ChatPrompt, ReasoningEffort, ToolCall, ToolChoice as CoreToolChoice, ToolDefinition } from "../../core/request.ts";
import { InvalidRequestError } from "../../errors.ts";
import { checkJsonSchema } from "../limits.ts";
import type { ContentBlock, CountTokensBody, MessageParam, MessagesBody } from "./schemas.ts";

type Blocks = string | ContentBlock[];

function unseeable(block: { type: string }, param: string): never {
  throw new InvalidRequestError(`${param}: '${block.type}' blocks are not supported: the models this server runs take text only`, param, "unsupported_content");
}

function misplaced(block: { type: string }, role: string, param: string): never {
  throw new InvalidRequestError(`${param}: a '${block.type}' block cannot be in a ${role} message`, param);
}

/** Text of a system prompt or a system turn: text blocks only. */
function textOnly(content: string | readonly { type: string; text?: string }[], param: string): string {
  if (typeof content === "string") return content;
  return content.map((b, j) => {
    if (b.type === "text") return b.text ?? "";
    if (b.type === "image" || b.type === "document") unseeable(b, `${param}[${j}]`);
    return misplaced(b, "system", `${param}[${j}]`);
  }).join("\n\n");
}

function toolResultText(block: Extract<ContentBlock, { type: "tool_result" }>, param: string): string {
  const content = block.content ?? "";
  const text = typeof content === "string" ? content : content.map((b, k) => (b.type === "text" ? b.text : unseeable(b, `${param}.content[${k}]`))).join("\n\n");
  // The tool turn has no error flag of its own: the model learns it failed from the text.
  return block.is_error ? `Error: ${text}` : text;
}

/** A user message: its tool results become tool turns, its text a user turn, in their order. */
function userTurns(content: Blocks, param: string, out: ChatMessage[]): void {
  if (typeof content === "string") {
    out.push({ role: "user", content });
    return;
  }
  let text: string[] = [];
  const flush = () => {
    if (text.length > 0) out.push({ role: "user", content: text.join("\n\n") });
    text = [];
  };
  content.forEach((b, j) => {
    const at = `${param}[${j}]`;
    switch (b.type) {
      case "text":
        text.push(b.text);
        break;
      case "tool_result":
        flush();
        out.push({ role: "tool", content: toolResultText(b, at), toolCallId: b.tool_use_id });
        break;
      case "image":
      case "document":
        return unseeable(b, at);
      default:
        return misplaced(b, "user", at);
    }
  });
  flush();
}

function assistantTurn(content: Blocks, param: string): ChatMessage {
  if (typeof content === "string") return { role: "assistant", content };
  const text: string[] = [];
  const reasoning: string[] = [];
  const toolCalls: ToolCall[] = [];
  content.forEach((b, j) => {
    const at = `${param}[${j}]`;
    switch (b.type) {
      case "text": text.push(b.text); break;
      case "thinking": reasoning.push(b.thinking); break;
      // Anthropic's encrypted thinking: nothing LMX could give back to a template.
      case "redacted_thinking": break;
      case "tool_use": toolCalls.push({ id: b.id, name: b.name, arguments: JSON.stringify(b.input) }); break;
      case "image":
      case "document":
        return unseeable(b, at);
      default:
        return misplaced(b, "assistant", at);
    }
  });
  return {
    role: "assistant",
    content: text.join(""),
    ...(toolCalls.length > 0 ? { toolCalls } : {}),
    ...(reasoning.length > 0 ? { reasoning: reasoning.join("\n\n") } : {}),
  };
}

/**
 * The conversation as core turns. The `system` field and system messages before the first user or
 * assistant turn make one leading system turn (templates want it first); a later system message
 * stays a system turn where it is.
 */
export function toChatMessages(system: CountTokensBody["system"], messages: readonly MessageParam[]): ChatMessage[] {
  const leading: string[] = [];
  if (system !== undefined && system !== null) leading.push(textOnly(system, "system"));
  const turns: ChatMessage[] = [];
  messages.forEach((m, i) => {
    const param = `messages[${i}].content`;
    if (m.role === "system") {
      const text = textOnly(m.content, param);
      if (turns.length === 0) leading.push(text);
      else turns.push({ role: "system", content: text });
    } else if (m.role === "user") userTurns(m.content, param, turns);
    else turns.push(assistantTurn(m.content, param));
  });
  const systemText = leading.filter((s) => s.length > 0).join("\n\n");
  return systemText ? [{ role: "system", content: systemText }, ...turns] : turns;
}

/** Custom tools; tools Anthropic defines and runs itself (web search, …) are left out of the prompt. */
function customTools(tools: CountTokensBody["tools"]): ToolDefinition[] {
  const out: ToolDefinition[] = [];
  tools?.forEach((t, i) => {
    if (t.type !== undefined && t.type !== null && t.type !== "custom") return;
    if (!t.input_schema) throw new InvalidRequestError(`tools[${i}].input_schema: a custom tool needs an input_schema`, `tools[${i}].input_schema`);
    checkJsonSchema(t.input_schema, `tools[${i}].input_schema`);
    out.push({ name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), parameters: t.input_schema });
  });
  return out;
}

function toolChoiceOf(choice: CountTokensBody["tool_choice"], hasTools: boolean): CoreToolChoice | undefined {
  if (!choice) return undefined;
  switch (choice.type) {
    case "any": return "required";
    case "tool": return { name: choice.name };
    // Without tools there is nothing to allow or forbid (all of them may have been Anthropic's own).
    case "none": return hasTools ? "none" : undefined;
    case "auto": return hasTools ? "auto" : undefined;
  }
}

const EFFORTS: Record<string, ReasoningEffort> = { none: "none", minimal: "minimal", low: "low", medium: "medium", high: "high", max: "high" };

/** `thinking: disabled` turns thinking off; otherwise output_config.effort, or the model's own default. */
function reasoningEffortOf(body: CountTokensBody): ReasoningEffort | undefined {
  if (body.thinking?.type === "disabled") return "none";
  const effort = body.output_config?.effort;
  return effort ? EFFORTS[effort] : undefined;
}

/** The prompt a request renders: what both a generation and a token count need. */
export function toChatPrompt(body: CountTokensBody): ChatPrompt {
  const tools = customTools(body.tools);
  const format = body.output_config?.format;
  if (format) checkJsonSchema(format.schema, "output_config.format.schema");
  const tc = body.tool_choice;
  const parallel = tc && tc.type !== "none" && tc.disable_parallel_tool_use === true ? false : undefined;
  return {
    messages: toChatMessages(body.system, body.messages),
    ...(tools.length > 0 ? { tools } : {}),
    toolChoice: toolChoiceOf(tc, tools.length > 0),
    ...(format ? { responseFormat: { type: "json_schema" as const, schema: format.schema } } : {}),
    ...(parallel === false ? { parallelToolCalls: false } : {}),
    reasoningEffort: reasoningEffortOf(body),
  };
}

const opt = <T>(x: T | null | undefined): T | undefined => (x === null ? undefined : x);

export function toGeneration(body: MessagesBody): ChatGeneration {
  const stop = body.stop_sequences?.filter((s) => s.length > 0);
  return {
    kind: "chat",
    ...toChatPrompt(body),
    maxTokens: body.max_tokens,
    temperature: opt(body.temperature),
    topP: opt(body.top_p),
    topK: opt(body.top_k),
    stop: stop && stop.length > 0 ? stop : undefined,
    // Thinking has blocks of its own in this API, whatever the server's --reasoning-format.
    reasoningFormat: "separate",
    ...(body.thinking?.type === "enabled" && body.thinking.budget_tokens !== undefined ? { thinkingBudget: body.thinking.budget_tokens } : {}),
  };
}
