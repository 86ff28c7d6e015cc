// Engine settings LMX chooses for node-llama-cpp contexts and models, measured on the engine LMX loads
// (node-llama-cpp, CPU build); docs/performance.md "Engine settings" has the figures and the choices.
// Run by hand, not part of the tests:
//
//   bun bench/engine-settings.ts batch   MODEL.gguf [--batches 128,256,512,2048] [--prompts 256,2048] [--reps 4]
//   bun bench/engine-settings.ts threads MODEL.gguf [--prompts 256] [--decode 64] [--reps 4]
//   bun bench/engine-settings.ts mmap    MODEL.gguf [--reps 4] [--cold]
//
// batch: one context per batch size (1 thread), each prompt length evaluated to its first token;
//   the order of the batch sizes turns round every repetition (ABBA). Also the RSS a context adds
//   after its first long prompt (its KV cache plus the compute buffer it touched).
// threads: a 1-thread and a 2-thread context on the same model, ABBA; prefill (prompt → first token)
//   and decode (a 16-token prompt, then `--decode` tokens; first token → last).
// mmap: each repetition loads the model in a fresh child process per setting (mmap, no mmap,
//   mmap + mlock), ABBA; times loadModel and "ready" (loadModel + context + one evaluated token),
//   RSS after. `--cold` first drops the file's pages from the page cache (posix_fadvise DONTNEED via
//   python3), so the load reads from disk.
// Every time is taken as wall clock and as the process's CPU time (all threads); on a shared machine
// the CPU time is the steadier figure. Flash attention follows LMX's auto choice for the model.

import { basename } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import { cpuMs, spread, timeEvaluate } from "./cpu-timing.ts";
import { chooseFlashAttention } from "../src/engines/llama/flash-attention.ts";
import { attentionHeadSize } from "../src/gguf/hparams.ts";
import { validateGgufModel } from "../src/gguf/model.ts";

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    batches: { type: "string", default: "128,256,512,1024,2048" },
    prompts: { type: "string", default: "256,2048" },
    decode: { type: "string", default: "64" },
    reps: { type: "string", default: "4" },
    cold: { type: "boolean", default: false },
    child: { type: "string" },
  },
  allowPositionals: true,
  strict: true,
});
const [mode, path] = positionals;
if (!path || !["batch", "threads", "mmap"].includes(mode ?? "")) throw new Error("usage: bun bench/engine-settings.ts batch|threads|mmap MODEL.gguf [options]");
const reps = Number(values.reps);
const list = (s: string) => s.split(",").map(Number);

const rssMb = () => process.memoryUsage().rss / 2 ** 20;
/** ABBA over any number of settings: forward on even repetitions, backward on odd ones. */
const order = <T>(xs: readonly T[], rep: number) => (rep % 2 === 0 ? [...xs] : [...xs].reverse());

function promptTokens(model: LlamaModel, length: number): Token[] {
  const vocab = Math.min(model.fileInfo.metadata.tokenizer.ggml.tokens.length, 30_000);
  const low = Math.floor(vocab / 4);
  let state = 1;
  return Array.from({ length }, () => ((state = (state * 48271) % 2147483647), (low + (state % (vocab - low))) as Token));
}

const flash = chooseFlashAttention("auto", false, attentionHeadSize(validateGgufModel(path).header.metadata)).option;
const llama = await getLlama({ gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error });

if (values.child !== undefined) {
  // One load in this fresh process: {"useMmap":…,"useMlock":…} in, one JSON line of figures out.
  const opts = JSON.parse(values.child) as { useMmap: boolean; useMlock: boolean };
  const t0 = performance.now();
  const c0 = cpuMs();
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0, ...opts });
  const loadMs = performance.now() - t0;
  const loadCpuMs = cpuMs() - c0;
  const ctx = await model.createContext({ contextSize: 512, sequences: 1, threads: { ideal: 1, min: 1 }, flashAttention: flash });
  await timeEvaluate(ctx.getSequence(), promptTokens(model, 8), 1);
  console.log(JSON.stringify({ loadMs, loadCpuMs, readyMs: performance.now() - t0, readyCpuMs: cpuMs() - c0, rssMb: rssMb() }));
  process.exit(0);
}

console.log(`${mode}: ${basename(path)}, flash attention ${flash ? "on" : "off"} (LMX auto), ${reps} reps (ABBA)`);

if (mode === "batch") {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const prompts = list(values.prompts);
  const longest = Math.max(...prompts);
  const sizes = list(values.batches);
  const contexts = new Map<number, LlamaContextSequence>();
  const addedMb = new Map<number, number>();
  for (const size of sizes) {
    const before = rssMb();
    const ctx = await model.createContext({ contextSize: longest + 64, sequences: 1, batchSize: size, threads: { ideal: 1, min: 1 }, flashAttention: flash });
    const seq = ctx.getSequence();
    contexts.set(size, seq);
    await timeEvaluate(seq, promptTokens(model, longest), 1);
    addedMb.set(size, rssMb() - before);
  }
  const wall = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const push = (m: Map<string, number[]>, k: string, v: number) => m.set(k, [...(m.get(k) ?? []), v]);
  for (let rep = 0; rep < reps; rep++) {
    for (const size of order(sizes, rep)) {
      for (const length of prompts) {
        const t = await timeEvaluate(contexts.get(size)!, promptTokens(model, length), 1);
        push(wall, `${size}/${length}`, t.prefillMs);
        push(cpu, `${size}/${length}`, t.prefillCpuMs);
      }
    }
  }
  console.log(["batch", "RSS added MB", ...prompts.flatMap((p) => [`prefill ${p} CPU ms`, `prefill ${p} wall ms`])].join(" | "));
  for (const size of sizes) {
    console.log([size, addedMb.get(size)!.toFixed(0), ...prompts.flatMap((p) => [spread(cpu.get(`${size}/${p}`)!), spread(wall.get(`${size}/${p}`)!)])].join(" | "));
  }
}

if (mode === "threads") {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const prompts = list(values.prompts);
  const decode = Number(values.decode);
  const counts = [1, 2] as const;
  const seqs = new Map<number, LlamaContextSequence>();
  for (const n of counts) {
    const ctx = await model.createContext({ contextSize: Math.max(...prompts) + decode + 64, sequences: 1, threads: { ideal: n, min: n }, flashAttention: flash });
    const seq = ctx.getSequence();
    seqs.set(n, seq);
    await timeEvaluate(seq, promptTokens(model, 16), 4);
  }
  const r = new Map<string, number[]>();
  const push = (k: string, v: number) => r.set(k, [...(r.get(k) ?? []), v]);
  for (let rep = 0; rep < reps; rep++) {
    for (const n of order(counts, rep)) {
      for (const length of prompts) {
        const t = await timeEvaluate(seqs.get(n)!, promptTokens(model, length), 1);
        push(`${n} prefill${length} wall`, t.prefillMs);
        push(`${n} prefill${length} cpu`, t.prefillCpuMs);
      }
      const d = await timeEvaluate(seqs.get(n)!, promptTokens(model, 16), decode);
      push(`${n} decode wall`, ((decode - 1) * 1000) / d.afterMs);
      push(`${n} decode cpu`, d.afterCpuMs / (decode - 1));
    }
  }
  console.log(["threads", ...prompts.flatMap((p) => [`prefill ${p} wall ms`, `prefill ${p} CPU ms`]), "decode tok/s (wall)", "decode CPU ms/token"].join(" | "));
  for (const n of counts) {
    console.log([n, ...prompts.flatMap((p) => [spread(r.get(`${n} prefill${p} wall`)!), spread(r.get(`${n} prefill${p} cpu`)!)]), spread(r.get(`${n} decode wall`)!, 1), spread(r.get(`${n} decode cpu`)!, 1)].join(" | "));
  }
}

if (mode === "mmap") {
  const settings = { mmap: { useMmap: true, useMlock: false }, "no mmap": { useMmap: false, useMlock: false }, "mmap + mlock": { useMmap: true, useMlock: true } };
  const names = Object.keys(settings) as (keyof typeof settings)[];
  const r = new Map<string, Record<string, number>[]>();
  for (let rep = 0; rep < reps; rep++) {
    for (const name of order(names, rep)) {
      if (values.cold) Bun.spawnSync(["python3", "-c", "import os,sys; f=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(f, 0, 0, os.POSIX_FADV_DONTNEED)", path]);
      const child = Bun.spawnSync(["nice", "-n", "0", process.execPath, import.meta.path, "mmap", path, "--child", JSON.stringify(settings[name])], { stderr: "inherit" });
      const line = child.stdout.toString().trim().split("\n").at(-1) ?? "";
      if (child.exitCode !== 0 || !line.startsWith("{")) throw new Error(`child for ${name} failed (exit ${child.exitCode}): ${line}`);
      r.set(name, [...(r.get(name) ?? []), JSON.parse(line) as Record<string, number>]);
    }
  }
  console.log(["setting", "loadModel wall ms", "loadModel CPU ms", "ready wall ms", "ready CPU ms", "RSS MB"].join(" | "));
  for (const name of names) {
    const xs = r.get(name)!;
    const col = (k: string) => spread(xs.map((x) => x[k]!));
    console.log([name, col("loadMs"), col("loadCpuMs"), col("readyMs"), col("readyCpuMs"), col("rssMb")].join(" | "));
  }
}
await llama.dispose();
