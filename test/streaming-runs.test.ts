// patches/node-llama-cpp+3.21.1.patch, streaming runs: on a model whose token takes longer than
// the trip to JavaScript and back (defaultTokenRuns.maxTokenMs), a run hands each token out as it
// is sampled while the addon decodes the next one, so the decodes follow one another without
// waiting for JavaScript. Anything that needs the context stops such a run at once, and so does
// the end of the generation, which aborts the decode in flight (docs/performance.md, "Streaming
// runs"). test/token-runs.test.ts checks that their tokens and sequences are the token-by-token
// path's, for both kinds of run.
//
// Real engine, 1 thread: stories260K for the addon's contract, and a wide synthetic llama model
// (two layers 2048 wide, stories260K's vocabulary, q8_0, written here), whose token takes tens of
// milliseconds, for what depends on a step being slow.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama, type LlamaContext, type LlamaModel, type Token } from "node-llama-cpp";
import OpenAI from "openai";
import { ensureFixtures } from "./fixtures/models.ts";
import { buildModel } from "./fixtures/synth.ts";
import { readGgufFile, writeGgufFile } from "./fixtures/gguf.ts";
import { type AddonContextInternals, type ContextInternals, generate, lastKvPosition, override, requireNative } from "./helpers/llama-internals.ts";
import { startTestServer } from "./helpers/server.ts";

let llama: Llama;
let stories: LlamaModel;
let wide: LlamaModel;
let dir: string;
let widePath: string;
const logged: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lmx-streaming-runs-"));
  const path = (widePath = join(dir, "wide.gguf"));
  const storiesPath = ensureFixtures().stories260K;
  writeGgufFile(path, buildModel(readGgufFile(storiesPath).metadata, { arch: "llama", layers: 2, embd: 2048, ff: 5632, heads: 16, kvHeads: 16, ctx: 1024, type: "q8_0", seed: 3, name: "wide" }));
  llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never, logger: (_level, message) => void logged.push(message) });
  stories = await llama.loadModel({ modelPath: storiesPath, gpuLayers: 0 });
  wide = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
});

afterAll(async () => {
  await wide?.dispose();
  await stories?.dispose();
  await llama?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Runs = ContextInternals["_tokenRuns"];
const TOKEN_BY_TOKEN: Runs = { maxTokenMs: 0, targetMs: 0, maxTokens: 0 };

interface Call {
  steps: { step: number; tokens: number[] }[];
  resolved?: Uint32Array[];
}

/** A context whose generateTokenRuns calls are recorded: each step's tokens as JavaScript gets them, then the result. */
async function contextOn(model: LlamaModel, runs: Runs | undefined, sequences = 1) {
  const context = await model.createContext({ contextSize: 1024, sequences, threads: 1, flashAttention: false });
  const ctx = context as unknown as ContextInternals;
  if (runs) ctx._tokenRuns = runs;
  const calls: Call[] = [];
  const generateTokenRuns = requireNative(ctx._ctx, "generateTokenRuns");
  override(ctx._ctx, "generateTokenRuns", function (this: AddonContextInternals, logitIndexes, samplers, maxTokens, onStep, control) {
    const call: Call = { steps: [] };
    calls.push(call);
    const recorded = onStep && ((step: number, tokens: Uint32Array) => {
      call.steps.push({ step, tokens: [...tokens] });
      onStep(step, tokens);
    });
    return generateTokenRuns.call(this, logitIndexes, samplers, maxTokens, recorded, control).then((result) => {
      call.resolved = result;
      return result;
    });
  });
  const pending = () => calls.some((call) => call.resolved === undefined);
  return { context, ctx, calls, pending };
}

const dispose = (...contexts: LlamaContext[]) => Promise.all(contexts.map((c) => c.dispose()));

describe("streaming runs of tokens", () => {
  test("each step's tokens reach JavaScript before the run resolves, and they are the run's tokens", async () => {
    const plain = await contextOn(stories, TOKEN_BY_TOKEN);
    const streamed = await contextOn(stories, { maxTokenMs: 0, targetMs: 0, streamMs: Infinity, maxTokens: 8 });
    try {
      const prompt = stories.tokenize("Once upon a time");
      const expected = await generate(plain.context.getSequence(), prompt, 40);
      expect(await generate(streamed.context.getSequence(), prompt, 40)).toEqual(expected);
      expect(plain.calls).toHaveLength(0);
      expect(streamed.calls.length).toBeGreaterThan(3);
      for (const call of streamed.calls) {
        expect(call.resolved).toBeDefined();
        expect(call.steps.map((s) => s.step)).toEqual([...call.resolved![0]!.keys()]);
        expect(call.steps.map((s) => s.tokens[0])).toEqual([...call.resolved![0]!]);
      }
    } finally {
      await dispose(plain.context, streamed.context);
    }
  });

  test("a slow model's tokens reach the consumer while the run that samples them is still decoding", async () => {
    const plain = await contextOn(wide, TOKEN_BY_TOKEN);
    // LMX's defaults: a token here takes longer than maxTokenMs, so the runs stream.
    const streamed = await contextOn(wide, undefined);
    try {
      const prompt = wide.tokenize("Once upon a time");
      const expected = await generate(plain.context.getSequence(), prompt, 30);
      const got: Token[] = [];
      let duringRun = 0;
      for await (const token of streamed.context.getSequence().evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
        got.push(token);
        if (streamed.pending()) duringRun++;
        if (got.length >= 30) break;
      }
      expect(got).toEqual(expected);
      expect(streamed.calls.length).toBeGreaterThan(0);
      expect(streamed.calls.every((call) => call.steps.length > 0)).toBe(true);
      // The prompt's token and the one that times a step come before any run.
      expect(duringRun).toBeGreaterThan((got.length - 2) / 2);
    } finally {
      await dispose(plain.context, streamed.context);
    }
  });

  test("the end of a generation aborts the decode in flight, quietly, and leaves the sequence as token by token", async () => {
    const plain = await contextOn(wide, TOKEN_BY_TOKEN);
    const streamed = await contextOn(wide, undefined);
    try {
      const prompt = wide.tokenize("Tom had a dog");
      const expected = await generate(plain.context.getSequence(), prompt, 24);
      const seq = streamed.context.getSequence();
      const stops: number[] = [];
      const steps: number[] = [];
      logged.length = 0;
      for (let trial = 0; trial < 3; trial++) {
        await seq.clearHistory();
        const it = seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })[Symbol.asyncIterator]();
        const got: Token[] = [];
        let last = 0;
        while (got.length < 12) {
          got.push((await it.next()).value as Token);
          const now = performance.now();
          if (got.length > 3) steps.push(now - last);
          last = now;
        }
        // The next token is being decoded: the run goes on past what the consumer takes.
        expect(streamed.pending()).toBe(true);
        const started = performance.now();
        await it.return(undefined);
        stops.push(performance.now() - started);
        expect(got).toEqual(expected.slice(0, 12));
        expect(seq.contextTokens).toEqual([...prompt, ...got.slice(0, -1)]);
        expect(lastKvPosition(streamed.context, seq)).toBe(seq.nextTokenIndex - 1);
      }
      // Finishing the step would take most of a step; an aborted one, a trip between threads.
      const step = steps.sort((a, b) => a - b)[steps.length >> 1]!;
      // Slow enough for the runs to stream (defaultTokenRuns.maxTokenMs).
      expect(step).toBeGreaterThan(2);
      expect(Math.min(...stops)).toBeLessThan(step / 2);
      // llama.cpp logs an aborted decode as an error; the addon keeps that to itself.
      expect(logged.filter((m) => /failed to decode|failed to compute graph/.test(m))).toEqual([]);
      // And the text goes on from there as it would have.
      const last = expected[11]!;
      expect(await generate(seq, [last], 8)).toEqual(expected.slice(12, 20));
    } finally {
      await dispose(plain.context, streamed.context);
    }
  });

  test("a new request on the context stops the run in flight instead of waiting for its end", async () => {
    const plain = await contextOn(wide, TOKEN_BY_TOKEN, 2);
    // Runs as long as a reply, were nothing to stop them.
    const streamed = await contextOn(wide, { maxTokenMs: 2, targetMs: 4, streamMs: Infinity, maxTokens: 200 }, 2);
    try {
      const [pa, pb] = [wide.tokenize("Tom had a dog"), wide.tokenize("Sue saw a cat")];
      const expectedA = await generate(plain.context.getSequence(), pa, 60);
      const expectedB = await generate(plain.context.getSequence(), pb, 10);
      const [a, b] = [streamed.context.getSequence(), streamed.context.getSequence()];
      const times: number[] = [];
      let second: Promise<Token[]> | undefined;
      let bStarted = 0;
      let bFirst = 0;
      const first = generate(a, pa, 60, async () => {
        times.push(performance.now());
        if (times.length === 8) {
          bStarted = performance.now();
          second = generate(b, pb, 10, async () => {
            bFirst ||= performance.now();
          });
        }
      });
      expect(await first).toEqual(expectedA);
      expect(await second!).toEqual(expectedB);
      const step = (times[7]! - times[3]!) / 4;
      // Without the stop, the second request would wait for the run, which would go on until the
      // first generation ends (≈50 steps later).
      expect(bFirst - bStarted).toBeLessThan(20 * step);
      expect(b.contextTokens).toEqual([...pb, ...expectedB.slice(0, -1)]);
      expect(lastKvPosition(streamed.context, a)).toBe(a.nextTokenIndex - 1);
    } finally {
      await dispose(plain.context, streamed.context);
    }
  });
});

describe("streaming runs through LMX's server (the openai client)", () => {
  test("a reply cut by a stop string or by the client leaves the conversation where the next request reuses it", async () => {
    await using srv = await startTestServer(["--model", widePath]);
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const base = { model: "wide", prompt: "Once upon a time", max_tokens: 40, temperature: 0 } as const;
    const pieces = async (params: Record<string, unknown>, cut?: number) => {
      const stream = await client.completions.create({ ...base, ...params, stream: true });
      const got: string[] = [];
      for await (const chunk of stream) {
        got.push(chunk.choices[0]?.text ?? "");
        if (got.length === cut) break;
      }
      return got;
    };
    const full = await pieces({});
    const text = full.join("");
    expect(full.length).toBeGreaterThan(30);
    // A stop string well into the reply, where tokens come from streaming runs.
    const at = full.slice(0, 20).join("").length;
    const stop = text.slice(at, at + 4);
    const expected = text.slice(0, text.indexOf(stop));
    expect(expected.length).toBeGreaterThan(full.slice(0, 3).join("").length);
    const stopped = await client.completions.create({ ...base, stop });
    expect(stopped.choices[0]!.text).toBe(expected);
    expect(stopped.choices[0]!.finish_reason).toBe("stop");
    // The same prompt again takes its prefix from that sequence: what the stop left in the KV
    // cache is what the text says, or this one would go on differently.
    expect((await pieces({})).join("")).toBe(text);
    // A client that goes away in the middle of a streamed reply.
    expect(await pieces({}, 15)).toEqual(full.slice(0, 15));
    expect((await pieces({})).join("")).toBe(text);
  });
});
