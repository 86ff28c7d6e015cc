// Time to first token of short streamed requests, and the prefill rate of longer ones, over many
// more requests than the quick bench's ten: compiled LMX binaries (an older and a newer one, say)
// and the same-kernel llama-server, in alternating order, on prompts that share no prefix (the
// bench's own probes). Each server's mean count of cached prompt tokens is printed, so a reader can
// check that all of them evaluated the same prompts.
//
//   bun bench/experiments/short-requests.ts MODEL.gguf --lmx-bin FILE [--lmx-bin FILE:nocache ...]
//                                           [--tokens 32] [--reps 300] [--fa off] [--threads 1]
//
// `FILE:nocache` serves that binary with `--prompt-cache-size 0` (no saved prompt states).

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ensureReferenceServer } from "../llama-build.ts";
import { type RunningServer, startLlamaServer, startLmx } from "../servers.ts";
import * as probe from "../../src/throughput/probes.ts";
import { median, percentile } from "../../src/throughput/stats.ts";

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  allowPositionals: true,
  options: {
    "lmx-bin": { type: "string", multiple: true, default: [] },
    tokens: { type: "string", default: "32" },
    reps: { type: "string", default: "300" },
    fa: { type: "string", default: "off" },
    threads: { type: "string", default: "1" },
  },
});
const modelPath = positionals[0];
if (!modelPath || values["lmx-bin"].length === 0) throw new Error("usage: bun bench/experiments/short-requests.ts MODEL.gguf --lmx-bin FILE [--lmx-bin FILE ...] [--tokens N] [--reps N]");
const cfg = { modelId: "m", modelPath: resolve(modelPath), threads: Number(values.threads), parallel: 8, ctx: 4096, flashAttention: values.fa === "on" ? ("on" as const) : ("off" as const) };
const tokens = Number(values.tokens);
const reps = Number(values.reps);

const servers: { label: string; server: RunningServer }[] = [];
try {
  for (const spec of values["lmx-bin"]) {
    const [bin, option] = spec.split(":");
    servers.push({ label: spec, server: await startLmx(cfg, { argv: [resolve(bin!)], extraArgs: option === "nocache" ? ["--prompt-cache-size", "0"] : [] }) });
  }
  servers.push({ label: "llama-server", server: await startLlamaServer(cfg, await ensureReferenceServer()) });
  const words = await probe.wordsForTokens(servers.at(-1)!.server.endpoint, tokens);
  // Fills every sequence and slot, so each counted request takes one that holds another prompt.
  for (const { server } of servers) for (let i = 0; i < 2 * cfg.parallel; i++) await probe.prefill(server.endpoint, 500 + i, words);
  const samples = new Map(servers.map(({ label }) => [label, [] as probe.PrefillResult[]]));
  for (let rep = 0; rep < reps; rep++) {
    for (const { label, server } of rep % 2 ? [...servers].reverse() : servers) {
      samples.get(label)!.push(await probe.prefill(server.endpoint, 10_000 + rep, words));
    }
  }
  const ref = samples.get("llama-server")!;
  console.log(`${positionals[0]}: ${reps} streamed requests per server of ≈${tokens} prompt tokens (${words} words), alternating`);
  console.log(`${"server".padEnd(24)} ${"TTFT p25".padStart(9)} ${"p50".padStart(7)} ${"prefill tok/s p50".padStart(18)} ${"p50 of ratios".padStart(14)} ${"cached/request".padStart(15)}`);
  for (const [label, s] of samples) {
    const ttft = s.map((x) => x.ttftMs);
    // Per request against llama-server's request with the same prompt: prompts near a multiple of
    // 256 tokens cost twice as much past it (the KV cells attention reads are padded to 256).
    const ratios = s.map((x, i) => x.tokensPerSecond / ref[i]!.tokensPerSecond);
    const cached = s.reduce((a, x) => a + x.cachedTokens, 0) / s.length;
    console.log(`${label.padEnd(24)} ${percentile(ttft, 25).toFixed(2).padStart(9)} ${median(ttft).toFixed(2).padStart(7)} ` +
      `${median(s.map((x) => x.tokensPerSecond)).toFixed(0).padStart(18)} ${median(ratios).toFixed(3).padStart(14)} ${cached.toFixed(1).padStart(15)}`);
  }
} finally {
  for (const { server } of servers) await server.stop();
}
