// What the pieces of node-llama-cpp's per-token work cost on their own, to size the changes
// proposed in docs/performance.md ("The change to propose to node-llama-cpp") before making them:
// resolving the sampler settings (`_resolveSamplerConfig`, run for every token), handing them to
// the native sampler (`applyConfig`, which rebuilds nothing when they did not change), the
// `needsCheckpoints` getter (two uncached addon calls, read per batch), and the two thread-pool
// round trips of a generated token: `decodeBatch` of one token, then `sampleToken`, against
// `sampleToken` alone on the same logits.
//
//   bun bench/experiments/token-js-cost.ts MODEL.gguf [REPS]
//
// Internal APIs of node-llama-cpp 3.21.1 (underscored members, the sampler class by path): this
// measures that version and is expected to need changes with another.

import { getLlama, type LlamaModel, LlamaLogLevel, TokenBias } from "node-llama-cpp";
import { cpuMs, spread } from "../cpu-timing.ts";

/** Internal to node-llama-cpp (no typings are published for it). */
type NativeSampler = { applyConfig(config: object): void; _sampler: unknown };
const { LlamaSampler } = (await import("../../node_modules/node-llama-cpp/dist/evaluator/LlamaContext/LlamaSampler.js")) as {
  LlamaSampler: new (model: LlamaModel) => NativeSampler;
};

const path = process.argv[2];
if (!path) throw new Error("usage: bun bench/experiments/token-js-cost.ts MODEL.gguf [REPS]");
const reps = Number(process.argv[3] ?? 5);

const llama = await getLlama({ gpu: false, build: "never", maxThreads: 1, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 512, sequences: 1, threads: 1, flashAttention: false });
/** The members this reads are internal to node-llama-cpp; typed here only as far as they are used. */
interface Internals {
  _resolveSamplerConfig(options: object): object;
  needsCheckpoints: boolean;
}
const publicSequence = context.getSequence();
const sequence = publicSequence as unknown as Internals;
const native = (context as unknown as { _ctx: NativeContext })._ctx;
interface NativeContext {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(batchLogitIndex: number, sampler: unknown): Promise<number>;
  disposeSequence(sequenceId: number): void;
}
const sampler = new LlamaSampler(model);

// LMX's settings for a streamed completion with ignore_eos (a bias on the end tokens), with and
// without a repeat penalty (its window is a function, read again for every token).
const bias = new TokenBias(model.tokenizer);
for (const token of [model.tokens.eos, model.tokens.eot]) if (token != null) bias.set(token, "never");
const window = Array.from({ length: 64 }, (_, i) => i + 1);
const settings = {
  "greedy, bias": { temperature: 0, seed: 7, tokenBias: bias },
  "sampled, bias, penalty": { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed: 7, tokenBias: bias, repeatPenalty: { penalty: 1.1, punishTokens: () => window } },
};

/** µs of CPU per call, one figure per round of `n` calls (`per` calls counted per round's call). */
async function perCall(n: number, call: (i: number) => unknown, per = 1): Promise<number[]> {
  const rounds: number[] = [];
  for (let r = 0; r < reps; r++) {
    const start = cpuMs();
    for (let i = 0; i < n; i++) await call(i);
    rounds.push(((cpuMs() - start) / (n * per)) * 1000);
  }
  return rounds;
}
const row = (what: string, us: number[]) => console.log(`${what.padEnd(52)} ${spread(us, 2)} µs CPU`);

for (const [name, options] of Object.entries(settings)) {
  row(`_resolveSamplerConfig (${name})`, await perCall(50_000, () => sequence._resolveSamplerConfig(options)));
  const config = sequence._resolveSamplerConfig(options);
  sampler.applyConfig({ ...config });
  row(`applyConfig, unchanged (${name})`, await perCall(50_000, () => sampler.applyConfig({ ...config })));
}
row("needsCheckpoints", await perCall(200_000, () => sequence.needsCheckpoints));

// One generated token's native work: a one-token decode, then sampling its logits (greedy).
sampler.applyConfig(sequence._resolveSamplerConfig(settings["greedy, bias"]));
const tokens = 256;
row(`decodeBatch + sampleToken (1 token, ≤ ${tokens} cached)`, await perCall(tokens, async (i) => {
  if (i === 0) native.disposeSequence(0);
  native.initBatch(1);
  const [logitIndex] = native.addToBatch(0, i, Uint32Array.from([model.tokens.bos ?? 1]), Uint32Array.from([0]));
  await native.decodeBatch();
  await native.sampleToken(logitIndex!, sampler._sampler);
}));
row("sampleToken alone (one more round trip)", await perCall(5_000, () => native.sampleToken(0, sampler._sampler)));
// Wall time the JavaScript thread spends inside the decodeBatch call itself, handing the work to
// the runtime's thread pool, before it can do anything else.
const handOff: number[] = [];
for (let r = 0; r < reps; r++) {
  native.disposeSequence(0);
  let inCall = 0;
  for (let i = 0; i < tokens; i++) {
    native.initBatch(1);
    native.addToBatch(0, i, Uint32Array.from([model.tokens.bos ?? 1]), Uint32Array.from([0]));
    const start = performance.now();
    const decoded = native.decodeBatch();
    inCall += performance.now() - start;
    await decoded;
  }
  handOff.push((inCall / tokens) * 1000);
}
console.log(`${"decodeBatch, inside the call (wall)".padEnd(52)} ${spread(handOff, 2)} µs`);

// The same tokens through node-llama-cpp's own loop (what LMX's raw completions drive): the
// difference to the native calls above is its JavaScript per token.
const prompt = model.tokenize("Once upon a time");
row(`sequence.evaluate, per token (${tokens} tokens)`, await perCall(1, async () => {
  native.disposeSequence(0); // the native calls above filled it behind the sequence's back
  await publicSequence.clearHistory();
  let n = 0;
  for await (const _ of publicSequence.evaluate(prompt, settings["greedy, bias"])) if (++n >= tokens) break;
}, tokens));

await context.dispose();
await model.dispose();
await llama.dispose();
