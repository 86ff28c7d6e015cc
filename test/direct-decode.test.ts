// patches/node-llama-cpp+3.21.1.patch, the single-stream path: a sequence that evaluates alone on
// its context decodes its prompt (when it fits in one batch) and each token straight through the
// addon instead of node-llama-cpp's batch dispatcher, and a generation in progress keeps its thread reservation instead of setting and
// clearing a 0 ms timer for every token (docs/performance.md, "Decoding a lone stream"). Real
// engine, stories260K, one thread.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Llama, LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { type AddonContextInternals, generate, lastKvPosition, loadStories, override, requireNative, unloadStories, watch as watchAll } from "./helpers/llama-internals.ts";

let llama: Llama;
let model: LlamaModel;
beforeAll(async () => ({ llama, model } = await loadStories()));
afterAll(() => unloadStories({ llama, model }));

/** Counts as watchAll does, with runs of tokens in one addon call off (test/token-runs.test.ts). */
function watch(context: LlamaContext) {
  const watched = watchAll(context);
  watched.ctx._tokenRuns = { maxTokenMs: 0, targetMs: 0, maxTokens: 0 };
  return watched;
}

describe("a lone generation decodes without the batch dispatcher", () => {
  test("same tokens and the same sequence state as through the dispatcher", async () => {
    const context = await model.createContext({ contextSize: 512, sequences: 2, threads: 1, flashAttention: false });
    try {
      const { ctx, counts } = watch(context);
      const seq = context.getSequence();
      const prompt = model.tokenize("Once upon a time");
      const direct = await generate(seq, prompt, 64);
      // The prompt and every generated token after the first are decoded directly.
      expect(counts.direct).toBe(64);
      expect(counts.queued).toBe(0);
      // The last token was sampled but never evaluated, as before.
      const state = seq.contextTokens;
      expect(state).toEqual([...prompt, ...direct.slice(0, -1)]);
      expect(seq.nextTokenIndex).toBe(state.length);

      // The dispatcher's own path, by refusing the direct one, gives the same tokens.
      const canDecodeDirectly = ctx._canDecodeDirectly;
      ctx._canDecodeDirectly = () => false;
      await seq.clearHistory();
      counts.direct = 0;
      const dispatched = await generate(seq, prompt, 64);
      expect(counts.direct).toBe(0);
      expect(dispatched).toEqual(direct);
      expect(seq.contextTokens).toEqual(state);
      ctx._canDecodeDirectly = canDecodeDirectly;
      expect(ctx._activeEvaluations).toBe(0);
    } finally {
      await context.dispose();
    }
  });

  test("two generations on one context still go through the dispatcher, together", async () => {
    const context = await model.createContext({ contextSize: 1024, sequences: 2, threads: 1, flashAttention: false });
    try {
      const { counts } = watch(context);
      const [a, b] = [context.getSequence(), context.getSequence()];
      const solo = await generate(b, model.tokenize("Sue saw a cat"), 48);
      await b.clearHistory();
      // One stream is slow to come back for its next token (a client reading slowly): the other
      // must not take the context for itself meanwhile, or the two never share a batch again.
      let both = true;
      let directWhileBoth = 0;
      const direct = counts.direct;
      const slow = generate(a, model.tokenize("Tom had a dog"), 48, () => new Promise((resolve) => setImmediate(resolve)));
      const fast = generate(b, model.tokenize("Sue saw a cat"), 48, async () => {
        if (both) directWhileBoth = counts.direct - direct;
      });
      const [first, second] = await Promise.all([slow.finally(() => (both = false)), fast.finally(() => (both = false))]);
      expect(first).toHaveLength(48);
      expect(second).toHaveLength(48);
      expect(directWhileBoth).toBe(0);
      // Greedy decoding of a lone stream is what it was (llama.cpp may differ across batch shapes,
      // so only a solo run is compared exactly).
      await b.clearHistory();
      expect(await generate(b, model.tokenize("Sue saw a cat"), 48)).toEqual(solo);
    } finally {
      await context.dispose();
    }
  });

  test("a generation in progress sets no timer per token, and frees its threads when it ends", async () => {
    const context = await model.createContext({ contextSize: 512, sequences: 1, threads: 1, flashAttention: false });
    const { ctx } = watch(context);
    const seq = context.getSequence();
    const realSetTimeout = globalThis.setTimeout;
    let timers = 0;
    globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
      timers++;
      return realSetTimeout(...args);
    }) as typeof setTimeout;
    try {
      const tokens = await generate(seq, model.tokenize("Once upon a time"), 100);
      expect(tokens).toHaveLength(100);
      // Before the patch, one per token (the dispatcher's and the direct path's alike).
      expect(timers).toBeLessThan(10);
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    // Once no generation is left, the reservation is let go on the next turn of the event loop.
    await Bun.sleep(20);
    expect(ctx._threadSplitterConsumer).toBeUndefined();
    await context.dispose();
  });

  test("a context disposed during a lone generation ends it with an error, not a hang", async () => {
    const context = await model.createContext({ contextSize: 512, sequences: 1, threads: 1, flashAttention: false });
    const seq = context.getSequence();
    let n = 0;
    const run = (async () => {
      for await (const _ of seq.evaluate(model.tokenize("Once upon a time"), { temperature: 0, yieldEogToken: true })) {
        if (++n === 10) void context.dispose();
        if (n > 400) break;
      }
    })();
    await expect(run).rejects.toThrow();
    expect(n).toBeLessThan(400);
    expect(context.disposed).toBe(true);
  });

  /** Counts the native one-call decodes and the decodes made on their own. */
  function countCalls(addon: AddonContextInternals): { calls: number; decodes: number } {
    const counts = { calls: 0, decodes: 0 };
    const decodeBatch = addon.decodeBatch;
    const decodeAndSample = requireNative(addon, "decodeBatchAndSampleToken");
    override(addon, "decodeBatch", function (this: AddonContextInternals) {
      counts.decodes++;
      return decodeBatch.call(this);
    });
    override(addon, "decodeBatchAndSampleToken", function (this: AddonContextInternals, ...args: unknown[]) {
      counts.calls++;
      return decodeAndSample.apply(this, args);
    });
    return counts;
  }

  /** A one-sequence context whose sequence generated n tokens the usual way and was cleared again. */
  async function afterPlainRun(n: number) {
    const context = await model.createContext({ contextSize: 512, sequences: 1, threads: 1, flashAttention: false });
    const { ctx } = watch(context);
    const seq = context.getSequence();
    const prompt = model.tokenize("Once upon a time");
    const plain = await generate(seq, prompt, n);
    const state = seq.contextTokens;
    await seq.clearHistory();
    return { context, ctx, seq, prompt, plain, state };
  }

  test("an addon that decodes and samples in one call gets one call per token, and the same tokens", async () => {
    const { context, ctx, seq, prompt, plain, state } = await afterPlainRun(64);
    try {
      const counts = countCalls(ctx._ctx);
      expect(await generate(seq, prompt, 64)).toEqual(plain);
      // The prompt's batch too is decoded and sampled in one call.
      expect(counts.calls).toBe(64);
      expect(counts.decodes).toBe(0);
      expect(seq.contextTokens).toEqual(state);
    } finally {
      await context.dispose();
    }
  });

  for (const combined of [false, true]) {
    for (const failAt of [0, 5]) {
      const what = failAt === 0 ? "a direct decode of the prompt" : "a direct decode of a generated token";
      test(`${what} that fails leaves the sequence as it was, and it can go on${combined ? " (one call)" : " (two calls)"}`, async () => {
        const { context, ctx, seq, prompt, plain } = await afterPlainRun(20);
        try {
          // The one call fails as when its decode half does; without it (an addon that lacks it),
          // the decode that precedes sampling fails.
          let fail = failAt === 0;
          const once = <A extends unknown[], R>(real: (...a: A) => Promise<R>) => function (this: AddonContextInternals, ...args: A): Promise<R> {
            if (!fail) return real.apply(this, args);
            fail = false;
            return Promise.reject(new Error("injected decode failure"));
          };
          if (combined) override(ctx._ctx, "decodeBatchAndSampleToken", once(requireNative(ctx._ctx, "decodeBatchAndSampleToken")));
          else {
            override(ctx._ctx, "decodeBatchAndSampleToken", undefined);
            override(ctx._ctx, "decodeBatch", once(ctx._ctx.decodeBatch));
          }
          const got: Token[] = [];
          const run = (async () => {
            for await (const token of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
              got.push(token);
              if (got.length === failAt) fail = true;
            }
          })();
          await expect(run).rejects.toThrow("injected decode failure");
          expect(ctx._activeEvaluations).toBe(0);
          if (failAt === 0) {
            // Nothing of the prompt is left in the sequence or its KV cache.
            expect(got).toEqual([]);
            expect(seq.contextTokens).toEqual([]);
            expect(seq.nextTokenIndex).toBe(0);
            expect(lastKvPosition(context, seq)).toBe(-1);
            expect(await generate(seq, prompt, 20)).toEqual(plain);
            return;
          }
          // The fifth token was sampled, and its decode failed: it is not part of the sequence.
          expect(got).toEqual(plain.slice(0, 5));
          expect(seq.contextTokens).toEqual([...prompt, ...plain.slice(0, 4)]);
          expect(seq.nextTokenIndex).toBe(prompt.length + 4);
          // Evaluating that token again continues the text as if nothing had happened.
          expect(await generate(seq, [plain[4]!], 15)).toEqual(plain.slice(5, 20));
        } finally {
          await context.dispose();
        }
      });
    }
  }

  test("a prompt longer than a batch goes through the dispatcher", async () => {
    const context = await model.createContext({ contextSize: 512, sequences: 1, threads: 1, flashAttention: false, batchSize: 8 });
    try {
      const { counts } = watch(context);
      const seq = context.getSequence();
      const prompt = model.tokenize("Once upon a time there was a little girl named Lily who liked to play");
      expect(prompt.length).toBeGreaterThan(8);
      const tokens = await generate(seq, prompt, 4);
      expect(counts.queued).toBe(1);
      // The generated tokens still take the direct way.
      expect(counts.direct).toBe(3);
      expect(seq.contextTokens).toEqual([...prompt, ...tokens.slice(0, -1)]);
      expect(lastKvPosition(context, seq)).toBe(prompt.length + 2);
    } finally {
      await context.dispose();
    }
  });

  test("prompts of generations that start in the same turn of the event loop are decoded in one batch", async () => {
    const context = await model.createContext({ contextSize: 1024, sequences: 2, threads: 1, flashAttention: false });
    try {
      const { ctx, counts } = watch(context);
      let decodes = 0;
      const decodeBatch = ctx._ctx.decodeBatch;
      override(ctx._ctx, "decodeBatch", function (this: AddonContextInternals) {
        decodes++;
        return decodeBatch.call(this);
      });
      const [a, b] = [context.getSequence(), context.getSequence()];
      // One token each: only the prompts are decoded. The second starts a task later (as a second
      // request read from the network would), before the first one's prompt would be dispatched.
      const firstRun = generate(a, model.tokenize("Tom had a dog"), 1);
      const secondRun = new Promise<Token[]>((resolve, reject) => setImmediate(() => generate(b, model.tokenize("Sue saw a cat"), 1).then(resolve, reject)));
      const [first, second] = await Promise.all([firstRun, secondRun]);
      expect(first).toHaveLength(1);
      expect(second).toHaveLength(1);
      expect(counts.direct).toBe(0);
      expect(counts.queued).toBe(2);
      expect(decodes).toBe(1);
    } finally {
      await context.dispose();
    }
  });
});
