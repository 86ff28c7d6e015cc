// What every engine's embeddings go through before an adapter sees them: the request's bounds, and
// the vectors made unit-length (optionally cut to fewer dimensions) the way OpenAI returns them.
// Engines return the pooled vector as the model computes it; doing the rest here keeps one
// definition for every engine and adapter.
import { InvalidRequestError } from "../errors.ts";
import type { EmbeddingInput } from "./request.ts";

/** OpenAI's limit on the number of inputs of one request. */
export const MAX_EMBEDDING_INPUTS = 2048;

/**
 * The request's shape, for adapters that do not validate it themselves (the OpenAI schema
 * already does). Token ids are checked against the vocabulary by the engine, which knows it.
 */
export function checkEmbeddingInputs(inputs: readonly EmbeddingInput[]): void {
  if (inputs.length === 0) throw new InvalidRequestError("input must not be empty", "input");
  if (inputs.length > MAX_EMBEDDING_INPUTS) throw new InvalidRequestError(`input has ${inputs.length} items; at most ${MAX_EMBEDDING_INPUTS} are allowed`, "input");
  for (const [i, input] of inputs.entries()) {
    if (input.length === 0) throw new InvalidRequestError(`input[${i}] is empty`, "input");
    if (typeof input !== "string" && !input.every((t) => Number.isSafeInteger(t) && t >= 0)) {
      throw new InvalidRequestError(`input[${i}] must be text or a list of token ids (non-negative integers)`, "input");
    }
  }
}

/**
 * L2-normalizes `vector`, first keeping only its leading `dimensions` components when asked
 * (what Matryoshka-trained models are made for, and what OpenAI's `dimensions` does). A zero
 * vector stays zero rather than becoming NaN.
 */
export function normalizeEmbedding(vector: readonly number[], dimensions?: number): number[] {
  const kept = dimensions === undefined ? vector : vector.slice(0, dimensions);
  // Scaled by the largest component first, so squaring cannot overflow or underflow.
  let scale = 0;
  for (const x of kept) scale = Math.max(scale, Math.abs(x));
  if (!(scale > 0) || !Number.isFinite(scale)) return [...kept];
  let sum = 0;
  for (const x of kept) sum += (x / scale) ** 2;
  const norm = scale * Math.sqrt(sum);
  return kept.map((x) => x / norm);
}

/** The request's `dimensions` against what `model` produces: more than it has is the client's error. */
export function checkDimensions(model: string, dimensions: number | undefined, produced: number): void {
  if (dimensions === undefined) return;
  if (!Number.isSafeInteger(dimensions) || dimensions < 1) throw new InvalidRequestError("dimensions must be a positive integer", "dimensions");
  if (dimensions > produced) {
    throw new InvalidRequestError(`dimensions is ${dimensions}, but '${model}' produces ${produced}-dimensional embeddings`, "dimensions");
  }
}
