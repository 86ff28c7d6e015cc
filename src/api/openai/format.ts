// Shapes the core's results as OpenAI wire objects (responses and stream chunks).
import { randomBytes } from "node:crypto";
import type { GenerationResult } from "../../core/collect.ts";
import type { FinishReason, Timings, Usage } from "../../core/events.ts";
import type { ToolCall } from "../../core/request.ts";

export const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString("base64url")}`;
export const nowSeconds = () => Math.floor(Date.now() / 1000);

const sumOf = (usages: Usage[], f: (u: Usage) => number | undefined) => usages.reduce((a, u) => a + (f(u) ?? 0), 0);

export function usageOf(usages: Usage[]) {
  const prompt = sumOf(usages, (u) => u.promptTokens);
  const completion = sumOf(usages, (u) => u.completionTokens);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** Chat's usage also says how many tokens were thinking and how many prompt tokens came from the cache. */
export function chatUsageOf(usages: Usage[]) {
  return {
    ...usageOf(usages),
    prompt_tokens_details: { cached_tokens: sumOf(usages, (u) => u.cachedTokens) },
    completion_tokens_details: { reasoning_tokens: sumOf(usages, (u) => u.reasoningTokens) },
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
  };
}

export function toolCallsOf(calls: ToolCall[]) {
  return calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } }));
}

export function chatCompletion(id: string, model: string, r: GenerationResult) {
  const message: Record<string, unknown> = { role: "assistant", content: r.toolCalls.length > 0 && !r.text ? null : r.text };
  if (r.reasoning) message.reasoning_content = r.reasoning;
  if (r.toolCalls.length > 0) message.tool_calls = toolCallsOf(r.toolCalls);
  return {
    id,
    object: "chat.completion",
    created: nowSeconds(),
    model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: r.finishReason }],
    usage: chatUsageOf([r.usage]),
    timings: timingsOf(r),
    system_fingerprint: "lmx",
  };
}

export function chatChunk(id: string, model: string, created: number, delta: Record<string, unknown>, finishReason: FinishReason | null = null, index = 0) {
  return {
    id,
    object: "chat.completion.chunk",
    created,
    model,
    system_fingerprint: "lmx",
    choices: [{ index, delta, logprobs: null, finish_reason: finishReason }],
  };
}

export function textCompletion(id: string, model: string, results: GenerationResult[]) {
  return {
    id,
    object: "text_completion",
    created: nowSeconds(),
    model,
    choices: results.map((r, index) => ({ index, text: r.text, logprobs: null, finish_reason: r.finishReason })),
    usage: usageOf(results.map((r) => r.usage)),
    timings: results.length === 1 ? timingsOf(results[0]!) : undefined,
    system_fingerprint: "lmx",
  };
}

export function textChunk(id: string, model: string, created: number, index: number, text: string, finishReason: FinishReason | null = null) {
  return {
    id,
    object: "text_completion",
    created,
    model,
    system_fingerprint: "lmx",
    choices: [{ index, text, logprobs: null, finish_reason: finishReason }],
  };
}
