// A/B of aggregate throughput between this tree and another checkout of LMX (for example the
// commit before a scheduling change), alternating the two servers so machine noise hits both.
//
//   bun bench/experiments/gate-ab.ts MODEL.gguf ID OTHER_CHECKOUT [TOKENS=32] [THREADS=2]
//
// Prints, per stream count (1, 2, 4, 8), the aggregate tokens/s of 3 runs of each tree.

import { join, resolve } from "node:path";
import { concurrent } from "../../src/throughput/probes.ts";
import { startLmx } from "../servers.ts";

const [model, id, other, tokensArg, threadsArg] = process.argv.slice(2);
if (!model || !id || !other) throw new Error("usage: bun bench/experiments/gate-ab.ts MODEL.gguf ID OTHER_CHECKOUT [TOKENS] [THREADS]");
const tokens = Number(tokensArg ?? 32);
const cfg = { modelId: id, modelPath: model, threads: Number(threadsArg ?? 2), parallel: 8, ctx: 1024 };
const trees = { this: "src/cli/main.ts", other: join(resolve(other), "src/cli/main.ts") };
const servers = { this: await startLmx(cfg, { argv: [process.execPath, trees.this] }), other: await startLmx(cfg, { argv: [process.execPath, trees.other] }) };
const out: Record<string, number[]> = {};
try {
  for (const s of Object.values(servers)) await concurrent(s.endpoint, 1, 4, 16, 8);
  for (let rep = 0; rep < 3; rep++) {
    for (const n of [1, 2, 4, 8]) {
      for (const [name, s] of Object.entries(servers)) {
        const r = await concurrent(s.endpoint, rep * 10 + n, n, 16, tokens);
        (out[`${name} ${n} streams`] ??= []).push(Number(r.aggregateTokensPerSecond.toFixed(1)));
      }
    }
  }
  for (const [k, v] of Object.entries(out)) console.log(`${k.padEnd(18)} ${v.join("  ")} tok/s`);
} finally {
  for (const s of Object.values(servers)) await s.stop();
}
