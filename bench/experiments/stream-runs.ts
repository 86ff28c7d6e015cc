// How N streams side by side on one context go through runs of tokens (the patch's
// generateTokenRuns): per repetition, the aggregate rate (tokens after each stream's first, from
// the earliest first token to the end), how many addon calls carried how many sequences, their
// mean length asked, and how many decodes went through the batch dispatcher instead. Greedy,
// stories-style prompts, one thread, node-llama-cpp directly (no server).
//
//   bun bench/experiments/stream-runs.ts MODEL.gguf [STREAMS=2] [TOKENS=256] [REPS=3]
//
// Reads internals of node-llama-cpp 3.21.1 as LMX patches it (`_ctx`, `_decodeTokens`).

import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [modelPath, streamsArg, tokensArg, repsArg] = process.argv.slice(2);
if (!modelPath) throw new Error("usage: bun bench/experiments/stream-runs.ts MODEL.gguf [STREAMS] [TOKENS] [REPS]");
const streams = Number(streamsArg ?? 2);
const tokens = Number(tokensArg ?? 256);
const reps = Number(repsArg ?? 3);

type Calls = { generateTokenRuns?: (indexes: Uint32Array, samplers: unknown[], length: number) => Promise<Uint32Array[]> };
type Internals = { _ctx: Calls; _decodeTokens: (...args: unknown[]) => unknown };

const llama = await getLlama({ gpu: false, build: "never", maxThreads: 1, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 4096 * streams, sequences: streams, threads: 1, flashAttention: false });
const internals = context as unknown as Internals;
const native = internals._ctx.generateTokenRuns;
if (typeof native !== "function") throw new Error("this addon has no generateTokenRuns: run `bun scripts/llama-addon.ts install`");

const widths: number[] = [];
const lengths: number[] = [];
let queued = 0;
Object.defineProperty(internals._ctx, "generateTokenRuns", {
  configurable: true,
  value(this: Calls, indexes: Uint32Array, samplers: unknown[], length: number) {
    widths.push(samplers.length);
    lengths.push(length);
    return native.call(this, indexes, samplers, length);
  },
});
const queue = internals._decodeTokens;
internals._decodeTokens = function (this: unknown, ...args: unknown[]) {
  queued++;
  return queue.apply(this, args);
};

const sequences = Array.from({ length: streams }, () => context.getSequence());
for (let rep = 0; rep < reps; rep++) {
  widths.length = 0;
  lengths.length = 0;
  queued = 0;
  await Promise.all(sequences.map((seq) => seq.clearHistory()));
  const firsts: number[] = [];
  let counted = 0;
  await Promise.all(sequences.map(async (seq, i) => {
    let n = 0;
    for await (const _ of seq.evaluate(model.tokenize(`Story ${i}: once upon a time`), { temperature: 0, yieldEogToken: true })) {
      if (n === 0) firsts.push(performance.now());
      if (++n >= tokens) break;
    }
    counted += n - 1;
  }));
  const rate = (counted / (performance.now() - Math.min(...firsts))) * 1000;
  const byWidth: Record<number, number> = {};
  for (const w of widths) byWidth[w] = (byWidth[w] ?? 0) + 1;
  const meanLength = lengths.length > 0 ? lengths.reduce((a, b) => a + b, 0) / lengths.length : 0;
  console.log(`${streams} streams × ${tokens} tokens: ${rate.toFixed(0)} tok/s aggregate; ${widths.length} run calls, by sequences in them ${JSON.stringify(byWidth)}, mean length ${meanLength.toFixed(1)}; ${queued} decodes through the dispatcher`);
}
await context.dispose();
await model.dispose();
await llama.dispose();
