// OpenAI request bodies → the inference core's request. Wire-format problems are refused here and
// tool rules by the core, with the offending field named, before a model is loaded or a slot taken.
import type { ChatGeneration, ChatMessage, GenerationRequest, SamplingOptions, ToolChoice } from "../../core/request.ts";
import { InvalidRequestError } from "../../errors.ts";
import type { ChatCompletionBody, ChatMessageBody, CompletionBody } from "./schemas.ts";

type Content = ChatMessageBody["content"];

function textOf(content: Content | null | undefined, param: string): string {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  return content.map((part, i) => {
    if (part.type === "text" && typeof part.text === "string") return part.text;
    throw new InvalidRequestError(`content part type '${part.type}' is not supported: this server's models take text only`, `${param}[${i}].type`);
  }).join("");
}

export function toChatMessages(messages: ChatMessageBody[]): ChatMessage[] {
  return messages.map((m, i): ChatMessage => {
    const param = `messages[${i}].content`;
    switch (m.role) {
      case "system":
      case "developer":
        return { role: "system", content: textOf(m.content, param) };
      case "user":
        return { role: "user", content: textOf(m.content, param) };
      case "assistant":
        const reasoning = m.reasoning_content ?? m.reasoning;
        return {
          role: "assistant",
          content: textOf(m.content, param),
          toolCalls: m.tool_calls?.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })),
          ...(reasoning ? { reasoning } : {}),
        };
      case "tool":
        return { role: "tool", content: textOf(m.content, param), toolCallId: m.tool_call_id };
    }
  });
}

function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  if (stop === null || stop === undefined) return undefined;
  const list = (typeof stop === "string" ? [stop] : stop).filter((s) => s.length > 0);
  return list.length > 0 ? list : undefined;
}

const opt = <T>(x: T | null | undefined): T | undefined => (x === null ? undefined : x);

function sampling(body: ChatCompletionBody | CompletionBody, maxTokens: number | null | undefined): SamplingOptions {
  return {
    maxTokens: opt(maxTokens),
    temperature: opt(body.temperature),
    topP: opt(body.top_p),
    topK: opt(body.top_k),
    minP: opt(body.min_p),
    seed: opt(body.seed),
    presencePenalty: opt(body.presence_penalty),
    frequencyPenalty: opt(body.frequency_penalty),
    repeatPenalty: opt(body.repeat_penalty),
    ignoreEos: opt(body.ignore_eos),
    stop: stopList(body.stop),
  };
}

export function toChatRequest(body: ChatCompletionBody): ChatGeneration {
  const tools = body.tools?.map((t) => ({ name: t.function.name, description: t.function.description, parameters: t.function.parameters }));
  const tc = body.tool_choice;
  const toolChoice: ToolChoice | undefined = tc === undefined || tc === null ? undefined : typeof tc === "string" ? tc : { name: tc.function.name };
  let responseFormat: ChatGeneration["responseFormat"];
  const rf = body.response_format;
  if (rf?.type === "json_object") responseFormat = { type: "json_object" };
  else if (rf?.type === "json_schema") {
    if (!rf.json_schema.schema) throw new InvalidRequestError("response_format.json_schema.schema is required", "response_format.json_schema.schema");
    responseFormat = { type: "json_schema", schema: rf.json_schema.schema, name: rf.json_schema.name };
  }
  return {
    kind: "chat",
    ...sampling(body, body.max_completion_tokens ?? body.max_tokens),
    messages: toChatMessages(body.messages),
    tools,
    toolChoice,
    responseFormat,
    parallelToolCalls: opt(body.parallel_tool_calls),
    reasoningEffort: opt(body.reasoning_effort),
    templateKwargs: opt(body.chat_template_kwargs),
    reasoningFormat: opt(body.reasoning_format),
  };
}

/** OpenAI's legacy completions default to 16 tokens; keep that so clients see what they expect. */
export const DEFAULT_COMPLETION_TOKENS = 16;

export function toCompletionRequests(body: CompletionBody): GenerationRequest[] {
  const prompts = typeof body.prompt === "string" ? [body.prompt] : body.prompt;
  const base = sampling(body, body.max_tokens ?? DEFAULT_COMPLETION_TOKENS);
  return prompts.map((prompt) => ({ kind: "text", ...base, prompt }));
}
