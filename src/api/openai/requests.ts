// OpenAI request bodies → the inference core's request. Wire-format problems are refused here and
// tool rules by the core, with the offending field named, before a model is loaded or a slot taken.
import type { ChatGeneration, ChatMessage, GenerationRequest, SamplingOptions, TextGeneration, ToolChoice } from "../../core/request.ts";
import { choiceSeeds } from "../../core/sampling.ts";
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
    logitBias: body.logit_bias ? Object.fromEntries(Object.entries(body.logit_bias).map(([k, b]) => [Number(k), b])) : undefined,
  };
}

/**
 * OpenAI fields that would change the output and that LMX cannot honour: refused by name rather
 * than ignored. Fields that cannot change the output (`store`, `metadata`, `user`, `service_tier`,
 * `prompt_cache_key`, `safety_identifier`) pass, as do fields LMX does not know at all.
 */
const UNHONOURED_CHAT: Record<string, string> = {
  audio: "audio output is not supported: this server's models produce text only",
  prediction: "predicted outputs are not supported",
  web_search_options: "web search is not supported",
  functions: "legacy `functions` are not supported; send them as `tools`",
  function_call: "legacy `function_call` is not supported; use `tool_choice` with `tools`",
  verbosity: "`verbosity` is not supported",
};

function refuseUnhonoured(body: Record<string, unknown>, fields: Record<string, string>): void {
  for (const [field, why] of Object.entries(fields)) {
    if (body[field] !== undefined && body[field] !== null) throw new InvalidRequestError(`${field}: ${why}`, field, "unsupported_parameter");
  }
}

/** The request once per choice (`n`), each with its own seed (derived from the client's, when given). */
function perChoice<T extends SamplingOptions>(request: T, n: number | null | undefined): T[] {
  return choiceSeeds(request.seed, n ?? 1).map((seed) => ({ ...request, seed }));
}

export function toChatRequest(body: ChatCompletionBody): ChatGeneration {
  refuseUnhonoured(body, UNHONOURED_CHAT);
  const modalities = body.modalities;
  if (modalities !== undefined && modalities !== null && !(Array.isArray(modalities) && modalities.every((m) => m === "text"))) {
    throw new InvalidRequestError("modalities: only [\"text\"] is supported: this server's models produce text only", "modalities", "unsupported_parameter");
  }
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.logprobs !== true) {
    throw new InvalidRequestError("top_logprobs requires logprobs: true", "top_logprobs");
  }
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
    logprobs: body.logprobs ? (body.top_logprobs ?? 0) : undefined,
  };
}

/** One request per choice (`n`, default 1); choice i is at index i. */
export function toChatRequests(body: ChatCompletionBody): ChatGeneration[] {
  return perChoice(toChatRequest(body), body.n);
}

/** OpenAI's legacy completions default to 16 tokens; keep that so clients see what they expect. */
export const DEFAULT_COMPLETION_TOKENS = 16;

/**
 * One request per prompt and choice: the `n` choices of prompt p are at indices p·n … p·n+n-1, as
 * in OpenAI's API.
 */
export function toCompletionRequests(body: CompletionBody): GenerationRequest[] {
  const n = body.n ?? 1;
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== n) {
    throw new InvalidRequestError("best_of: only best_of equal to n is supported (LMX returns every choice it generates)", "best_of", "unsupported_parameter");
  }
  const prompts = typeof body.prompt === "string" ? [body.prompt] : body.prompt;
  const base: Omit<TextGeneration, "prompt"> = {
    kind: "text",
    ...sampling(body, body.max_tokens ?? DEFAULT_COMPLETION_TOKENS),
    logprobs: opt(body.logprobs),
    suffix: body.suffix ? body.suffix : undefined,
    scorePrompt: body.echo === true && body.logprobs !== undefined && body.logprobs !== null ? true : undefined,
  };
  return prompts.flatMap((prompt) => perChoice<TextGeneration>({ ...base, prompt }, n));
}
