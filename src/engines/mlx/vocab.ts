// Whether two MLX model folders' tokenizers give token ids the same meaning, read from their
// tokenizer.json before anything is loaded: a draft model must propose the ids the model reads.
// The worker checks again with the tokenizers mlx-lm loads (native/mlx_worker/speculative.py), so
// a folder this cannot read is left to it.

import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** Larger tokenizer.json files are left to the worker's check rather than parsed on the server's thread. */
const MAX_TOKENIZER_BYTES = 64 * 1024 * 1024;

interface Vocabulary {
  type: string;
  /** Token text by id, vocabulary and added tokens together. */
  tokens: Map<number, string>;
}

function vocabulary(dir: string): Vocabulary | undefined {
  const path = join(dir, "tokenizer.json");
  try {
    if (!existsSync(path) || !statSync(path).isFile() || statSync(path).size > MAX_TOKENIZER_BYTES) return undefined;
    const json = JSON.parse(readFileSync(path, "utf8")) as { model?: { type?: unknown; vocab?: unknown }; added_tokens?: unknown };
    const tokens = new Map<number, string>();
    const vocab = json.model?.vocab;
    if (Array.isArray(vocab)) vocab.forEach((entry, i) => { if (Array.isArray(entry) && typeof entry[0] === "string") tokens.set(i, entry[0]); });
    else if (vocab && typeof vocab === "object") {
      for (const [text, id] of Object.entries(vocab)) if (typeof id === "number") tokens.set(id, text);
    } else return undefined;
    for (const t of Array.isArray(json.added_tokens) ? json.added_tokens : []) {
      const added = t as { id?: unknown; content?: unknown };
      if (typeof added.id === "number" && typeof added.content === "string") tokens.set(added.id, added.content);
    }
    return { type: String(json.model?.type ?? ""), tokens };
  } catch {
    return undefined;
  }
}

/** Why `draft`'s token ids mean other text than `target`'s, or undefined (the same, or not readable here). */
export function mlxVocabularyMismatch(target: string, draft: string): string | undefined {
  if (target === draft) return undefined;
  const a = vocabulary(target);
  const b = vocabulary(draft);
  if (!a || !b) return undefined;
  if (a.type !== b.type) return `tokenizer types differ (${a.type || "unknown"} vs ${b.type || "unknown"})`;
  if (a.tokens.size !== b.tokens.size) return `vocabulary sizes differ (${a.tokens.size} vs ${b.tokens.size} tokens)`;
  for (const [id, text] of a.tokens) if (b.tokens.get(id) !== text) return `token ${id} differs`;
  return undefined;
}
