// Two streams after warm-up: does a new conversation land on the sequence beside the running one?
// llama.cpp decodes several sequences in one pass only when their ids follow each other. A/B
// between this tree and another checkout, alternating the trees, a fresh server each run:
// three conversations warm sequences 0, 1 and 2; then the third one's next turn (back on
// sequence 2) and a new conversation stream at once. The old rule gave the new one the least
// recently used sequence, 0.
//
//   bun bench/experiments/adjacent-sequences.ts MODEL.gguf ID OTHER_CHECKOUT [REPS=4] [TOKENS=48] [THREADS=1]
//
// Prints each tree's aggregate tokens/s of the two streams per run, and the medians.

import { join, resolve } from "node:path";
import { completion, prompt, streamCompletion } from "../../src/throughput/probes.ts";
import { generationRate } from "../../src/throughput/figures.ts";
import { startLmx } from "../servers.ts";

const [model, id, other, repsArg, tokensArg, threadsArg] = process.argv.slice(2);
if (!model || !id || !other) throw new Error("usage: bun bench/experiments/adjacent-sequences.ts MODEL.gguf ID OTHER_CHECKOUT [REPS] [TOKENS] [THREADS]");
const reps = Number(repsArg ?? 4);
const tokens = Number(tokensArg ?? 48);
const cfg = { modelId: id, modelPath: model, threads: Number(threadsArg ?? 1), parallel: 3, ctx: 512 };
const trees: Record<string, string> = { this: "src/cli/main.ts", other: join(resolve(other), "src/cli/main.ts") };
const rates: Record<string, number[]> = { this: [], other: [] };

for (let rep = 0; rep < reps; rep++) {
  const order = rep % 2 === 0 ? ["this", "other"] : ["other", "this"];
  for (const name of order) {
    const server = await startLmx(cfg, { argv: [process.execPath, trees[name]!] });
    try {
      const ep = server.endpoint;
      const conversation = (k: number) => prompt(rep * 10 + k, 60);
      for (const k of [1, 2, 3]) await completion(ep, conversation(k), 1);
      const runs = await Promise.all([streamCompletion(ep, conversation(3), tokens), streamCompletion(ep, conversation(4), tokens)]);
      rates[name]!.push(Number(generationRate(runs).toFixed(1)));
    } finally {
      await server.stop();
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [name, xs] of Object.entries(rates)) console.log(`${name.padEnd(6)} ${xs.join("  ")} tok/s (median ${median(xs)})`);
