// Tokenizing is synchronous native work: 15 MB of text held the event loop for 18 s only to learn
// that it did not fit. No token is longer than the vocabulary's longest entry, so a prompt of B
// bytes has at least B / longest tokens; when even that exceeds the context, refuse before
// tokenizing. (The vocabulary's stored strings are never shorter than the bytes they stand for:
// byte-level BPE spells each byte as one or two-byte characters, SentencePiece spells a space "▁".)
import { ContextLengthExceededError } from "../../errors.ts";

/** Bytes of the longest vocabulary entry, or undefined when the file lists no tokens. */
export function longestTokenBytes(metadata: unknown): number | undefined {
  const tokens = (metadata as { tokenizer?: { ggml?: { tokens?: readonly unknown[] } } }).tokenizer?.ggml?.tokens;
  if (!tokens?.length) return undefined;
  let longest = 1;
  for (const t of tokens) if (typeof t === "string") longest = Math.max(longest, Buffer.byteLength(t));
  return longest;
}

/** Throws context_length_exceeded when `texts` cannot fit in `contextLength` tokens whatever they tokenize to. */
export function checkPromptBytes(texts: Iterable<string>, longest: number | undefined, contextLength: number, what: string, param: string): void {
  if (longest === undefined) return;
  let bytes = 0;
  for (const t of texts) bytes += Buffer.byteLength(t);
  const atLeast = Math.ceil(bytes / longest);
  if (atLeast > contextLength) {
    throw new ContextLengthExceededError(atLeast, contextLength, `your ${what} has ${bytes} bytes, which is at least ${atLeast} tokens for this model`, param);
  }
}
