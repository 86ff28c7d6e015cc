// The context-length contract: prompt + max_tokens must fit the model's context. A request that
// does not fit is a 400 naming both numbers; nothing is ever truncated silently.
import { ContextLengthExceededError } from "../errors.ts";

export type PromptKind = "messages" | "prompt";

/** The error for a prompt of `promptTokens` (+ `maxTokens`) that does not fit `contextLength`. */
export function contextExceeded(promptTokens: number, maxTokens: number | undefined, contextLength: number, what: PromptKind): ContextLengthExceededError {
  const detail = maxTokens !== undefined
    ? `you requested ${promptTokens} tokens in the ${what} and ${maxTokens} in the completion`
    : `your ${what} has ${promptTokens} tokens, leaving no room for a completion`;
  return new ContextLengthExceededError(promptTokens + (maxTokens ?? 0), contextLength, detail, what);
}

/** Tokens the completion may take: `maxTokens` when it fits, else the room left; throws when nothing fits. */
export function completionBudget(promptTokens: number, maxTokens: number | undefined, contextLength: number, what: PromptKind): number {
  if (maxTokens !== undefined) {
    if (promptTokens + maxTokens > contextLength) throw contextExceeded(promptTokens, maxTokens, contextLength, what);
    return maxTokens;
  }
  if (promptTokens >= contextLength) throw contextExceeded(promptTokens, undefined, contextLength, what);
  return contextLength - promptTokens;
}
