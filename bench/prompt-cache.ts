// Prompt caching for agents: a coding agent resends its whole conversation every turn, so its
// second turn should reach the first token in a fraction of the first turn's time (goal: ≤ 10%
// with a 16k-token prefix). Through real LMX servers in this process, on the engines LMX ships.
// Run by hand, not part of the tests:
//
//   bun bench/prompt-cache.ts [--engines gguf,mlx] [--gguf-models qwen2-tiny-32k,qwen2-0.5b-q8]
//                             [--prefix 16384] [--rr-prefix 4096] [--reps 2] [--threads 2]
//                             [--mlx-prefix 16384] [--python PATH] [--mlx-model DIR]
//
// Rows:
// - two turns: turn 1 = system prompt of --prefix tokens (seeded random common words, a new seed
//   per repetition so nothing is cached from before) + a user message; turn 2 = the same plus a
//   reply and a new user message. TTFT of each, and turn 2 / turn 1.
// - three conversations on --parallel 2 (GGUF): turns 1 of conversations A, B, C (each its own
//   --rr-prefix system prompt), then turns 2 of A, B, C. C's turn 1 takes A's sequence, and each
//   turn 2 finds its conversation in no live sequence: with saved states (--prompt-cache-size,
//   the default 4GB) it is loaded back from disk, without (0) evaluated again. Both servers run in
//   this process, in the order on, off, off, on … (ABBA) over the repetitions.
// TTFT here: the client's wall time of a non-streamed request for one token (max_tokens 1,
// ignore_eos), i.e. request → prompt evaluated → one token sampled → response; `cached` is the
// response's usage.prompt_tokens_details.cached_tokens.
//
// GGUF models (bench/models.ts, both declare 32768 tokens of context): qwen2-tiny-32k, the test
// fixture's tiny shape, whose 16k prompt evaluates in seconds, so turn 2's time is what LMX itself
// costs per request (the ratio's floor for any model); and the synthetic Qwen2-0.5B-shape q8_0
// model, a real model's cost (slow on a shared CPU: a 16k prompt takes minutes). MLX: the test
// fixture (qwen2, 2 layers, 64 wide) copied to declare 32768 tokens (bench/models.ts), or
// --mlx-model; its prefix is --mlx-prefix.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseFlags, resolveSettings } from "../src/config/resolve.ts";
import { serveSettings } from "../src/config/settings.ts";
import { configureLog } from "../src/log.ts";
import { startServer, type RunningServer } from "../src/server.ts";
import { mlxTestEnv } from "../test/helpers/mlx.ts";
import { type BenchModel, mlxTinyLongModel, synthQwen05Model, synthQwenTinyLongModel } from "./models.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    engines: { type: "string", default: "gguf,mlx" },
    "gguf-models": { type: "string", default: "qwen2-tiny-32k,qwen2-0.5b-q8" },
    prefix: { type: "string", default: "16384" },
    "rr-prefix": { type: "string", default: "4096" },
    "mlx-prefix": { type: "string", default: "16384" },
    reps: { type: "string", default: "2" },
    threads: { type: "string", default: "2" },
    python: { type: "string" },
    "mlx-model": { type: "string" },
  },
  strict: true,
});
const engines = values.engines.split(",");
const reps = Number(values.reps);
const threads = Number(values.threads);

const WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part").split(" ");

/** About `n` tokens of text (common words are one token each with a leading space), from a seed. */
function filler(n: number, seed: number): string {
  let x = seed * 2654435761 >>> 0 || 1;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.push(WORDS[x % WORDS.length]!);
  }
  return out.join(" ");
}

type Message = { role: "system" | "user" | "assistant"; content: string };
const turn1 = (prefix: string): Message[] => [{ role: "system", content: prefix }, { role: "user", content: "Read the notes above and fix the failing test." }];
const turn2 = (prefix: string): Message[] => [...turn1(prefix), { role: "assistant", content: "I changed the loop bound in parser.ts." }, { role: "user", content: "It still fails. Look again." }];

interface Timed { ms: number; prompt: number; cached: number }

async function serve(args: string[]): Promise<{ server: RunningServer; home: string }> {
  const home = mkdtempSync(join(tmpdir(), "lmx-bench-cache-"));
  const config = resolveSettings(serveSettings, parseFlags(["--port", "0", "--threads", String(threads), ...args], serveSettings), {}, { values: {}, models: {} });
  return { server: await startServer(config, home, {}, {}), home };
}

async function ask(server: RunningServer, model: string, messages: Message[]): Promise<Timed> {
  const t0 = performance.now();
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages, max_tokens: 1, temperature: 0, ignore_eos: true }),
    // Bun's own option: its fetch otherwise gives up after 300 s without a byte, shorter than a 16k prompt on a busy CPU.
    timeout: false,
  } as RequestInit);
  if (!res.ok) throw new Error(`${model}: ${res.status} ${await res.text()}`);
  const r = (await res.json()) as { usage: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens?: number } } };
  return { ms: performance.now() - t0, prompt: r.usage.prompt_tokens, cached: r.usage.prompt_tokens_details?.cached_tokens ?? 0 };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const range = (xs: number[], digits = 0) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

async function twoTurns(label: string, server: RunningServer, model: string, prefixTokens: number, seedBase: number): Promise<void> {
  const firsts: Timed[] = [];
  const seconds: Timed[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const prefix = filler(prefixTokens, seedBase + rep);
    firsts.push(await ask(server, model, turn1(prefix)));
    seconds.push(await ask(server, model, turn2(prefix)));
  }
  const ratios = firsts.map((f, i) => seconds[i]!.ms / f.ms);
  console.log(`\n${label}: two turns, ${reps} repetitions (median (min–max))`);
  console.log(`  turn 1: ${firsts[0]!.prompt} prompt tokens, TTFT ${range(firsts.map((t) => t.ms))} ms, cached ${range(firsts.map((t) => t.cached))}`);
  console.log(`  turn 2: ${seconds[0]!.prompt} prompt tokens, TTFT ${range(seconds.map((t) => t.ms))} ms, cached ${range(seconds.map((t) => t.cached))}`);
  console.log(`  turn 2 / turn 1: ${range(ratios.map((r) => r * 100), 1)} %  (goal ≤ 10%: ${median(ratios) <= 0.1 ? "met" : "not met"})`);
}

/** Turns 1 of three conversations, then their turns 2, on one server; the turns 2's figures. */
async function roundRobin(server: RunningServer, model: string, prefixTokens: number, seedBase: number): Promise<{ first: Timed[]; second: Timed[] }> {
  const prefixes = [0, 1, 2].map((i) => filler(prefixTokens, seedBase + i));
  const first: Timed[] = [];
  for (const p of prefixes) first.push(await ask(server, model, turn1(p)));
  const second: Timed[] = [];
  for (const p of prefixes) second.push(await ask(server, model, turn2(p)));
  return { first, second };
}

configureLog({ level: "warn" });
const homes: string[] = [];
try {
  console.log(`${new Date().toISOString()}: threads ${threads}, ${reps} repetitions`);
  const ggufModels: Record<string, () => BenchModel> = { "qwen2-tiny-32k": synthQwenTinyLongModel, "qwen2-0.5b-q8": synthQwen05Model };
  for (const name of engines.includes("gguf") ? values["gguf-models"].split(",") : []) {
    const make = ggufModels[name];
    if (!make) throw new Error(`--gguf-models: '${name}' is not one of ${Object.keys(ggufModels).join(", ")}`);
    const model = make();
    console.log(`\nGGUF: ${model.id} (${model.shape})`);
    const prefix = Number(values.prefix);
    {
      const { server, home } = await serve(["--model", `${model.id}=${model.path}`, "--parallel", "2", "--ctx", String(prefix + 1024)]);
      homes.push(home);
      try {
        await ask(server, model.id, turn1("warm up"));
        await twoTurns(`GGUF ${model.id}`, server, model.id, prefix, 100);
      } finally {
        await server.stop();
      }
    }
    const rr = Number(values["rr-prefix"]);
    const results: Record<"on" | "off", { first: Timed[]; second: Timed[] }[]> = { on: [], off: [] };
    const order: ("on" | "off")[] = [];
    for (let rep = 0; rep < reps; rep++) order.push(...(rep % 2 ? ["off", "on"] as const : ["on", "off"] as const));
    for (const [i, mode] of order.entries()) {
      const { server, home } = await serve(["--model", `${model.id}=${model.path}`, "--parallel", "2", "--ctx", String(rr + 1024), ...(mode === "off" ? ["--prompt-cache-size", "0"] : [])]);
      homes.push(home);
      try {
        await ask(server, model.id, turn1("warm up"));
        results[mode].push(await roundRobin(server, model.id, rr, 200 + i * 3));
      } finally {
        await server.stop();
      }
    }
    console.log(`\nGGUF ${model.id}: three conversations on --parallel 2, ${rr}-token prefixes, servers in the order ${order.join(", ")}`);
    for (const mode of ["on", "off"] as const) {
      const runs = results[mode];
      const first = runs.flatMap((r) => r.first);
      const second = runs.flatMap((r) => r.second);
      const ratios = runs.flatMap((r) => r.second.map((s, k) => s.ms / r.first[k]!.ms));
      console.log(`  saved states ${mode === "on" ? "on (4GB)" : "off (0)"}: turn 1 TTFT ${range(first.map((t) => t.ms))} ms; turn 2 TTFT ${range(second.map((t) => t.ms))} ms, cached ${range(second.map((t) => t.cached))} of ${second[0]!.prompt}; turn 2 / turn 1 ${range(ratios.map((r) => r * 100), 1)} %`);
    }
  }
  if (engines.includes("mlx")) {
    const env = values.python && values["mlx-model"] ? undefined : await mlxTestEnv();
    const python = values.python ?? env!.python;
    const dir = values["mlx-model"] ?? mlxTinyLongModel(env!.model);
    const prefix = Number(values["mlx-prefix"]);
    const { server, home } = await serve(["--python", python, "--parallel", "2", "--ctx", String(prefix + 512)]);
    homes.push(home);
    try {
      const imported = (await (await fetch(`${server.url}/admin/v1/import`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ paths: [dir] }) })).json()) as { imported: { id: string }[] };
      const id = imported.imported[0]!.id;
      console.log(`\nMLX: ${id} (${dir}, ${python})`);
      await ask(server, id, turn1("warm up"));
      await twoTurns(`MLX ${id}`, server, id, prefix, 300);
      const rr = await roundRobin(server, id, Math.floor(prefix / 2), 400);
      console.log(`\nMLX ${id}: three conversations on --parallel 2, ${Math.floor(prefix / 2)}-token prefixes: turn 1 TTFT ${range(rr.first.map((t) => t.ms))} ms; turn 2 TTFT ${range(rr.second.map((t) => t.ms))} ms, cached ${range(rr.second.map((t) => t.cached))} of ${rr.second[0]!.prompt}`);
    } finally {
      await server.stop();
    }
  }
} finally {
  for (const home of homes) rmSync(home, { recursive: true, force: true });
}
