// patches/node-llama-cpp+3.21.1.patch, AddonSampler::sampleGreedyDirectly: greedy sampling with
// only token biases before it takes the maximum over the logits in one pass, instead of writing a
// candidate entry for every token of the vocabulary first. It must pick what the whole chain
// picks. An XTC sampler with probability 0 changes nothing in the result but keeps the chain, so
// the two paths are compared on the same context. Real engine, stories260K, one thread.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Llama, type LlamaModel, type Token, TokenBias } from "node-llama-cpp";
import { generate, loadStories, unloadStories } from "./helpers/llama-internals.ts";

let llama: Llama;
let model: LlamaModel;
beforeAll(async () => ({ llama, model } = await loadStories()));
afterAll(() => unloadStories({ llama, model }));

const PROMPTS = ["Once upon a time", "Tom and Sue went to the park. They saw", "The little dog was sad because"];
/** Keeps the sampler chain without changing what greedy sampling selects. */
const KEEP_CHAIN = { probability: 0, threshold: 0.1 };

function noEog(): TokenBias {
  const bias = new TokenBias(model.tokenizer);
  const vocab = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly unknown[] } } }).tokenizer?.ggml?.tokens?.length ?? 0;
  for (let t = 0; t < vocab; t++) if (model.isEogToken(t as Token)) bias.set(t as Token, "never");
  return bias;
}

describe("greedy sampling straight from the logits", () => {
  test("selects what the whole sampler chain selects, with and without token biases", async () => {
    const context = await model.createContext({ contextSize: 1024, sequences: 1, threads: 1, flashAttention: false });
    try {
      const seq = context.getSequence();
      const run = async (prompt: string, options: Parameters<typeof generate>[4]) => {
        await seq.clearHistory();
        return generate(seq, model.tokenize(prompt), 64, undefined, options);
      };
      for (const prompt of PROMPTS) {
        const plain = await run(prompt, { temperature: 0, tokenBias: noEog() });
        expect(plain).toEqual(await run(prompt, { temperature: 0, tokenBias: noEog(), xtc: KEEP_CHAIN }));

        // Biases that change the answer: the plain answer's third token never, token 0 and the
        // first generated token raised (token 0 is where the one pass starts).
        const biased = () => {
          const bias = noEog();
          bias.set(plain[2]!, "never");
          bias.set(0 as Token, 2.5);
          bias.set(plain[0]!, 1.5);
          return bias;
        };
        const direct = await run(prompt, { temperature: 0, tokenBias: biased() });
        expect(direct).not.toEqual(plain);
        expect(direct).not.toContain(plain[2]);
        expect(direct).toEqual(await run(prompt, { temperature: 0, tokenBias: biased(), xtc: KEEP_CHAIN }));
      }
    } finally {
      await context.dispose();
    }
  });
});
