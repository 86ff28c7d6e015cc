// Sampling defaults for a request that leaves a setting out: one set for every engine, so a model
// answers alike whatever its format (llama.cpp's own defaults).
import type { SamplingOptions } from "./request.ts";

export const SAMPLING_DEFAULTS = { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 } as const;

export type ResolvedSampling = SamplingOptions & { temperature: number; topK: number; topP: number; minP: number };

export function withSamplingDefaults(req: SamplingOptions): ResolvedSampling {
  return {
    ...req,
    temperature: req.temperature ?? SAMPLING_DEFAULTS.temperature,
    topK: req.topK ?? SAMPLING_DEFAULTS.topK,
    topP: req.topP ?? SAMPLING_DEFAULTS.topP,
    minP: req.minP ?? SAMPLING_DEFAULTS.minP,
  };
}
