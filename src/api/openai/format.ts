// Shapes the core's results as OpenAI wire objects (responses and stream chunks).
import { randomBytes } from "node:crypto";
import type { GenerationResult } from "../../core/collect.ts";
import type { FinishReason, Timings, TokenLogprob, Usage } from "../../core/events.ts";
import type { ToolCall } from "../../core/request.ts";

export const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString("base64url")}`;
export const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * Usage of a whole answer, with the prompt tokens served from the cache. `perPrompt` choices share
 * a prompt (`n`): as in OpenAI's API its tokens count once (the first choice's), although LMX
 * evaluates the prompt for each choice.
 */
export function usageOf(usages: Usage[], perPrompt = 1) {
  const ofPrompts = (tokens: (u: Usage) => number) => usages.reduce((a, u, i) => a + (i % perPrompt === 0 ? tokens(u) : 0), 0);
  const prompt = ofPrompts((u) => u.promptTokens);
  const completion = usages.reduce((a, u) => a + u.completionTokens, 0);
  return {
    prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: ofPrompts((u) => u.cachedTokens ?? 0) },
  };
}

/** Chat's usage also says how many tokens were thinking. */
export function chatUsageOf(usages: Usage[], perPrompt = 1) {
  return {
    ...usageOf(usages, perPrompt),
    completion_tokens_details: { reasoning_tokens: usages.reduce((a, u) => a + (u.reasoningTokens ?? 0), 0) },
  };
}

/** LMX extension, named like llama-server's so tools that read it there work here too. */
export function timingsOf(r: { usage: Usage; timings: Timings }) {
  return {
    prompt_n: r.usage.promptTokens,
    prompt_ms: r.timings.prefillMs,
    prompt_per_second: r.timings.prefillTokensPerSecond,
    predicted_n: r.usage.completionTokens,
    predicted_ms: r.timings.decodeMs,
    predicted_per_second: r.timings.decodeTokensPerSecond,
    ...(r.usage.draftTokens !== undefined ? { draft_n: r.usage.draftTokens, draft_n_accepted: r.usage.draftAcceptedTokens ?? 0 } : {}),
  };
}

export function toolCallsOf(calls: ToolCall[]) {
  return calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } }));
}

const bytesOf = (text: string) => [...Buffer.from(text, "utf8")];

/**
 * The tokens whose text the client got: a stop string cuts the text, while an engine may score
 * every token it generated. Applies only when the tokens spell the text (not to tool calls).
 */
export function keptLogprobs(tokens: TokenLogprob[], text: string): TokenLogprob[] {
  const spelled = tokens.map((t) => t.token).join("");
  if (spelled.length <= text.length || !spelled.startsWith(text)) return tokens;
  const kept: TokenLogprob[] = [];
  let offset = 0;
  for (const t of tokens) {
    if (offset >= text.length) break;
    kept.push(t);
    offset += t.token.length;
  }
  return kept;
}

/** Chat's `choices[].logprobs` (OpenAI's shape). */
export function chatLogprobs(tokens: TokenLogprob[]) {
  return {
    content: tokens.map((t) => ({
      token: t.token,
      logprob: t.logprob ?? 0,
      bytes: t.bytes ?? bytesOf(t.token),
      top_logprobs: t.top.map((a) => ({ token: a.token, logprob: a.logprob, bytes: bytesOf(a.token) })),
    })),
    refusal: null,
  };
}

/** Alternatives keyed by text, most likely first; two tokens with the same text keep the likelier. */
function topByText(top: TokenLogprob["top"]): Record<string, number> {
  const out: Record<string, number> = Object.create(null);
  for (const a of top) if (!Object.hasOwn(out, a.token)) out[a.token] = a.logprob;
  return out;
}

/** Legacy completions' `choices[].logprobs`; `text_offset` counts from the start of the choice's text. */
export function completionLogprobs(tokens: TokenLogprob[], startOffset = 0) {
  const textOffset: number[] = [];
  let offset = startOffset;
  for (const t of tokens) {
    textOffset.push(offset);
    offset += t.token.length;
  }
  return {
    tokens: tokens.map((t) => t.token),
    token_logprobs: tokens.map((t) => t.logprob),
    // A dict by token text, as OpenAI sends it; the echoed prompt's first token has none (null).
    top_logprobs: tokens.map((t) => (t.logprob === null ? null : topByText(t.top))),
    text_offset: textOffset,
  };
}

export function chatChoice(r: GenerationResult, index: number, logprobs: boolean) {
  const message: Record<string, unknown> = { role: "assistant", content: r.toolCalls.length > 0 && !r.text ? null : r.text };
  if (r.reasoning) message.reasoning_content = r.reasoning;
  if (r.toolCalls.length > 0) message.tool_calls = toolCallsOf(r.toolCalls);
  return { index, message, logprobs: logprobs ? chatLogprobs(keptLogprobs(r.logprobs, r.text)) : null, finish_reason: r.finishReason };
}

/** `results`: one per choice (`n`); `logprobs`: the request asked for them. */
export function chatCompletion(id: string, model: string, results: GenerationResult | GenerationResult[], logprobs = false) {
  const all = Array.isArray(results) ? results : [results];
  return {
    id,
    object: "chat.completion",
    created: nowSeconds(),
    model,
    choices: all.map((r, i) => chatChoice(r, i, logprobs)),
    usage: chatUsageOf(all.map((r) => r.usage), all.length),
    timings: all.length === 1 ? timingsOf(all[0]!) : undefined,
    system_fingerprint: "lmx",
  };
}

export function chatChunk(id: string, model: string, created: number, delta: Record<string, unknown>, finishReason: FinishReason | null = null, index = 0, logprobs: TokenLogprob[] | null = null) {
  return {
    id,
    object: "chat.completion.chunk",
    created,
    model,
    system_fingerprint: "lmx",
    choices: [{ index, delta, logprobs: logprobs ? chatLogprobs(logprobs) : null, finish_reason: finishReason }],
  };
}

/** How a completion's text is shaped: the prompt in front (echo), and whether logprobs were asked. */
export interface TextShape {
  echo?: string[];
  logprobs: boolean;
  /** Choices per prompt. */
  n: number;
}

/** A completion choice's text and logprobs; with echo both start with the prompt. */
export function textChoice(r: GenerationResult, index: number, shape: TextShape) {
  const text = (shape.echo?.[index] ?? "") + r.text;
  return { index, text, logprobs: shape.logprobs ? completionLogprobs(keptLogprobs(r.logprobs, text)) : null, finish_reason: r.finishReason };
}

export function textCompletion(id: string, model: string, results: GenerationResult[], shape: TextShape = { logprobs: false, n: 1 }) {
  return {
    id,
    object: "text_completion",
    created: nowSeconds(),
    model,
    choices: results.map((r, index) => textChoice(r, index, shape)),
    usage: usageOf(results.map((r) => r.usage), shape.n),
    timings: results.length === 1 ? timingsOf(results[0]!) : undefined,
    system_fingerprint: "lmx",
  };
}

export function textChunk(id: string, model: string, created: number, index: number, text: string, finishReason: FinishReason | null = null, logprobs: ReturnType<typeof completionLogprobs> | null = null) {
  return {
    id,
    object: "text_completion",
    created,
    model,
    system_fingerprint: "lmx",
    choices: [{ index, text, logprobs, finish_reason: finishReason }],
  };
}
