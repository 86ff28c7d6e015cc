// What sharding an MLX model across two nodes costs on one machine: the fixture model loaded on
// one LMX, then across two LMX processes on loopback (mlx.distributed ring backend), the same
// greedy completions against each, alternating (ABBA). Reports median decode rate and TTFT.
//
//   bun bench/experiments/distributed-mlx.ts [--reps N] [--tokens N]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { median, round } from "../../src/throughput/stats.ts";
import { mlxTestEnv } from "../../test/helpers/mlx.ts";
import { serveProcess, type ServeProcess } from "../../test/helpers/serve-process.ts";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const reps = flag("--reps", 6);
const tokens = flag("--tokens", 64);
const MODEL = "mlx-qwen2-tiny";

const env = await mlxTestEnv();
const homes = [mkdtempSync(join(tmpdir(), "lmx-bench-a-")), mkdtempSync(join(tmpdir(), "lmx-bench-b-"))];
const common = ["--python", env.python, "--ctx", "1024", "--parallel", "1"];
const studio = await serveProcess(homes[0]!, common);
const laptop = await serveProcess(homes[1]!, [...common, "--peer", `studio=${studio.url}`, "--peer-poll", "1"]);

async function post(node: ServeProcess, path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await node.request(path, { method: "POST", json: body });
  const out = (await r.json()) as Record<string, unknown>;
  if (r.status !== 200) throw new Error(`${path}: ${JSON.stringify(out)}`);
  return out;
}

/** One completion: the engine's decode rate and prefill time as reported in `timings`. */
async function run(): Promise<{ decode: number; ttftMs: number }> {
  const out = await post(laptop, "/v1/completions", { model: MODEL, prompt: "Once upon a time there was", max_tokens: tokens, temperature: 0, ignore_eos: true });
  const t = out.timings as { predicted_per_second: number; prompt_ms: number };
  return { decode: t.predicted_per_second, ttftMs: t.prompt_ms };
}

try {
  for (const node of [laptop, studio]) await post(node, "/admin/v1/import", { paths: [env.model] });
  for (let i = 0; ; i++) {
    const peers = (await (await laptop.request("/admin/v1/peers")).json()) as { data: { state: string }[] };
    if (peers.data[0]?.state === "up") break;
    if (i > 200) throw new Error("the peer never came up");
    await Bun.sleep(50);
  }
  const results: Record<string, { decode: number[]; ttft: number[] }> = { "one node": { decode: [], ttft: [] }, "two nodes": { decode: [], ttft: [] } };
  const load = async (mode: string) => {
    await post(laptop, `/admin/v1/models/${MODEL}/unload`, {});
    await post(laptop, `/admin/v1/models/${MODEL}/load`, mode === "two nodes" ? { nodes: ["local", "studio"] } : {});
    await run();
  };
  for (let r = 0; r < reps; r++) {
    for (const mode of r % 2 === 0 ? ["one node", "two nodes"] : ["two nodes", "one node"]) {
      await load(mode);
      const m = await run();
      results[mode]!.decode.push(m.decode);
      results[mode]!.ttft.push(m.ttftMs);
    }
  }
  const one = results["one node"]!;
  const two = results["two nodes"]!;
  console.log(`${tokens} tokens, ${reps} reps, 1 thread per rank, loopback`);
  console.log(`one node : decode ${round(median(one.decode), 1)} tok/s, prompt ${round(median(one.ttft), 1)} ms`);
  console.log(`two nodes: decode ${round(median(two.decode), 1)} tok/s, prompt ${round(median(two.ttft), 1)} ms`);
  console.log(`per token: +${round(1000 / median(two.decode) - 1000 / median(one.decode), 2)} ms across two ranks`);
} finally {
  await Promise.all([laptop, studio].map((n) => n.signal("SIGTERM").exited));
  for (const h of homes) rmSync(h, { recursive: true, force: true });
}
