// A validated Responses body as the core's chat request: `instructions` first as a system
// message, then the conversation's items (a previous response's input and output, then this
// input) as chat messages, the tools flattened (tools.ts), and the sampling and format fields.
import { randomBytes } from "node:crypto";
import { InvalidRequestError } from "../../errors.ts";
import type { ChatGeneration, ChatMessage, ReasoningEffort, ResponseFormat, ToolCall } from "../../core/request.ts";
import { checkJsonSchema } from "../limits.ts";
import { HOSTED_ITEM_TYPES, type InputItem, type ResponseBody } from "./schemas.ts";
import { modelNameOf, toolChoiceOf, toolSet, type ToolSet } from "./tools.ts";

export type Item = Record<string, unknown>;

export const newItemId = (prefix: string) => `${prefix}_${randomBytes(24).toString("hex")}`;

/** Fields that would change the answer and that LMX cannot honour: refused by name rather than ignored. */
const UNHONOURED: Record<string, string> = {
  prompt: "reusable prompts are not supported; send `instructions` and `input`",
  conversation: "conversations are not supported; use `previous_response_id`",
  background: "background responses are not supported",
};

function refuseUnhonoured(body: Record<string, unknown>): void {
  for (const [field, why] of Object.entries(UNHONOURED)) {
    const value = body[field];
    if (value !== undefined && value !== null && value !== false) throw new InvalidRequestError(`${field}: ${why}`, field, "unsupported_parameter");
  }
}

type Parts = string | { type: string; text?: unknown }[];

/** The text of content parts; images, files and audio are refused: this server's models read text only. */
function textOf(content: Parts, param: string): string {
  if (typeof content === "string") return content;
  return content.map((part, i) => {
    const p = `${param}[${i}]`;
    if (part.type === "input_text" || part.type === "output_text" || part.type === "text" || part.type === "summary_text" || part.type === "reasoning_text") {
      if (typeof part.text !== "string") throw new InvalidRequestError(`${p}.text must be a string`, `${p}.text`);
      return part.text;
    }
    if (part.type === "refusal") {
      const refusal = (part as { refusal?: unknown }).refusal;
      return typeof refusal === "string" ? refusal : "";
    }
    throw new InvalidRequestError(`content part type '${part.type}' is not supported: this server's models take text only`, `${p}.type`, "unsupported_content");
  }).join("");
}

/**
 * Items as chat messages. A reasoning item goes with the assistant turn that follows it; calls
 * (function and custom) join the assistant message just before them, as one turn of the model
 * produced them together; outputs become tool messages. Hosted tools' records are left out.
 */
export function toChatMessages(items: readonly Item[], tools: ToolSet, param = "input"): ChatMessage[] {
  const out: ChatMessage[] = [];
  let reasoning = "";
  const assistant = (): Extract<ChatMessage, { role: "assistant" }> => {
    const last = out.at(-1);
    if (last?.role === "assistant" && !reasoning) return last;
    const m: Extract<ChatMessage, { role: "assistant" }> = { role: "assistant", content: "", ...(reasoning ? { reasoning } : {}) };
    reasoning = "";
    out.push(m);
    return m;
  };
  const call = (c: ToolCall) => {
    const m = assistant();
    m.toolCalls = [...(m.toolCalls ?? []), c];
  };
  items.forEach((raw, i) => {
    const it = raw as InputItem;
    const p = `${param}[${i}]`;
    switch (it.type) {
      case "message": {
        const text = textOf(it.content as Parts, `${p}.content`);
        if (it.role === "assistant") {
          const m = assistant();
          m.content += text;
        } else out.push({ role: it.role === "user" ? "user" : "system", content: text });
        break;
      }
      case "reasoning": {
        const parts = it.content && it.content.length > 0 ? it.content : it.summary ?? [];
        reasoning += parts.map((x) => x.text).join("\n");
        break;
      }
      case "function_call":
        call({ id: it.call_id, name: modelNameOf(tools, it.name, it.namespace) ?? it.name, arguments: it.arguments });
        break;
      case "custom_tool_call":
        call({ id: it.call_id, name: modelNameOf(tools, it.name, it.namespace) ?? it.name, arguments: JSON.stringify({ input: it.input }) });
        break;
      case "function_call_output":
      case "custom_tool_call_output":
        out.push({ role: "tool", content: textOf(it.output as Parts, `${p}.output`), toolCallId: it.call_id });
        break;
      case "item_reference":
        throw new InvalidRequestError("item_reference is not supported: send the item itself, or continue with previous_response_id", `${p}.type`, "unsupported_parameter");
      default:
        if (!(HOSTED_ITEM_TYPES as readonly string[]).includes(it.type)) throw new InvalidRequestError(`input item type '${it.type}' is not supported`, `${p}.type`);
    }
  });
  return out;
}

function responseFormatOf(text: ResponseBody["text"]): ResponseFormat | undefined {
  const f = text?.format;
  if (!f || f.type === "text") return undefined;
  if (f.type === "json_object") return { type: "json_object" };
  checkJsonSchema(f.schema, "text.format.schema");
  return { type: "json_schema", schema: f.schema, name: f.name };
}

/** "xhigh" is OpenAI's step above high; the most a chat template knows is high. */
function effortOf(reasoning: ResponseBody["reasoning"]): ReasoningEffort | undefined {
  const e = reasoning?.effort;
  if (e === undefined || e === null) return undefined;
  return e === "xhigh" ? "high" : e;
}

const opt = <T>(x: T | null | undefined): T | undefined => (x === null ? undefined : x);

export interface ResponseRequest {
  request: ChatGeneration;
  tools: ToolSet;
  /** This request's own input items, each with an id (stored and listed by input_items). */
  input: Item[];
}

const ITEM_ID_PREFIX: Record<string, string> = {
  message: "msg", function_call: "fc", function_call_output: "fco", custom_tool_call: "ctc", custom_tool_call_output: "ctco", reasoning: "rs",
};

/** Input items with an id each, as OpenAI lists them; ids the client gave are kept. */
export function withItemIds(items: readonly Item[]): Item[] {
  return items.map((it) => (typeof it.id === "string" ? it : { id: newItemId(ITEM_ID_PREFIX[String(it.type)] ?? "item"), ...it }));
}

/** `earlier`: the items of the response this one continues (its input, then its output). */
export function toResponseRequest(body: ResponseBody, earlier: readonly Item[] = []): ResponseRequest {
  refuseUnhonoured(body);
  const tools = toolSet(body.tools);
  const { toolChoice, definitions } = toolChoiceOf(body.tool_choice, tools);
  const input = withItemIds((body.input ?? []) as Item[]);
  const messages: ChatMessage[] = [];
  if (body.instructions) messages.push({ role: "system", content: body.instructions });
  messages.push(...toChatMessages(earlier, tools, "previous_response_id"), ...toChatMessages(input, tools));
  if (!messages.some((m) => m.role !== "system")) throw new InvalidRequestError("input must contain at least one item", "input");
  return {
    tools,
    input,
    request: {
      kind: "chat",
      messages,
      tools: definitions.length > 0 ? definitions : undefined,
      toolChoice,
      responseFormat: responseFormatOf(body.text),
      parallelToolCalls: opt(body.parallel_tool_calls),
      reasoningEffort: effortOf(body.reasoning),
      maxTokens: opt(body.max_output_tokens),
      temperature: opt(body.temperature),
      topP: opt(body.top_p),
    },
  };
}
