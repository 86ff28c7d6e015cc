// Wall clock and process CPU time of one prompt and the tokens after it on a bare node-llama-cpp
// sequence, for the engine-setting benches (flash attention, batch size, threads). CPU time is
// what they read: on a shared machine time spent descheduled inflates the wall clock, not it.

import type { LlamaContextSequence, Token } from "node-llama-cpp";

/** CPU time of this process (all threads) in ms. */
export const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** "median (min–max)". */
export const spread = (xs: readonly number[], digits = 0): string =>
  `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

export interface EvaluateTimes {
  /** Start → first token: the prompt's evaluation. */
  prefillMs: number;
  prefillCpuMs: number;
  /** First token → the n-th. */
  afterMs: number;
  afterCpuMs: number;
}

/** Evaluates `prompt` on an emptied sequence, then takes `n` greedy tokens. */
export async function timeEvaluate(seq: LlamaContextSequence, prompt: Token[], n: number): Promise<EvaluateTimes> {
  await seq.clearHistory();
  const start = performance.now();
  const startCpu = cpuMs();
  let first = 0;
  let firstCpu = 0;
  let count = 0;
  // Random weights reach an end token now and then; the timing needs every token asked for.
  for await (const _ of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
    if (count === 0) {
      first = performance.now();
      firstCpu = cpuMs();
    }
    if (++count >= n) break;
  }
  return { prefillMs: first - start, prefillCpuMs: firstCpu - startCpu, afterMs: performance.now() - first, afterCpuMs: cpuMs() - firstCpu };
}
