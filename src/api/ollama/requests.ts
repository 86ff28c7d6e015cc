// Ollama request bodies → the inference core's request. Wire-format problems are refused here with
// the offending field named; tool rules are the core's.
import type { ChatGeneration, ChatMessage, GenerationRequest, ReasoningEffort, ResponseFormat, SamplingOptions, ToolCall, ToolChoice } from "../../core/request.ts";
import { InvalidRequestError } from "../../errors.ts";
import type { ChatBody, ChatMessage as WireMessage, GenerateBody, Options } from "./schemas.ts";

/**
 * The LMX model a client names. Ollama clients add a tag (`name:tag`), and `:latest` is what they
 * add when the user gave none, so `id:latest` is `id`; any other tag is part of the name, for a
 * route or alias to resolve (`qwen2.5:0.5b` says nothing about which file that is).
 */
export function modelName(name: string): string {
  return name.endsWith(":latest") ? name.slice(0, -":latest".length) : name;
}

const opt = <T>(x: T | null | undefined): T | undefined => (x === null ? undefined : x);

/**
 * Options LMX cannot honour, at the value that leaves the answer as LMX gives it: any other value
 * is refused by name rather than ignored. repeat_last_n: both engines' penalty window is 64 tokens.
 */
const NEUTRAL: Record<string, { value: number; why: string }> = {
  typical_p: { value: 1, why: "locally typical sampling is not supported" },
  tfs_z: { value: 1, why: "tail-free sampling is not supported" },
  mirostat: { value: 0, why: "mirostat sampling is not supported" },
  repeat_last_n: { value: 64, why: "the penalty window is fixed at 64 tokens, Ollama's default" },
};

/** `options` → the core's sampling settings. */
export function samplingOf(options: Options | null | undefined): SamplingOptions {
  if (!options) return {};
  for (const [key, { value, why }] of Object.entries(NEUTRAL)) {
    const given = options[key as keyof Options];
    if (given !== undefined && given !== null && given !== value) throw new InvalidRequestError(`options.${key}: ${why} (only ${value} is accepted)`, `options.${key}`, "unsupported_parameter");
  }
  const predict = opt(options.num_predict);
  if (predict === 0) throw new InvalidRequestError("options.num_predict must be positive, or -1 for no limit", "options.num_predict");
  const stop = options.stop?.filter((s) => s.length > 0);
  return {
    maxTokens: predict !== undefined && predict > 0 ? predict : undefined,
    temperature: opt(options.temperature),
    topP: opt(options.top_p),
    topK: opt(options.top_k),
    minP: opt(options.min_p),
    seed: opt(options.seed),
    repeatPenalty: opt(options.repeat_penalty),
    presencePenalty: opt(options.presence_penalty),
    frequencyPenalty: opt(options.frequency_penalty),
    stop: stop && stop.length > 0 ? stop : undefined,
  };
}

function responseFormatOf(format: ChatBody["format"]): ResponseFormat | undefined {
  if (format === undefined || format === null || format === "") return undefined;
  if (format === "json") return { type: "json_object" };
  return { type: "json_schema", schema: format };
}

/** `think`: false turns thinking off; true or a level turns it on (the model's own default when absent). */
function reasoningOf(think: ChatBody["think"]): Pick<ChatGeneration, "reasoningEffort" | "reasoningFormat"> {
  if (think === undefined || think === null) return {};
  if (think === false) return { reasoningEffort: "none" };
  // Asked for, the thinking comes back in its own field whatever the server's --reasoning-format.
  return { reasoningFormat: "separate", ...(think === true ? {} : { reasoningEffort: think satisfies ReasoningEffort }) };
}

function refuseImages(images: readonly string[] | null | undefined, param: string): void {
  if (images && images.length > 0) throw new InvalidRequestError(`${param}: images are not supported: this server's models take text only`, param, "unsupported_parameter");
}

function argumentsText(args: Record<string, unknown> | string | null | undefined, param: string): string {
  if (args === undefined || args === null) return "{}";
  if (typeof args !== "string") return JSON.stringify(args);
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    throw new InvalidRequestError(`${param} must be an object (or a string of JSON holding one)`, param);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new InvalidRequestError(`${param} must be a JSON object`, param);
  return args;
}

/**
 * Ollama's messages → the core's. Ollama's tool calls carry no id and its tool results name the
 * tool instead: each call gets one (its own `id` when this server gave it one), and each result
 * answers the earliest unanswered call of the last assistant turn with its `tool_name` (or its
 * `tool_call_id`; with neither, the earliest unanswered call).
 */
export function toChatMessages(messages: readonly WireMessage[]): ChatMessage[] {
  let open: ToolCall[] = [];
  return messages.map((m, i): ChatMessage => {
    refuseImages(m.images, `messages[${i}].images`);
    const content = m.content ?? "";
    switch (m.role) {
      case "system":
      case "user":
        return { role: m.role, content };
      case "assistant": {
        const calls = m.tool_calls?.map((c, j): ToolCall => ({
          id: c.id || `call_${i}_${j}`,
          name: c.function.name,
          arguments: argumentsText(c.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`),
        }));
        open = [...(calls ?? [])];
        return { role: "assistant", content, ...(calls?.length ? { toolCalls: calls } : {}), ...(m.thinking ? { reasoning: m.thinking } : {}) };
      }
      case "tool": {
        const at = m.tool_call_id ? open.findIndex((c) => c.id === m.tool_call_id) : m.tool_name ? open.findIndex((c) => c.name === m.tool_name) : 0;
        const call = at >= 0 ? open[at] : undefined;
        if (!call) {
          const which = m.tool_call_id ? `tool_call_id '${m.tool_call_id}'` : m.tool_name ? `tool_name '${m.tool_name}'` : "a tool call";
          throw new InvalidRequestError(`messages[${i}]: a tool result for ${which}, which no preceding assistant message left unanswered`, `messages[${i}]`);
        }
        open.splice(at, 1);
        return { role: "tool", content, toolCallId: call.id };
      }
    }
  });
}

function toolChoiceOf(tc: ChatBody["tool_choice"]): ToolChoice | undefined {
  if (tc === undefined || tc === null) return undefined;
  return typeof tc === "string" ? tc : { name: tc.function.name };
}

export function toChatRequest(body: ChatBody): ChatGeneration {
  return {
    kind: "chat",
    ...samplingOf(body.options),
    messages: toChatMessages(body.messages ?? []),
    tools: body.tools?.map((t) => ({ name: t.function.name, description: opt(t.function.description), parameters: opt(t.function.parameters) })),
    toolChoice: toolChoiceOf(body.tool_choice),
    responseFormat: responseFormatOf(body.format),
    ...reasoningOf(body.think),
  };
}

/**
 * /api/generate: a prompt rendered with the model's chat template (after `system`), or with `raw`
 * the prompt continued as is; `suffix` makes it a fill-in-the-middle request. LMX renders prompts
 * only with the model's own template, so a custom `template` is refused.
 */
export function toGenerateRequest(body: GenerateBody): GenerationRequest {
  refuseImages(body.images, "images");
  if (body.template) {
    throw new InvalidRequestError("template: LMX renders prompts with the model's own chat template only; render the prompt yourself and send it with raw: true", "template", "unsupported_parameter");
  }
  if (body.context && body.context.length > 0) {
    throw new InvalidRequestError("context: token contexts are not supported; send the conversation to /api/chat instead", "context", "unsupported_parameter");
  }
  const prompt = body.prompt ?? "";
  if (body.raw || body.suffix) {
    const why = body.raw ? "raw: true" : "suffix";
    if (body.system) throw new InvalidRequestError(`system cannot be combined with ${why}: the prompt is continued as is, without a template`, "system", "unsupported_parameter");
    if (responseFormatOf(body.format)) throw new InvalidRequestError(`format cannot be combined with ${why}`, "format", "unsupported_parameter");
    if (body.think !== undefined && body.think !== null) throw new InvalidRequestError(`think cannot be combined with ${why}: thinking is switched in the chat template, which a raw prompt does not use`, "think", "unsupported_parameter");
    return { kind: "text", ...samplingOf(body.options), prompt, ...(body.suffix ? { suffix: body.suffix } : {}) };
  }
  const messages: ChatMessage[] = body.system ? [{ role: "system", content: body.system }] : [];
  messages.push({ role: "user", content: prompt });
  return { kind: "chat", ...samplingOf(body.options), messages, responseFormat: responseFormatOf(body.format), ...reasoningOf(body.think) };
}

const UNIT_SECONDS: Record<string, number> = { ns: 1e-9, us: 1e-6, "µs": 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
const DURATION = /^(-?)((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$/;

/**
 * `keep_alive` in seconds: a number of seconds or a Go duration ("5m", "1h30m"; a bare number
 * string is seconds). Negative: loaded for ever (null). Undefined when the request does not say.
 */
export function keepAliveSeconds(value: number | string | null | undefined): number | null | undefined {
  if (value === undefined || value === null) return undefined;
  let seconds: number;
  if (typeof value === "number") seconds = value;
  else if (/^-?\d+(\.\d+)?$/.test(value.trim())) seconds = Number(value.trim());
  else {
    const m = DURATION.exec(value.trim());
    if (!m) throw new InvalidRequestError(`keep_alive: '${value}' is not a duration (seconds, or like "5m", "1h30m", "-1")`, "keep_alive");
    seconds = 0;
    for (const part of m[2]!.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) seconds += Number(part[1]) * UNIT_SECONDS[part[2]!]!;
    if (m[1]) seconds = -seconds;
  }
  if (!Number.isFinite(seconds)) throw new InvalidRequestError("keep_alive must be a finite duration", "keep_alive");
  if (seconds < 0) return null;
  // The scheduler counts idle time in whole seconds; anything above zero keeps the model at least one.
  return seconds === 0 ? 0 : Math.max(1, Math.round(seconds));
}
