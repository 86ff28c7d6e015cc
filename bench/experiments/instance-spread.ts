// How much a decode figure depends on the server process it was measured in, against how much it
// varies between requests to one process. The bench measures each model's decode on one LMX and
// one llama-server; if two starts of the same binary decode at different speeds (where the
// weights, KV cache and compute buffers land in memory, which core the thread settles on), a ratio
// from one pair carries that luck, however many requests it averages.
//
//   bun bench/experiments/instance-spread.ts MODEL.gguf [--instances K] [--reps R] [--tokens N] [--lmx-bin FILE] [--fa on|off]
//
// Starts K servers of each kind, one after another, alternating the kinds (ABBA), each with the
// bench's settings (1 thread, 8 parallel, ctx 4096 a sequence); after a warm-up, R decodes of N
// tokens each. Prints each instance's median, then per kind the spread of instance medians next to
// the spread within an instance, and the LMX / llama-server ratio of every adjacent pair.

import { resolve } from "node:path";
import * as probe from "../../src/throughput/probes.ts";
import { median } from "../../src/throughput/stats.ts";
import { ensureReferenceServer, REPO_ROOT } from "../llama-build.ts";
import { type RunningServer, type ServerConfig, startLlamaServer, startLmx } from "../servers.ts";

const args = process.argv.slice(2);
const modelPath = args[0] ? resolve(args[0]) : undefined;
if (!modelPath) throw new Error("usage: bun bench/experiments/instance-spread.ts MODEL.gguf [--instances K] [--reps R] [--tokens N] [--lmx-bin FILE] [--fa on|off]");
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i === -1 ? fallback : args[i + 1]!;
};
const instances = Number(opt("--instances", "6"));
const reps = Number(opt("--reps", "5"));
const tokens = Number(opt("--tokens", "64"));
const lmxArgv = args.includes("--lmx-bin") ? [resolve(opt("--lmx-bin", ""))] : [process.execPath, `${REPO_ROOT}/src/cli/main.ts`];
const cfg: ServerConfig = { modelId: "m", modelPath, threads: 1, parallel: 8, ctx: 4096, flashAttention: opt("--fa", "on") as "on" | "off" };
const ref = await ensureReferenceServer();

type Kind = "lmx" | "llama";
const runs: Record<Kind, number[][]> = { lmx: [], llama: [] };
let nonce = 5000;

async function measure(kind: Kind): Promise<number[]> {
  const server: RunningServer = kind === "lmx" ? await startLmx(cfg, { argv: lmxArgv }) : await startLlamaServer(cfg, ref);
  try {
    await probe.completion(server.endpoint, probe.prompt(1, 32), 16);
    const words = await probe.wordsForTokens(server.endpoint, 32);
    const out: number[] = [];
    for (let r = 0; r < reps; r++) out.push((await probe.decode(server.endpoint, nonce++, words, tokens)).tokensPerSecond);
    return out;
  } finally {
    await server.stop();
  }
}

for (let i = 0; i < instances; i++) {
  for (const kind of (i % 2 === 0 ? ["lmx", "llama"] : ["llama", "lmx"]) as Kind[]) {
    const tps = await measure(kind);
    runs[kind].push(tps);
    console.log(`${kind.padEnd(5)} instance ${i + 1}: median ${median(tps).toFixed(2)} tok/s (${Math.min(...tps).toFixed(2)}–${Math.max(...tps).toFixed(2)})`);
  }
}

const pct = (xs: number[]) => ((Math.max(...xs) / Math.min(...xs) - 1) * 100).toFixed(1);
for (const kind of ["lmx", "llama"] as Kind[]) {
  const medians = runs[kind].map(median);
  const within = runs[kind].map(pct).map(Number);
  console.log(`${kind}: instance medians ${Math.min(...medians).toFixed(2)}–${Math.max(...medians).toFixed(2)} (max/min +${pct(medians)}%); within an instance max/min +${median(within).toFixed(1)}% (median over instances)`);
}
const ratios = runs.lmx.map((l, i) => median(l) / median(runs.llama[i]!));
console.log(`pair ratios LMX / llama-server: ${ratios.map((r) => r.toFixed(3)).join(" ")}; median ${median(ratios).toFixed(3)}`);
console.log(`all requests pooled: ${(median(runs.lmx.flat()) / median(runs.llama.flat())).toFixed(3)}`);
