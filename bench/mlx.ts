// LMX over HTTP against mlx-lm itself, on one MLX model: `mlx_lm.generate` (the library, no
// server) and `mlx_lm.server` (its own HTTP server), with greedy decoding of the same chat prompt.
// Prints tokens per second for each and LMX's ratio to both. Run by hand, not part of the tests:
//
//   bun bench/mlx.ts [--model DIR] [--python PATH] [--tokens 128] [--runs 3] [--concurrency 4]
//
// Defaults: the test fixture model and the test runtime (both built on first use, see
// test/helpers/mlx.ts). Numbers from the tiny fixture measure per-token overhead, not model speed.

import { parseArgs } from "node:util";
import { configureLog } from "../src/log.ts";
import { mlxTestEnv } from "../test/helpers/mlx.ts";
import { startTestServer } from "../test/helpers/server.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    model: { type: "string" },
    python: { type: "string" },
    tokens: { type: "string", default: "128" },
    runs: { type: "string", default: "3" },
    concurrency: { type: "string", default: "4" },
  },
  strict: true,
});
const tokens = Number(values.tokens);
const runs = Number(values.runs);
const concurrency = Number(values.concurrency);
const PROMPT = "Write a short story about a lighthouse keeper.";

configureLog({ level: "warn" });
const env = values.model && values.python ? undefined : await mlxTestEnv();
const model = values.model ?? env!.model;
const python = values.python ?? env!.python;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number) => x.toFixed(1).padStart(8);

interface Row { name: string; decode: number; endToEnd: number; parallel?: number }
const rows: Row[] = [];

// ---- mlx_lm.generate: the library's own CLI, which prints its generation speed ----
{
  const decode: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const t0 = performance.now();
    const p = Bun.spawnSync([python, "-m", "mlx_lm", "generate", "--model", model, "--prompt", PROMPT, "--max-tokens", String(tokens), "--temp", "0"], { stdout: "pipe", stderr: "pipe" });
    const out = p.stdout.toString();
    const gen = /Generation: (\d+) tokens, ([\d.]+) tokens-per-sec/.exec(out);
    const prompt = /Prompt: (\d+) tokens, ([\d.]+) tokens-per-sec/.exec(out);
    if (!gen || !prompt) throw new Error(`mlx_lm.generate printed no timings:\n${out}\n${p.stderr.toString().slice(-2000)}`);
    if (i === 0) continue; // warm-up: bytecode and page cache
    decode.push(Number(gen[2]));
    // Excludes process start and model load: prompt time + generation time, as an HTTP client sees them.
    const seconds = Number(prompt[1]) / Number(prompt[2]) + Number(gen[1]) / Number(gen[2]);
    wall.push(Number(gen[1]) / seconds);
    void t0;
  }
  rows.push({ name: "mlx_lm.generate", decode: median(decode), endToEnd: median(wall) });
}

async function httpBench(name: string, url: string, modelName: string, extra: object = {}): Promise<Row> {
  const body = { model: modelName, messages: [{ role: "user", content: PROMPT }], max_tokens: tokens, temperature: 0, ...extra };
  const one = async () => {
    const t0 = performance.now();
    const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const j = (await r.json()) as { usage: { completion_tokens: number }; timings?: { predicted_per_second: number } };
    return { seconds: (performance.now() - t0) / 1000, n: j.usage.completion_tokens, decode: j.timings?.predicted_per_second };
  };
  await one(); // warm-up (and model load)
  const e2e: number[] = [];
  const decode: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await one();
    e2e.push(r.n / r.seconds);
    if (r.decode) decode.push(r.decode);
  }
  const t0 = performance.now();
  const all = await Promise.all(Array.from({ length: concurrency }, one));
  const parallel = all.reduce((a, r) => a + r.n, 0) / ((performance.now() - t0) / 1000);
  return { name, decode: decode.length ? median(decode) : median(e2e), endToEnd: median(e2e), parallel };
}

// ---- mlx_lm.server ----
{
  const port = 18_000 + Math.floor(Math.random() * 1000);
  const server = Bun.spawn([python, "-m", "mlx_lm", "server", "--model", model, "--port", String(port)], { stdout: "ignore", stderr: "ignore" });
  try {
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 600; i++) {
      try {
        if ((await fetch(`${url}/health`)).ok) break;
      } catch {
        // not listening yet
      }
      await Bun.sleep(100);
    }
    rows.push(await httpBench("mlx_lm.server", url, model));
  } finally {
    server.kill();
    await server.exited;
  }
}

// ---- LMX ----
{
  await using s = await startTestServer(["--python", python, "--parallel", String(Math.max(concurrency, 1)), "--threads", "0"]);
  const imported = (await (await s.request("/admin/v1/import", { method: "POST", json: { paths: [model] } })).json()) as { imported: { id: string }[]; skipped: { reason: string }[] };
  const id = imported.imported[0]?.id ?? imported.skipped[0]?.reason.replace(/^already registered as /, "");
  if (!id) throw new Error("could not register the model with LMX");
  rows.push(await httpBench("LMX (HTTP)", s.url, id));
}

const lmx = rows.find((r) => r.name === "LMX (HTTP)")!;
console.log(`model ${model}, ${tokens} tokens greedy, median of ${runs} runs, ${concurrency} concurrent requests for the parallel column`);
console.log(`${"".padEnd(18)}${"decode t/s".padStart(12)}${"end-to-end t/s".padStart(16)}${"parallel t/s".padStart(14)}`);
for (const r of rows) console.log(`${r.name.padEnd(18)}${fmt(r.decode).padStart(12)}${fmt(r.endToEnd).padStart(16)}${(r.parallel ? fmt(r.parallel) : "-").padStart(14)}`);
for (const other of rows.filter((r) => r !== lmx)) {
  const par = other.parallel && lmx.parallel ? `, parallel ${(lmx.parallel / other.parallel).toFixed(2)}x` : "";
  console.log(`LMX / ${other.name}: decode ${(lmx.decode / other.decode).toFixed(2)}x, end-to-end ${(lmx.endToEnd / other.endToEnd).toFixed(2)}x${par}`);
}
