// The context-length contract: a prompt that does not fit the model's context (with room for at
// least one token) is a 400 naming the numbers; nothing is ever truncated silently. A max_tokens
// beyond the room left is not an error: generation stops when the context is full, with the
// "length" reason, as llama-server does. Agents ask for more than small contexts hold (Claude Code
// sends max_tokens 32000), and a 400 would make every smaller model unusable to them.
import { ContextLengthExceededError } from "../errors.ts";

export type PromptKind = "messages" | "prompt";

/** The error for a prompt of `promptTokens` that leaves no room in `contextLength`. */
export function contextExceeded(promptTokens: number, contextLength: number, what: PromptKind): ContextLengthExceededError {
  return new ContextLengthExceededError(promptTokens, contextLength, `your ${what} ${what === "messages" ? "have" : "has"} ${promptTokens} tokens, leaving no room for a completion`, what);
}

/** Tokens the completion may take: `maxTokens` or the room left, whichever is less; throws when the prompt leaves no room. */
export function completionBudget(promptTokens: number, maxTokens: number | undefined, contextLength: number, what: PromptKind): number {
  if (promptTokens >= contextLength) throw contextExceeded(promptTokens, contextLength, what);
  return Math.min(maxTokens ?? Infinity, contextLength - promptTokens);
}

/** Prompts up to this many UTF-16 units are tokenized at once: that takes well under a millisecond. */
const CHECK_FROM_CHARS = 64 * 1024;
const CHUNK_CHARS = 32 * 1024;
/**
 * Tokens a chunk boundary may add to a count (a merge split in two, a leading-space marker, a byte
 * sequence cut apart), so counting in chunks never refuses a prompt that would fit.
 */
const BOUNDARY_SLACK = 3;

/** `text` cut into pieces of at most CHUNK_CHARS, at whitespace where there is some, never inside a surrogate pair. */
function* chunks(text: string): Generator<string> {
  let start = 0;
  while (start < text.length) {
    let end = Math.min(start + CHUNK_CHARS, text.length);
    if (end < text.length) {
      const space = text.lastIndexOf(" ", end);
      if (space > start + CHUNK_CHARS / 2) end = space;
      else if (/[\uD800-\uDBFF]/.test(text[end - 1]!)) end--;
    }
    yield text.slice(start, end);
    start = end;
  }
}

/**
 * Refuses, before the real tokenization, a prompt whose texts cannot fit `contextLength` tokens.
 * Tokenizing is synchronous native work (15 MB held the event loop for 18 s), so a long prompt is
 * counted in chunks with a turn of the event loop between them, and counting stops as soon as the
 * prompt is sure not to fit: other requests (and /health) are served meanwhile, and a prompt that
 * passes is at most about a context long, which tokenizes quickly.
 */
export async function checkPromptLength(texts: readonly string[], countTokens: (text: string) => number, contextLength: number, what: PromptKind): Promise<void> {
  let chars = 0;
  for (const t of texts) chars += t.length;
  if (chars <= CHECK_FROM_CHARS) return;
  let tokens = 0;
  let pieces = 0;
  for (const text of texts) {
    for (const piece of chunks(text)) {
      tokens += countTokens(piece);
      pieces++;
      const atLeast = tokens - pieces * BOUNDARY_SLACK;
      if (atLeast > contextLength) throw contextExceeded(atLeast, contextLength, what);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
}
