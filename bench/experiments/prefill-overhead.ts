// Where a short prefill's time goes outside the model: LMX (as users run it, and with saved
// prompt states off) against the same-kernel llama-server, one new conversation per request (each
// prompt differs from the first word on, so nothing is cached). Per request: the client's wall
// time, the server's own prompt time (`timings.prompt_ms`: LMX from taking a sequence to the first
// token, llama-server from the slot's start to its prompt's end) and the difference. The servers
// alternate (ABBA…); the first `parallel` requests to each only fill its sequences and are not
// counted, so every counted request takes a sequence that holds another conversation.
//
//   bun bench/experiments/prefill-overhead.ts MODEL.gguf [--words 104] [--reps 31] [--threads 1]
//                                             [--parallel 8] [--ctx 4096] [--fa off]

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { median } from "../cpu-timing.ts";
import { ensureReferenceServer } from "../llama-build.ts";
import { type RunningServer, startLlamaServer, startLmx } from "../servers.ts";
import { prompt } from "../../src/throughput/probes.ts";

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  allowPositionals: true,
  options: {
    words: { type: "string", default: "104" },
    reps: { type: "string", default: "31" },
    threads: { type: "string", default: "1" },
    parallel: { type: "string", default: "8" },
    ctx: { type: "string", default: "4096" },
    fa: { type: "string", default: "off" },
  },
});
if (!positionals[0]) throw new Error("usage: bun bench/experiments/prefill-overhead.ts MODEL.gguf [--words N] [--reps N]");
const cfg = {
  modelId: "m", modelPath: resolve(positionals[0]), threads: Number(values.threads), parallel: Number(values.parallel),
  ctx: Number(values.ctx), flashAttention: values.fa === "on" ? ("on" as const) : ("off" as const),
};
const words = Number(values.words);
const reps = Number(values.reps);

const lmx = { argv: [process.execPath, resolve(import.meta.dir, "../../src/cli/main.ts")] };
const runs: { label: string; server: RunningServer }[] = [
  { label: "lmx", server: await startLmx(cfg, lmx) },
  { label: "lmx, --prompt-cache-size 0", server: await startLmx(cfg, { ...lmx, extraArgs: ["--prompt-cache-size", "0"] }) },
  { label: "llama-server", server: await startLlamaServer(cfg, await ensureReferenceServer()) },
];
type Sample = { wall: number; promptMs: number; tokens: number };
const samples = new Map<string, Sample[]>(runs.map((r) => [r.label, []]));
try {
  for (let rep = -cfg.parallel; rep < reps; rep++) {
    for (const { label, server } of rep % 2 ? [...runs].reverse() : runs) {
      const start = performance.now();
      const res = await server.endpoint.complete({ model: cfg.modelId, prompt: prompt(50_000 + rep, words), max_tokens: 1, temperature: 0 });
      const body = (await res.json()) as { timings?: { prompt_ms?: number }; usage?: { prompt_tokens?: number } };
      const wall = performance.now() - start;
      if (rep >= 0) samples.get(label)!.push({ wall, promptMs: body.timings?.prompt_ms ?? Number.NaN, tokens: body.usage?.prompt_tokens ?? Number.NaN });
    }
  }
} finally {
  for (const { server } of runs) await server.stop();
}
console.log(`${positionals[0]}: ${reps} requests each, ${words} words, medians (ms)`);
console.log(`${"server".padEnd(28)} ${"prompt tokens".padStart(13)} ${"wall".padStart(8)} ${"prompt_ms".padStart(10)} ${"outside".padStart(8)}`);
for (const [label, s] of samples) {
  const cells = [median(s.map((x) => x.tokens)), median(s.map((x) => x.wall)), median(s.map((x) => x.promptMs)), median(s.map((x) => x.wall - x.promptMs))];
  console.log(`${label.padEnd(28)} ${String(cells[0]).padStart(13)} ${cells.slice(1).map((c) => c.toFixed(1).padStart(8)).join("  ")}`);
}
