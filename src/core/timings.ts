import type { Timings } from "./events.ts";

const round = (n: number) => Math.round(n * 100) / 100;

/** Throughput figures from token counts and the prefill/decode split, as every engine reports them. */
export function timings(promptTokens: number, completionTokens: number, prefillMs: number, decodeMs: number): Timings {
  return {
    prefillMs: round(prefillMs),
    decodeMs: round(decodeMs),
    prefillTokensPerSecond: prefillMs > 0 ? round((promptTokens / prefillMs) * 1000) : 0,
    // The first token's time is part of prefill, so decode speed counts the tokens after it.
    decodeTokensPerSecond: decodeMs > 0 && completionTokens > 1 ? round(((completionTokens - 1) / decodeMs) * 1000) : 0,
  };
}
