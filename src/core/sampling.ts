// Sampling defaults for a request that leaves a setting out: one set for every engine, so a model
// answers alike whatever its format (llama.cpp's own defaults).
import { randomInt } from "node:crypto";
import { rng } from "../util/random.ts";
import type { SamplingOptions } from "./request.ts";

export const SAMPLING_DEFAULTS = { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 } as const;

export type ResolvedSampling = SamplingOptions & { temperature: number; topK: number; topP: number; minP: number; seed: number };

const SEED_SPACE = 2 ** 32;

/**
 * A seed for a request that brought none. Engines left to themselves seed from the clock
 * (node-llama-cpp: the current second), so concurrent requests would sample alike; this comes
 * from the OS's entropy instead.
 */
export function freshSeed(): number {
  return randomInt(0, SEED_SPACE);
}

/** A client's seed (any safe integer) as the unsigned 32-bit seed every engine accepts. */
export function engineSeed(seed: number): number {
  return ((seed % SEED_SPACE) + SEED_SPACE) % SEED_SPACE;
}

/**
 * Seeds of `n` choices of one request: with a client seed, derived from it (the same seed gives
 * the same n outputs, and the first choice matches an n=1 request); without, fresh each.
 */
export function choiceSeeds(seed: number | undefined, n: number): (number | undefined)[] {
  if (seed === undefined) return Array.from({ length: n }, () => undefined);
  const next = rng(engineSeed(seed));
  return Array.from({ length: n }, (_, i) => (i === 0 ? seed : Math.floor(next() * SEED_SPACE)));
}

export function withSamplingDefaults(req: SamplingOptions): ResolvedSampling {
  return {
    ...req,
    temperature: req.temperature ?? SAMPLING_DEFAULTS.temperature,
    topK: req.topK ?? SAMPLING_DEFAULTS.topK,
    topP: req.topP ?? SAMPLING_DEFAULTS.topP,
    minP: req.minP ?? SAMPLING_DEFAULTS.minP,
    seed: req.seed === undefined ? freshSeed() : engineSeed(req.seed),
  };
}
