// A raw text completion driven straight through node-llama-cpp's sequence.evaluate: evaluate the
// prompt, sample, feed the token back. LlamaCompletion does the same with stop-trigger detectors, a
// token stream regulator and a detokenization of every token on top, none of which a raw
// completion uses (stop strings are matched in the core); on a model that decodes in ≈0.4 ms that
// machinery cost about a third of the time per token (docs/performance.md, item 4).
// Fill-in-the-middle still goes through LlamaCompletion, which lays out the infill tokens.

import type { LlamaContextSequence, LlamaModel, Token, TokenBias } from "node-llama-cpp";
import { GenerationAbortedError } from "../../errors.ts";

type NodeLlamaCpp = typeof import("node-llama-cpp");

export interface TextLoopOptions {
  maxTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  tokenBias?: TokenBias;
  repeatPenalty: false | { penalty: number; presencePenalty?: number; frequencyPenalty?: number; lastTokens: number };
  signal: AbortSignal;
  /** The core's soft stop: ends the generation as if it were done. */
  stop?: AbortSignal;
}

/** Text of one piece that ends in the middle of a UTF-8 character. */
const PARTIAL = "\uFFFD";
/** A UTF-8 character takes at most 4 bytes, so at most 4 byte tokens are held for one. */
const MAX_HELD = 4;
/** Tokens before a piece that it is decoded against (SentencePiece drops a leading space without them). */
const CONTEXT_TOKENS = 4;

/**
 * Generates after `input` (BOS included) on `seq`, calling `onText` with each piece of text and
 * the tokens it came from. A token whose text ends in half a character is held until the character
 * is whole, so a piece never carries a broken one. Returns why it stopped: an end-of-generation
 * token, max tokens, or the soft stop. A client abort throws GenerationAbortedError.
 */
export async function generateText(
  seq: LlamaContextSequence,
  model: LlamaModel,
  input: Token[],
  options: TextLoopOptions,
  onText: (text: string, tokens: readonly Token[]) => void,
): Promise<"eogToken" | "maxTokens" | "abort"> {
  const prompt = input.slice();
  const last = prompt.pop();
  if (last === undefined) throw new Error("a completion needs at least one input token");
  // Keep what the sequence shares with the input; at least the last token is evaluated, for its logits.
  await seq.adaptStateToTokens(prompt, false);
  const fresh = [...prompt.slice(seq.nextTokenIndex), last];
  seq.tokenPredictor?.updateInputTokens?.(input.slice());
  const generated: Token[] = [];
  const held: Token[] = [];
  const { repeatPenalty } = options;
  const nl = model.tokens.nl;
  const stopAt = extraEndTokens(model);
  const known = piecesOf(model);
  const tokens = seq.evaluate(fresh, {
    temperature: options.temperature,
    topK: options.topK,
    topP: options.topP,
    minP: options.minP,
    seed: options.seed,
    tokenBias: options.tokenBias,
    repeatPenalty: repeatPenalty === false ? undefined : {
      // As LlamaCompletion: the last tokens of the reply, new lines exempt.
      punishTokens: () => generated.slice(-repeatPenalty.lastTokens).filter((t) => t !== nl),
      maxPunishTokens: repeatPenalty.lastTokens,
      penalty: repeatPenalty.penalty,
      presencePenalty: repeatPenalty.presencePenalty,
      frequencyPenalty: repeatPenalty.frequencyPenalty,
    },
    yieldEogToken: true,
  });
  const decode = () => model.detokenize(held, false, generated.length >= CONTEXT_TOKENS ? generated.slice(-CONTEXT_TOKENS) : input.concat(generated).slice(-CONTEXT_TOKENS));
  const release = (text: string) => {
    const piece = held.splice(0);
    for (const t of piece) generated.push(t);
    onText(text, piece);
  };
  let count = 0;
  for await (const token of tokens) {
    if (options.signal.aborted) throw new GenerationAbortedError();
    if (model.isEogToken(token) || stopAt?.has(token)) {
      if (held.length > 0) release(decode());
      return "eogToken";
    }
    held.push(token);
    count++;
    // Past the first tokens a piece's text depends on the token alone: decoded once per model.
    const settled = held.length === 1 && generated.length >= CONTEXT_TOKENS;
    let text = settled ? known.get(token) : undefined;
    if (text === undefined) {
      text = decode();
      if (settled && !text.includes(PARTIAL)) known.set(token, text);
    }
    if (held.length >= MAX_HELD || !text.endsWith(PARTIAL)) release(text);
    if (count >= options.maxTokens || options.stop?.aborted) {
      if (held.length > 0) release(decode());
      return count >= options.maxTokens ? "maxTokens" : "abort";
    }
  }
  if (held.length > 0) release(decode());
  return "maxTokens";
}

const pieces = new WeakMap<LlamaModel, Map<Token, string>>();

/**
 * Text of each token the model has generated, as it reads after other text (the leading space
 * SentencePiece drops at the start of a text is kept). Decoding against context tokens takes two
 * native calls, ≈16 µs a token: 4% of a 0.4 ms decode. Bounded by the vocabulary.
 */
function piecesOf(model: LlamaModel): Map<Token, string> {
  let known = pieces.get(model);
  if (!known) pieces.set(model, (known = new Map()));
  return known;
}

const extraEnds = new WeakMap<LlamaModel, Set<Token> | null>();

/**
 * Tokens that end a raw completion besides end-of-generation ones: Gemma's file separator and
 * fill-in-the-middle prefix (as node-llama-cpp's LlamaCompletion ends there).
 */
function extraEndTokens(model: LlamaModel): Set<Token> | null {
  let ends = extraEnds.get(model);
  if (ends !== undefined) return ends;
  const arch = model.fileInfo.metadata?.general?.architecture;
  ends = null;
  if (arch === "gemma" || arch === "gemma2") {
    const found = ["<|file_separator|>", "<|fim_prefix|>"].map((text) => model.tokenize(text, true)).filter((t) => t.length === 1).map((t) => t[0]!);
    if (found.length > 0) ends = new Set(found);
  }
  extraEnds.set(model, ends);
  return ends;
}

/**
 * node-llama-cpp's ending options: `signal` alone rejects on abort; with the core's soft stop, either
 * signal ends generation with the response so far (`stopOnAbortSignal`), and the caller turns a
 * client abort back into a rejection.
 */
export function until(signal: AbortSignal, stop?: AbortSignal): { signal: AbortSignal; stopOnAbortSignal?: boolean } {
  return stop ? { signal: AbortSignal.any([signal, stop]), stopOnAbortSignal: true } : { signal };
}

/**
 * Fill-in-the-middle through node-llama-cpp's LlamaCompletion, which lays out the prefix, suffix
 * and marker tokens the model expects. `generated` collects the tokens as they are reported.
 */
export async function generateInfill(
  nlc: NodeLlamaCpp,
  seq: LlamaContextSequence,
  prefix: Token[],
  suffix: string,
  options: TextLoopOptions,
  generated: Token[],
  onText: (text: string, tokens: readonly Token[]) => void,
): Promise<string> {
  const model = seq.model;
  const completion = new nlc.LlamaCompletion({ contextSequence: seq, autoDisposeSequence: false });
  const { signal, stop, ...sampling } = options;
  try {
    const res = await completion.generateInfillCompletionWithMeta(prefix, suffix, {
      ...sampling,
      ...until(signal, stop),
      onToken: (t) => {
        // Decoded against the tokens before it: node-llama-cpp's own text chunks decode the first
        // piece alone, and SentencePiece then drops its leading space (" time" became "time").
        const text = model.detokenize(t, false, generated.length >= CONTEXT_TOKENS ? generated.slice(-CONTEXT_TOKENS) : [...prefix.slice(-CONTEXT_TOKENS), ...generated].slice(-CONTEXT_TOKENS));
        generated.push(...t);
        onText(text, t);
      },
      disableContextShift: true,
    });
    return res.metadata.stopReason;
  } finally {
    completion.dispose({ disposeSequence: false });
  }
}
