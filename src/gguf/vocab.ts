// Whether a draft model can propose tokens to a target model: speculative decoding passes token
// ids between them, so the ids must mean the same text. The rule is llama.cpp's own (its
// speculative-decoding compatibility check, which node-llama-cpp runs at generation time), applied
// to the GGUF metadata before any weights are loaded so a mismatch is refused with a clear message.
import { isArray, type GgufValue } from "./reader.ts";

/** Vocabulary sizes may differ by this much (padding tokens at the end). */
const MAX_SIZE_DIFFERENCE = 128;
/** The first ids are control tokens whose text differs between conversions of one vocabulary. */
const CHECK_FROM = 5;

const SPECIAL = ["tokenizer.ggml.model", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"];

/** Why the draft's vocabulary does not fit the target's, or undefined when it does. */
export function vocabularyMismatch(target: ReadonlyMap<string, GgufValue>, draft: ReadonlyMap<string, GgufValue>): string | undefined {
  for (const key of SPECIAL) {
    const a = target.get(key);
    const b = draft.get(key);
    if (isArray(a) || isArray(b) || a !== b) return `${key} differs (${String(a)} vs ${String(b)})`;
  }
  const a = target.get("tokenizer.ggml.tokens");
  const b = draft.get("tokenizer.ggml.tokens");
  const ta = isArray(a) ? a.strings : undefined;
  const tb = isArray(b) ? b.strings : undefined;
  if (!ta || !tb) return "a vocabulary is missing";
  if (Math.abs(ta.length - tb.length) > MAX_SIZE_DIFFERENCE) return `vocabulary sizes differ (${ta.length} vs ${tb.length} tokens)`;
  const n = Math.min(ta.length, tb.length);
  for (let i = CHECK_FROM; i < n; i++) if (ta[i] !== tb[i]) return `token ${i} differs`;
  return undefined;
}
