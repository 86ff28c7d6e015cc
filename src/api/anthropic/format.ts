// Shapes the core's results as Anthropic's wire objects: the message, its content blocks, its
// stop reason and usage.
import { randomBytes } from "node:crypto";
import type { GenerationResult } from "../../core/collect.ts";
import type { FinishReason, Usage } from "../../core/events.ts";

export const messageId = () => `msg_${randomBytes(12).toString("base64url")}`;

/**
 * Anthropic signs thinking so its API can check a thought handed back is unaltered. LMX signs
 * nothing and checks nothing: every thinking block carries this same opaque, non-empty string,
 * so clients that require a signature (to send the thought back) have one.
 */
export const THINKING_SIGNATURE = "lmx-unsigned";

/** The core's call id as Anthropic spells tool-use ids; ids sent back by a client are kept as they are. */
export function toolUseId(coreId: string): string {
  return coreId.startsWith("toolu_") ? coreId : `toolu_${coreId.replace(/^call_/, "")}`;
}

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use";

export function stopReasonOf(reason: FinishReason, stopSequence: string | undefined): { stop_reason: StopReason; stop_sequence: string | null } {
  if (reason === "length") return { stop_reason: "max_tokens", stop_sequence: null };
  if (reason === "tool_calls") return { stop_reason: "tool_use", stop_sequence: null };
  return stopSequence === undefined ? { stop_reason: "end_turn", stop_sequence: null } : { stop_reason: "stop_sequence", stop_sequence: stopSequence };
}

/**
 * Anthropic counts cache reads apart from input_tokens (their sum is the prompt). LMX reuses a
 * cached prefix by itself, with no cache_control needed and nothing written on purpose, so
 * cache_creation_input_tokens is always 0.
 */
export function usageJson(u: Pick<Usage, "promptTokens" | "completionTokens" | "cachedTokens">) {
  const cached = u.cachedTokens ?? 0;
  return { input_tokens: u.promptTokens - cached, output_tokens: u.completionTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: cached };
}

/**
 * A call's arguments as the object Anthropic's `input` is. Arguments that are not a JSON object
 * (a call cut short by max_tokens) give an empty object; a streaming client saw the raw text.
 */
export function toolInput(args: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(args);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function messageJson(id: string, model: string, r: GenerationResult) {
  const content: Record<string, unknown>[] = [];
  if (r.reasoning) content.push({ type: "thinking", thinking: r.reasoning, signature: THINKING_SIGNATURE });
  // An empty reply is one empty text block, so `content[0].text` reads as "".
  if (r.text || (r.toolCalls.length === 0 && !r.reasoning)) content.push({ type: "text", text: r.text });
  for (const c of r.toolCalls) content.push({ type: "tool_use", id: toolUseId(c.id), name: c.name, input: toolInput(c.arguments) });
  return {
    id,
    type: "message" as const,
    role: "assistant" as const,
    model,
    content,
    ...stopReasonOf(r.finishReason, r.stopSequence),
    usage: usageJson(r.usage),
  };
}
