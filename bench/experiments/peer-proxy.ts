// What a peer hop costs: the same streamed completions sent straight to an LMX ("studio") and
// through another LMX that has it as a peer, alternating (ABBA) so machine noise hits both.
// Reports the median time to first token and time per later token, each way, and the difference.
//
//   bun bench/experiments/peer-proxy.ts [MODEL.gguf] [--reps N] [--tokens N]

import { resolve } from "node:path";
import { httpEndpoint, prompt, streamCompletion, type StreamTiming } from "../../src/throughput/probes.ts";
import { median, round } from "../../src/throughput/stats.ts";
import { REPO_ROOT } from "../llama-build.ts";
import { startLmx } from "../servers.ts";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const modelPath = resolve(args.find((a) => a.endsWith(".gguf")) ?? resolve(REPO_ROOT, "../shared/models/stories260K.gguf"));
const reps = flag("--reps", 20);
const tokens = flag("--tokens", 128);
const cfg = { modelId: "m", modelPath, threads: 1, parallel: 1, ctx: 1024 };
const launch = { argv: [process.execPath, "src/cli/main.ts"] };

const studio = await startLmx(cfg, launch);
const laptop = await startLmx(cfg, { ...launch, extraArgs: ["--peer", `studio=${studio.endpoint.baseUrl}`, "--peer-poll", "1"] });
try {
  for (let i = 0; ; i++) {
    const { data } = (await (await fetch(`${laptop.endpoint.baseUrl}/admin/v1/peers`)).json()) as { data: { state: string }[] };
    if (data[0]?.state === "up") break;
    if (i > 200) throw new Error("the peer never came up");
    await Bun.sleep(50);
  }
  const direct = httpEndpoint("direct", studio.endpoint.baseUrl, "m");
  // The laptop has its own "m", so the peer's is listed and addressed as studio/m.
  const viaPeer = httpEndpoint("via peer", laptop.endpoint.baseUrl, "studio/m");
  const runs: Record<string, StreamTiming[]> = { direct: [], "via peer": [] };
  await streamCompletion(direct, prompt(0, 16), 8);
  await streamCompletion(viaPeer, prompt(0, 16), 8);
  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? [direct, viaPeer, viaPeer, direct] : [viaPeer, direct, direct, viaPeer];
    for (const [k, ep] of order.entries()) runs[ep.label]!.push(await streamCompletion(ep, prompt(r * 4 + k + 1, 16), tokens));
  }
  const summary = Object.fromEntries(Object.entries(runs).map(([label, t]) => [label, {
    ttftMs: round(median(t.map((x) => x.ttftMs))),
    perTokenMs: round(median(t.map((x) => (x.totalMs - x.ttftMs) / Math.max(1, x.completionTokens - 1))), 3),
    tokens: median(t.map((x) => x.completionTokens)),
  }]));
  const d = summary.direct!;
  const p = summary["via peer"]!;
  console.log(JSON.stringify({ model: modelPath, reps: reps * 2, ...summary, overhead: { ttftMs: round(p.ttftMs - d.ttftMs), perTokenMs: round(p.perTokenMs - d.perTokenMs, 3) } }, null, 2));
} finally {
  await laptop.stop();
  await studio.stop();
}
