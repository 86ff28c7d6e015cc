// Concurrent streams, LMX against the same-kernel llama-server, over many more rounds than the
// quick bench's two: one server of each kind with the bench's settings, and per round, for each
// stream count, one batch of N streamed completions on each server in alternating order (ABBA), so
// a noisy neighbour hits both. Prints per stream count each server's median aggregate rate (the
// bench's "aggregate<N>" definition), the median of the rounds' LMX / llama-server ratios with its
// quartiles, and each server's N-stream rate over its own 1-stream rate.
//
//   bun bench/experiments/streams-ab.ts MODEL.gguf [--streams 1,4,8] [--rounds 20] [--tokens 128]
//                                       [--lmx-bin FILE] [--fa on|off] [--threads 1]

import { resolve } from "node:path";
import * as probe from "../../src/throughput/probes.ts";
import { median, percentile } from "../../src/throughput/stats.ts";
import { ensureReferenceServer, REPO_ROOT } from "../llama-build.ts";
import { type RunningServer, type ServerConfig, startLlamaServer, startLmx } from "../servers.ts";

const args = process.argv.slice(2);
const modelPath = args[0] ? resolve(args[0]) : undefined;
if (!modelPath) throw new Error("usage: bun bench/experiments/streams-ab.ts MODEL.gguf [--streams 1,4,8] [--rounds 20] [--tokens 128] [--lmx-bin FILE] [--fa on|off] [--threads 1]");
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i === -1 ? fallback : args[i + 1]!;
};
const counts = opt("--streams", "1,4,8").split(",").map(Number);
if (!counts.includes(1)) counts.unshift(1);
const rounds = Number(opt("--rounds", "20"));
const tokens = Number(opt("--tokens", "128"));
const lmxArgv = args.includes("--lmx-bin") ? [resolve(opt("--lmx-bin", ""))] : [process.execPath, `${REPO_ROOT}/src/cli/main.ts`];
const cfg: ServerConfig = { modelId: "m", modelPath, threads: Number(opt("--threads", "1")), parallel: 8, ctx: 4096, flashAttention: opt("--fa", "off") as "on" | "off" };

type Kind = "lmx" | "llama";
const ref = await ensureReferenceServer();
const servers: Partial<Record<Kind, RunningServer>> = {};
try {
  servers.lmx = await startLmx(cfg, { argv: lmxArgv });
  servers.llama = await startLlamaServer(cfg, ref);
  for (const s of Object.values(servers)) {
    await probe.completion(s.endpoint, probe.prompt(1, 32), 16);
    await probe.concurrent(s.endpoint, 2, 4, 16, 8);
  }
  const words = await probe.wordsForTokens(servers.llama.endpoint, 32);
  const rates: Record<number, Record<Kind, number[]>> = Object.fromEntries(counts.map((n) => [n, { lmx: [], llama: [] }]));
  let nonce = 7000;
  for (let r = 0; r < rounds; r++) {
    for (const n of counts) {
      for (const kind of (r % 2 === 0 ? ["lmx", "llama"] : ["llama", "lmx"]) as Kind[]) {
        rates[n]![kind].push((await probe.concurrent(servers[kind]!.endpoint, nonce++, n, words, tokens)).aggregateTokensPerSecond);
      }
    }
    process.stderr.write(`round ${r + 1}/${rounds}\r`);
  }
  console.log(`\n${rounds} rounds, ${tokens} tokens a stream, ${cfg.threads} thread(s), flash attention ${cfg.flashAttention}`);
  for (const n of counts) {
    const { lmx, llama } = rates[n]!;
    const ratios = lmx.map((v, i) => v / llama[i]!);
    const scale = (k: Kind) => (median(rates[n]![k]) / median(rates[1]![k])).toFixed(2);
    console.log(
      `${n} stream(s): LMX ${median(lmx).toFixed(1)} tok/s, llama-server ${median(llama).toFixed(1)}; ` +
        `ratio median ${median(ratios).toFixed(3)} (quartiles ${percentile(ratios, 25).toFixed(3)}–${percentile(ratios, 75).toFixed(3)}); ` +
        `over 1 stream: LMX ${scale("lmx")}, llama-server ${scale("llama")}`,
    );
  }
} finally {
  for (const s of Object.values(servers)) await s.stop();
}
