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
// Prints medians with the range. Synthetic models: ../shared/tools/synth_gguf.py (see docs/performance.md).

import { basename } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, type LlamaContext, type LlamaContextSequence, type Token } from "node-llama-cpp";

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

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const spread = (xs: number[], digits: number) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

/** Evaluates `prompt`, then takes `n` greedy tokens; times the prompt and the tokens after the first. */
async function run(seq: LlamaContextSequence, prompt: Token[], n: number): Promise<{ prefillMs: number; afterFirstMs: number }> {
  await seq.clearHistory();
  const start = performance.now();
  let first = 0;
  let count = 0;
  // Random weights reach an end token now and then; the timing needs every token asked for.
  for await (const _ of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
    if (count === 0) first = performance.now();
    if (++count >= n) break;
  }
  return { prefillMs: first - start, afterFirstMs: performance.now() - first };
}

const llama = await getLlama({ gpu: false, build: "never", maxThreads: 0 });
console.log(`node-llama-cpp CPU build, ${threads} threads, ${reps} reps (ABBA), prompt ${promptLength}, ${afterPrompt} tokens after it, decode ${decodeTokens}`);
console.log(["model", "head", "flash", "decode tok/s", `prefill ${promptLength} ms`, `${afterPrompt} tok after prompt ms`].join(" | "));

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
  const results = { on: { decode: [] as number[], prefill: [] as number[], after: [] as number[] }, off: { decode: [] as number[], prefill: [] as number[], after: [] as number[] } };
  // One untimed run each: first-touch page faults and allocations.
  for (const fa of ["on", "off"] as const) await run(seqs[fa], shortPrompt, 8);
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? (["on", "off"] as const) : (["off", "on"] as const);
    for (const fa of order) {
      const d = await run(seqs[fa], shortPrompt, decodeTokens);
      results[fa].decode.push(((decodeTokens - 1) * 1000) / d.afterFirstMs);
      const l = await run(seqs[fa], longPrompt, afterPrompt);
      results[fa].prefill.push(l.prefillMs);
      results[fa].after.push(l.afterFirstMs);
    }
  }
  for (const fa of ["on", "off"] as const) {
    const r = results[fa];
    console.log([basename(path), head, fa, spread(r.decode, 0), spread(r.prefill, 0), spread(r.after, 1)].join(" | "));
  }
  await contexts.on.dispose();
  await contexts.off.dispose();
  await model.dispose();
}
await llama.dispose();
