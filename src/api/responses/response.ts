// The Response object: status, output, usage, and the request's settings echoed as OpenAI does.
import type { Usage } from "../../core/events.ts";
import type { Item } from "./requests.ts";
import type { ResponseBody } from "./schemas.ts";

export type ResponseStatus = "in_progress" | "completed" | "incomplete" | "failed";

export interface ResponseShape {
  id: string;
  createdAt: number;
  body: ResponseBody;
  store: boolean;
}

export function usageOf(u: Usage) {
  return {
    input_tokens: u.promptTokens,
    input_tokens_details: { cached_tokens: u.cachedTokens ?? 0 },
    output_tokens: u.completionTokens,
    output_tokens_details: { reasoning_tokens: u.reasoningTokens ?? 0 },
    total_tokens: u.promptTokens + u.completionTokens,
  };
}

const orNull = <T>(x: T | null | undefined): T | null => (x === undefined ? null : x);

export function responseObject(
  shape: ResponseShape,
  status: ResponseStatus,
  output: Item[],
  usage: Usage | null,
  error: { code: string; message: string } | null = null,
): Item {
  const b = shape.body;
  return {
    id: shape.id,
    object: "response",
    created_at: shape.createdAt,
    status,
    error,
    // Only the budget (max_output_tokens, or the context filling up) cuts a response short here.
    incomplete_details: status === "incomplete" ? { reason: "max_output_tokens" } : null,
    instructions: orNull(b.instructions),
    max_output_tokens: orNull(b.max_output_tokens),
    model: b.model,
    output,
    parallel_tool_calls: b.parallel_tool_calls ?? true,
    previous_response_id: orNull(b.previous_response_id),
    reasoning: { effort: b.reasoning?.effort ?? null, summary: b.reasoning?.summary ?? null },
    store: shape.store,
    temperature: orNull(b.temperature),
    text: { format: b.text?.format ?? { type: "text" }, ...(b.text?.verbosity ? { verbosity: b.text.verbosity } : {}) },
    tool_choice: b.tool_choice ?? "auto",
    tools: b.tools ?? [],
    top_p: orNull(b.top_p),
    truncation: b.truncation ?? "disabled",
    usage: usage ? usageOf(usage) : null,
    user: orNull(b.user),
    metadata: b.metadata ?? {},
  };
}
