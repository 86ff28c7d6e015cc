// Per-token log-probabilities, logit bias and token text for the llama.cpp engine.
//
// node-llama-cpp's LlamaChat and LlamaCompletion sample without handing out the distributions they
// sampled from, so logprobs are computed after the generation, on the same sequence: the generated
// tail is erased from the KV cache and evaluated again in one batch, asking for the next-token
// distribution at each position. The sequence then holds the same tokens as before, so prompt
// caching across turns is unaffected. Streamed logprobs therefore arrive once the text is out.
import type { LlamaContextSequence, LlamaModel, Token, TokenBias } from "node-llama-cpp";
import type { TokenLogprob } from "../../core/events.ts";
import { EngineError, InvalidRequestError } from "../../errors.ts";

type NodeLlamaCpp = typeof import("node-llama-cpp");

/** OpenAI's ±100 are the ends of the scale: -100 bans the token outright, as clients expect. */
const BAN = -100;
/** Tokens before the scored one that its text is decoded against (SentencePiece drops a leading space otherwise). */
const TEXT_CONTEXT = 4;
/** Positions scored per evaluation: bounds the distributions (one per position, vocabulary-sized) held at once. */
const SCORE_CHUNK = 16;
/** The floor for a probability that underflowed to zero, so every logprob stays a finite JSON number. */
const MIN_LOGPROB = -9999;

/** Number of tokens in the model's vocabulary, from its GGUF metadata. */
export function vocabularySize(model: LlamaModel): number {
  const tokens = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly unknown[] } } }).tokenizer?.ggml?.tokens;
  return tokens?.length ?? 0;
}

/** The bias table of a TokenBias: `TokenBias.set` skips end-of-generation tokens, which a client may well mean to bias. */
function biasTable(bias: TokenBias): Map<number, number> {
  const table = (bias as unknown as { _biases?: unknown })._biases;
  if (!(table instanceof Map)) throw new EngineError("logit_bias is not supported by this llama.cpp engine version", "unsupported_parameter");
  return table as Map<number, number>;
}

/**
 * The request's logit bias (token id → -100..100, added to the logit; -100 bans), merged over
 * `base` (ignore_eos's ban on end-of-generation tokens). Ids outside the vocabulary are a 400.
 */
export function tokenBiasFor(nlc: NodeLlamaCpp, model: LlamaModel, logitBias: Record<number, number> | undefined, base: TokenBias | undefined): TokenBias | undefined {
  if (!logitBias || Object.keys(logitBias).length === 0) return base;
  const vocab = vocabularySize(model);
  const bias = new nlc.TokenBias(model.tokenizer);
  const table = biasTable(bias);
  if (base) for (const [t, v] of biasTable(base)) table.set(t, v);
  for (const [key, value] of Object.entries(logitBias)) {
    const id = Number(key);
    if (!(id < vocab)) throw new InvalidRequestError(`logit_bias: token id ${id} is not in the model's vocabulary (${vocab} tokens)`, "logit_bias");
    // ignore_eos's ban stands: a positive bias must not bring an end-of-generation token back.
    if (table.get(id) === -Infinity) continue;
    table.set(id, value <= BAN ? -Infinity : value);
  }
  return bias;
}

/** The text a token adds after `before` (the tokens preceding it). */
export function tokenText(model: LlamaModel, token: Token, before: readonly Token[]): string {
  return model.detokenize([token], true, before.slice(-TEXT_CONTEXT));
}

function logprobOf(p: number | undefined): number {
  return p !== undefined && p > 0 ? Math.max(Math.log(p), MIN_LOGPROB) : MIN_LOGPROB;
}

/** The `k` most likely entries of a distribution, most likely first. */
function topOf(probabilities: Map<Token, number>, k: number): [Token, number][] {
  const best: [Token, number][] = [];
  if (k <= 0) return best;
  for (const entry of probabilities) {
    if (best.length === k && entry[1] <= best[k - 1]![1]) continue;
    let i = best.length < k ? best.length : k - 1;
    best[i] = entry;
    while (i > 0 && best[i - 1]![1] < best[i]![1]) {
      [best[i - 1], best[i]] = [best[i]!, best[i - 1]!];
      i--;
    }
  }
  return best;
}

export interface ScoreOptions {
  /** Alternatives per position (0-20). */
  top: number;
  bias: TokenBias | undefined;
  /** Score the prompt too (echo), from this index of the context on (after BOS); its first token gets null. */
  promptFrom?: number;
}

/**
 * Log-probabilities of `generated` (the tokens the generation just produced on `seq`, in order)
 * with the `top` most likely alternatives at each position: the model's distribution after logit
 * bias, before temperature and truncation (top-k, top-p, min-p) and penalties. `prompt` is what
 * the generation started from, and the scoring context if the sequence no longer ends with
 * `generated` (a chat wrapper may have re-rendered it).
 */
export async function scoreGenerated(
  model: LlamaModel,
  seq: LlamaContextSequence,
  prompt: readonly Token[],
  generated: readonly Token[],
  { top, bias, promptFrom }: ScoreOptions,
): Promise<TokenLogprob[]> {
  const held = seq.contextTokens;
  // Where the generated tokens start in the sequence: it ends with all of them, or all but the
  // last (a sampled token is only evaluated when the next one is asked for).
  let start = -1;
  for (const m of [generated.length, generated.length - 1]) {
    const s = held.length - m;
    if (m >= 0 && s >= 1 && generated.slice(0, m).every((t, i) => held[s + i] === t)) { start = s; break; }
  }
  const context = start >= 1 ? held.slice(0, start) : [...prompt];
  if (context.length === 0) throw new EngineError("cannot score the generated tokens: no prompt before them");
  const all = [...context, ...generated];
  // The first scored position: the first generated token, or with echo the second prompt token.
  const first = promptFrom === undefined ? context.length : Math.min(promptFrom + 1, all.length);
  const out: TokenLogprob[] = [];
  if (promptFrom !== undefined && promptFrom < context.length) {
    // Decoded alone, as the start of a text: SentencePiece's word-start marker is no space there.
    const text = tokenText(model, all[promptFrom]!, []);
    out.push({ token: text, bytes: [...Buffer.from(text, "utf8")], logprob: null, top: [] });
  }
  if (first >= all.length) return out;
  // Keep the shared prefix; evaluate from the token whose logits predict the first scored one.
  let keep = 0;
  while (keep < Math.min(held.length, first - 1) && held[keep] === all[keep]) keep++;
  if (keep < held.length) await seq.eraseContextTokenRanges([{ start: keep, end: held.length }]);
  // The tokens before the first scored one only refill the cache; then the rest in chunks, since
  // each position's distribution covers the whole vocabulary (150k entries for Qwen).
  if (first - 1 > keep) await seq.controlledEvaluate(all.slice(keep, first - 1));
  const options = { probabilities: true, options: { temperature: 0, tokenBias: bias } } as const;
  for (let from = first; from < all.length; from += SCORE_CHUNK) {
    const to = Math.min(all.length, from + SCORE_CHUNK);
    // The token at pos - 1 predicts the one at pos.
    const input = all.slice(from - 1, to - 1).map((t) => [t, { generateNext: options }]);
    const evaluated = await seq.controlledEvaluate(input as Parameters<LlamaContextSequence["controlledEvaluate"]>[0]);
    for (let pos = from; pos < to; pos++) {
      const probabilities = evaluated[pos - from]?.next.probabilities;
      if (!probabilities) throw new EngineError("cannot score the generated tokens: the engine returned no distribution");
      const before = all.slice(Math.max(0, pos - TEXT_CONTEXT), pos);
      const token = all[pos]!;
      const text = tokenText(model, token, before);
      const alternatives = topOf(probabilities, top).map(([t, p]) => ({ token: tokenText(model, t, before), logprob: logprobOf(p) }));
      out.push({ token: text, bytes: [...Buffer.from(text, "utf8")], logprob: logprobOf(probabilities.get(token)), top: alternatives });
    }
  }
  return out;
}
