// patches/node-llama-cpp+3.21.1.patch, runs of tokens: while every generation on a context has
// sampling that does not change from token to token, the addon generates several tokens for each
// in one call (generateTokenRuns: decode one batch for all, sample each, feed back, in the worker
// thread), and each starts its next run before its consumer has the tokens of this one
// (docs/performance.md, "Runs of tokens in one addon call"). The tokens are those of the
// token-by-token path, and whatever ends a generation early leaves its sequence, in JavaScript and
// in the KV cache, where that path would have left it.
//
// generateTokenRuns is the patch's C++ (node-llama-cpp's prebuilt addon lacks it): the addon in
// node_modules is the one `npm ci` compiles (scripts/llama-addon.ts), as the compiled lmx ships it.
// Real engine, stories260K, 1 thread.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Llama, type LlamaContext, LlamaGrammar, LlamaGrammarEvaluationState, type LlamaModel, type Token } from "node-llama-cpp";
import { type AddonContextInternals, type ContextInternals, generate, lastKvPosition, loadStories, override, requireNative, unloadStories, watch } from "./helpers/llama-internals.ts";

let llama: Llama;
let model: LlamaModel;
beforeAll(async () => ({ llama, model } = await loadStories()));
afterAll(() => unloadStories({ llama, model }));

const RUN = 8;

/**
 * A context with runs of RUN tokens (or none), counting the addon's generateTokenRuns calls and the
 * sequences in each. Streaming runs are those of a model whose token takes longer than maxTokenMs:
 * each token is handed out as it is sampled.
 */
async function contextFor(streaming: boolean, runs: boolean, sequences = 1): Promise<{ context: LlamaContext; ctx: ContextInternals; counts: { runs: number; direct: number; queued: number; widths: number[] } }> {
  const context = await model.createContext({ contextSize: 512, sequences, threads: 1, flashAttention: false });
  const { ctx, counts } = watch(context);
  ctx._tokenRuns = !runs
    ? { maxTokenMs: 0, targetMs: 0, maxTokens: 0 }
    : streaming
      ? { maxTokenMs: 0, targetMs: 0, streamMs: Infinity, maxTokens: RUN }
      : { maxTokenMs: Infinity, targetMs: Infinity, streamMs: 0, maxTokens: RUN };
  const all = Object.assign(counts, { runs: 0, widths: [] as number[] });
  const generateTokenRuns = requireNative(ctx._ctx, "generateTokenRuns");
  override(ctx._ctx, "generateTokenRuns", function (this: AddonContextInternals, ...args) {
    all.runs++;
    all.widths.push(args[1].length);
    return generateTokenRuns.apply(this, args);
  });
  return { context, ctx, counts: all };
}

const prompt = () => model.tokenize("Once upon a time");

for (const streaming of [false, true]) describe(streaming ? "streaming runs of tokens (a slow model's)" : "runs of tokens generated in one addon call", () => {
  const contextWith = (runs: boolean, sequences = 1) => contextFor(streaming, runs, sequences);
  test("the same tokens, and the sequence where the token-by-token path leaves it, wherever the consumer stops", async () => {
    const plain = await contextWith(false);
    const runs = await contextWith(true);
    try {
      const [a, b] = [plain.context.getSequence(), runs.context.getSequence()];
      for (const n of [2, 9, 12, 40]) {
        await a.clearHistory();
        await b.clearHistory();
        const before = runs.counts.runs;
        const expected = await generate(a, prompt(), n);
        expect(await generate(b, prompt(), n)).toEqual(expected);
        // The prompt's token, one direct decode that times a token, then runs; each next one
        // starting before this one's tokens are handed out, or, streaming, when it ends, which
        // the consumer's last token may come before.
        const started = runs.counts.runs - before;
        if (n > 2 && !streaming) expect(started).toBe(Math.ceil((n - 2) / RUN) + 1);
        if (n > 2 && streaming) expect([Math.ceil((n - 2) / RUN), Math.ceil((n - 2) / RUN) + 1]).toContain(started);
        expect(b.contextTokens).toEqual(a.contextTokens);
        expect(b.nextTokenIndex).toBe(prompt().length + n - 1);
        // The tokens decoded ahead are gone from the KV cache too, so the text goes on as it would.
        expect(lastKvPosition(runs.context, b)).toBe(b.nextTokenIndex - 1);
        const last = expected.at(-1)!;
        expect(await generate(b, [last], 10)).toEqual(await generate(a, [last], 10));
      }
      expect(plain.counts.runs).toBe(0);
      expect(runs.ctx._activeEvaluations).toBe(0);
    } finally {
      await plain.context.dispose();
      await runs.context.dispose();
    }
  });

  test("sampled with a seed, the same tokens", async () => {
    const plain = await contextWith(false);
    const runs = await contextWith(true);
    try {
      const options = { temperature: 0.9, topK: 40, topP: 0.95, seed: 7 };
      const expected = await generate(plain.context.getSequence(), prompt(), 48, undefined, options);
      expect(await generate(runs.context.getSequence(), prompt(), 48, undefined, options)).toEqual(expected);
      expect(runs.counts.runs).toBeGreaterThan(4);
    } finally {
      await plain.context.dispose();
      await runs.context.dispose();
    }
  });

  test("a grammar that starts to apply in the middle of a run: the run's tokens ahead are dropped", async () => {
    const grammar = new LlamaGrammar(llama, { grammar: 'root ::= [a-z ]+' });
    const switched = async (context: LlamaContext) => {
      const state = new LlamaGrammarEvaluationState({ model, grammar });
      const out: Token[] = [];
      const seq = context.getSequence();
      for await (const token of seq.evaluate(prompt(), {
        temperature: 0,
        yieldEogToken: true,
        grammarEvaluationState: () => (out.length >= 13 ? state : undefined),
      })) {
        out.push(token);
        if (out.length >= 40) break;
      }
      return { out, state: seq.contextTokens };
    };
    const plain = await contextWith(false);
    const runs = await contextWith(true);
    try {
      const expected = await switched(plain.context);
      const got = await switched(runs.context);
      expect(got.out).toEqual(expected.out);
      expect(got.state).toEqual(expected.state);
      // Runs until the grammar applied (from the 14th token on), none after it: the third one
      // starts as the second ends, which streamed tokens may come before.
      if (streaming) expect([2, 3]).toContain(runs.counts.runs);
      else expect(runs.counts.runs).toBe(3);
      expect(model.detokenize(got.out.slice(13))).toMatch(/^[a-z ]*$/);
    } finally {
      await plain.context.dispose();
      await runs.context.dispose();
    }
  });

  test(streaming ? "generations side by side: none streams until it is alone, each with the tokens it has alone" : "generations side by side run together, one batch a step, each with the tokens it has alone", async () => {
    const plain = await contextWith(false, 3);
    const { context, counts } = await contextWith(true, 3);
    try {
      const prompts = ["Tom had a dog", "Sue saw a cat", "The sun was"].map((text) => model.tokenize(text));
      const lengths = [90, 60, 75];
      const expected: Token[][] = [];
      for (const [i, p] of prompts.entries()) expected.push(await generate(plain.context.getSequence(), p, lengths[i]!));
      const seqs = prompts.map(() => context.getSequence());
      const got = await Promise.all(seqs.map((seq, i) => generate(seq, prompts[i]!, lengths[i]!)));
      expect(got).toEqual(expected);
      if (streaming) {
        // A slow model's runs are for a generation alone on its context: the last one, here.
        expect(counts.widths.length).toBeGreaterThan(0);
        expect(Math.max(...counts.widths)).toBe(1);
      } else {
        // Calls with all three, then two, then one, as the shorter ones end.
        expect(Math.max(...counts.widths)).toBe(3);
        expect(counts.widths.filter((w) => w === 3).length).toBeGreaterThan(3);
        expect(counts.widths).toContain(1);
      }
      // What each was left holding is the token-by-token path's, in the KV cache too.
      for (const [i, seq] of seqs.entries()) {
        expect(seq.contextTokens).toEqual([...prompts[i]!, ...expected[i]!.slice(0, -1)]);
        expect(lastKvPosition(context, seq)).toBe(seq.nextTokenIndex - 1);
      }
      const internals = context as unknown as ContextInternals;
      expect(internals._activeEvaluations).toBe(0);
      expect(internals._runEligible.size).toBe(0);
    } finally {
      await plain.context.dispose();
      await context.dispose();
    }
  });

  test("a generation whose sampling changes from token to token stops the runs of the others while it goes on", async () => {
    const { context, counts } = await contextWith(true, 2);
    try {
      const [a, b] = [context.getSequence(), context.getSequence()];
      let runsAtB: number | undefined;
      let runsAfterB: number | undefined;
      let both = true;
      const first = generate(a, model.tokenize("Tom had a dog"), 120, async () => {
        if (runsAtB !== undefined && both) runsAfterB = counts.runs - runsAtB;
      });
      while (counts.runs < 3) await Bun.sleep(1);
      const queued = counts.queued;
      // A repeat penalty looks at the tokens so far: it cannot run.
      const second = generate(b, model.tokenize("Sue saw a cat"), 48, async () => {
        runsAtB ??= counts.runs;
      }, { temperature: 0, repeatPenalty: { penalty: 1.3, punishTokens: () => [] } });
      const [x, y] = await Promise.all([first, second.finally(() => (both = false))]);
      expect(x).toHaveLength(120);
      expect(y).toHaveLength(48);
      // Once the second generation has its first token, the first has no run of its own.
      expect(runsAtB).toBeDefined();
      expect(runsAfterB).toBe(0);
      expect(counts.queued - queued).toBeGreaterThan(40);
      // Alone again, the first one runs.
      expect(counts.runs).toBeGreaterThan(runsAtB! + 1);
    } finally {
      await context.dispose();
    }
  });

  test(`one of two ${streaming ? "" : "running "}generations stopped by its consumer: both sequences as token by token, the other goes on`, async () => {
    const plain = await contextWith(false, 3);
    const { context, counts } = await contextWith(true, 2);
    try {
      const [pa, pb] = [model.tokenize("Tom had a dog"), model.tokenize("Sue saw a cat")];
      const expectedA = await generate(plain.context.getSequence(), pa, 100);
      const expectedB = await generate(plain.context.getSequence(), pb, 21);
      const [a, b] = [context.getSequence(), context.getSequence()];
      const [gotA, gotB] = await Promise.all([generate(a, pa, 100), generate(b, pb, 21)]);
      expect(gotA).toEqual(expectedA);
      expect(gotB).toEqual(expectedB);
      // Streaming, the first one runs once it is alone.
      expect(counts.widths).toContain(streaming ? 1 : 2);
      if (streaming) expect(Math.max(...counts.widths)).toBe(1);
      expect(b.contextTokens).toEqual([...pb, ...expectedB.slice(0, -1)]);
      expect(lastKvPosition(context, b)).toBe(b.nextTokenIndex - 1);
      const last = expectedB.at(-1)!;
      expect(await generate(b, [last], 10)).toEqual(await generate(plain.context.getSequence(), [...pb, ...expectedB], 10));
    } finally {
      await plain.context.dispose();
      await context.dispose();
    }
  });

  /**
   * A greedy generation on `context` left open after its first 12 tokens, the token-by-token
   * path's first 18 on `plain`, and the state to cut the sequence back to (the prompt and 9 tokens).
   */
  const openAfter12 = async (plain: LlamaContext, context: LlamaContext) => {
    const expected = await generate(plain.getSequence(), prompt(), 18);
    const seq = context.getSequence();
    const it = seq.evaluate(prompt(), { temperature: 0, yieldEogToken: true })[Symbol.asyncIterator]();
    const got: Token[] = [];
    while (got.length < 12) got.push((await it.next()).value as Token);
    return { expected, seq, it, got, keep: [...prompt(), ...got.slice(0, 9)] };
  };

  test("the sequence changed from outside while its generation is open (LlamaChat at a thought budget): runs ahead are erased first", async () => {
    const plain = await contextWith(false);
    const { context, counts } = await contextWith(true);
    try {
      const { expected, seq, it, got, keep } = await openAfter12(plain.context, context);
      // A run is in flight or waiting for its call: what LlamaChat's alignment does next, with the
      // generation still open, as it does when a thought budget runs out.
      expect(counts.runs).toBeGreaterThan(0);
      await seq.adaptStateToTokens(keep, false);
      expect(seq.contextTokens).toEqual(keep);
      expect(lastKvPosition(context, seq)).toBe(keep.length - 1);
      await it.return(undefined);
      expect(lastKvPosition(context, seq)).toBe(keep.length - 1);
      // And it goes on from there as token by token.
      expect(got).toEqual(expected.slice(0, 12));
      expect(await generate(seq, [got[9]!], 8)).toEqual(expected.slice(10, 18));
    } finally {
      await plain.context.dispose();
      await context.dispose();
    }
  });

  test("the sequence changed from outside while the consumer waits for its next token: no failure, and the sequence stays whole", async () => {
    const plain = await contextWith(false);
    const { context, counts } = await contextWith(true);
    try {
      const { expected, seq, it, got, keep } = await openAfter12(plain.context, context);
      expect(counts.runs).toBeGreaterThan(0);
      // The consumer asks for its next token, and before it has it, the sequence is cut back.
      const pending = it.next();
      await seq.adaptStateToTokens(keep, false);
      const next = await pending;
      expect(next.done).toBe(false);
      await it.return(undefined);
      expect(lastKvPosition(context, seq)).toBe(seq.nextTokenIndex - 1);
      expect(seq.contextTokens).toHaveLength(seq.nextTokenIndex);
      await seq.adaptStateToTokens(keep, false);
      expect(await generate(seq, [got[9]!], 8)).toEqual(expected.slice(10, 18));
    } finally {
      await plain.context.dispose();
      await context.dispose();
    }
  });

  test("a run that fails leaves the sequence where the tokens handed out put it, and it can go on", async () => {
    const plain = await contextWith(false);
    const runs = await contextWith(true);
    try {
      const expected = await generate(plain.context.getSequence(), prompt(), 40);
      const seq = runs.context.getSequence();
      const addon = runs.ctx._ctx;
      const generateTokenRuns = requireNative(addon, "generateTokenRuns");
      let calls = 0;
      // The third run fails before anything is decoded, as when its first decode fails.
      override(addon, "generateTokenRuns", function (this: AddonContextInternals, ...args) {
        if (++calls === 3) return Promise.reject(new Error("injected decode failure"));
        return generateTokenRuns.apply(this, args);
      });
      const got: Token[] = [];
      const run = (async () => {
        for await (const token of seq.evaluate(prompt(), { temperature: 0, yieldEogToken: true })) got.push(token);
      })();
      await expect(run).rejects.toThrow("injected decode failure");
      // The prompt's token, the direct one, two runs.
      expect(got).toEqual(expected.slice(0, 2 + 2 * RUN));
      expect(seq.contextTokens).toEqual([...prompt(), ...got.slice(0, -1)]);
      expect(runs.ctx._activeEvaluations).toBe(0);
      expect(await generate(seq, [got.at(-1)!], 15)).toEqual(expected.slice(got.length, got.length + 15));
    } finally {
      await plain.context.dispose();
      await runs.context.dispose();
    }
  });

  test("a context disposed during runs ends the generation with an error, not a hang", async () => {
    const { context, counts } = await contextWith(true);
    const seq = context.getSequence();
    let n = 0;
    const run = (async () => {
      for await (const _ of seq.evaluate(prompt(), { temperature: 0, yieldEogToken: true })) {
        if (++n === 20) void context.dispose();
        if (n > 400) break;
      }
    })();
    await expect(run).rejects.toThrow();
    expect(counts.runs).toBeGreaterThan(1);
    expect(n).toBeLessThan(400);
    expect(context.disposed).toBe(true);
  });
});
