// Flash attention on or off, per model shape, on the engine LMX loads (node-llama-cpp, CPU build):
// what `flash_attention: "auto"` decides is set from these figures (src/engines/llama/flash-attention.ts,
// docs/performance.md). Run by hand, not part of the tests:
//
//   bun bench/flash-attention.ts MODEL.gguf [MODEL.gguf …] [--threads 2] [--reps 4] [--prompt 2048] [--tokens 32] [--decode 128]
//
// Per model, one context with flash attention on and one with it off, measured alternately (ABBA:
// on, off, off, on, …) so machine noise hits both. Per repetition:
//   - decode tok/s: a 16-token prompt, then `--decode` tokens; (tokens − 1) / (last token − first token);
//   - long prompt: `--prompt` tokens, then `--tokens` tokens; the time to evaluate the prompt
//     (to the first token) and the time of the tokens after it (first token → last).
// Each time is taken twice: wall clock, and CPU time of the process (all its threads). On a machine
// shared with other work the CPU time is the steadier figure: time spent descheduled is not in it.
// With more than one thread it also counts llama.cpp's threads spinning at barriers, so read it
// with --threads 1. Prints medians with the range. Synthetic models: ../shared/tools/synth_gguf.py
// (see docs/performance.md).

import { basename } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, type LlamaContext, type Token } from "node-llama-cpp";
import { cpuMs, spread, timeEvaluate } from "./cpu-timing.ts";

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    threads: { type: "string", default: "2" },
    reps: { type: "string", default: "4" },
    prompt: { type: "string", default: "2048" },
    tokens: { type: "string", default: "32" },
    decode: { type: "string", default: "128" },
  },
  allowPositionals: true,
  strict: true,
});
if (positionals.length === 0) throw new Error("usage: bun bench/flash-attention.ts MODEL.gguf [MODEL.gguf …] [--threads N] [--reps N] [--prompt N] [--tokens N] [--decode N]");
const threads = Number(values.threads);
const reps = Number(values.reps);
const promptLength = Number(values.prompt);
const afterPrompt = Number(values.tokens);
const decodeTokens = Number(values.decode);

const llama = await getLlama({ gpu: false, build: "never", maxThreads: 0 });
console.log(`node-llama-cpp CPU build, ${threads} threads, ${reps} reps (ABBA), prompt ${promptLength}, ${afterPrompt} tokens after it, decode ${decodeTokens}`);
console.log(["model", "head", "flash", "decode tok/s (wall)", "decode tok/s (CPU)", `prefill ${promptLength} ms (wall)`, `prefill ${promptLength} CPU ms`, `${afterPrompt} tok after prompt ms (wall)`, `${afterPrompt} tok after prompt CPU ms`].join(" | "));

for (const path of positionals) {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const meta = model.fileInfo.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
  const arch = (meta.general as { architecture?: string }).architecture ?? "";
  const hp = meta[arch] as { embedding_length?: number; attention?: { head_count?: number; key_length?: number } } | undefined;
  const head = hp?.attention?.key_length ?? (hp?.embedding_length ?? 0) / (hp?.attention?.head_count ?? 1);
  const contexts: Record<"on" | "off", LlamaContext> = {
    on: await model.createContext({ contextSize: promptLength + afterPrompt + 64, sequences: 1, threads: { ideal: threads, min: threads }, flashAttention: true }),
    off: await model.createContext({ contextSize: promptLength + afterPrompt + 64, sequences: 1, threads: { ideal: threads, min: threads }, flashAttention: false }),
  };
  const seqs = { on: contexts.on.getSequence(), off: contexts.off.getSequence() };
  const vocab = Math.min(model.fileInfo.metadata.tokenizer.ggml.tokens.length, 30_000);
  // Ordinary tokens (past the control and byte tokens at the start), seeded, the same for both settings.
  const low = Math.floor(vocab / 4);
  let state = 1;
  const token = () => ((state = (state * 48271) % 2147483647), (low + (state % (vocab - low))) as Token);
  const longPrompt = Array.from({ length: promptLength }, token);
  const shortPrompt = longPrompt.slice(0, 16);
  const series = () => ({ decode: [] as number[], decodeCpu: [] as number[], prefill: [] as number[], prefillCpu: [] as number[], after: [] as number[], afterCpu: [] as number[] });
  const results = { on: series(), off: series() };
  // One untimed run each: first-touch page faults and allocations.
  for (const fa of ["on", "off"] as const) await timeEvaluate(seqs[fa], shortPrompt, 8);
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? (["on", "off"] as const) : (["off", "on"] as const);
    for (const fa of order) {
      const d = await timeEvaluate(seqs[fa], shortPrompt, decodeTokens);
      const r = results[fa];
      r.decode.push(((decodeTokens - 1) * 1000) / d.afterMs);
      r.decodeCpu.push(((decodeTokens - 1) * 1000) / d.afterCpuMs);
      const l = await timeEvaluate(seqs[fa], longPrompt, afterPrompt);
      r.prefill.push(l.prefillMs);
      r.prefillCpu.push(l.prefillCpuMs);
      r.after.push(l.afterMs);
      r.afterCpu.push(l.afterCpuMs);
    }
  }
  for (const fa of ["on", "off"] as const) {
    const r = results[fa];
    console.log([basename(path), head, fa, spread(r.decode, 0), spread(r.decodeCpu, 0), spread(r.prefill, 0), spread(r.prefillCpu, 0), spread(r.after, 1), spread(r.afterCpu, 1)].join(" | "));
  }
  await contexts.on.dispose();
  await contexts.off.dispose();
  await model.dispose();
}
await llama.dispose();
