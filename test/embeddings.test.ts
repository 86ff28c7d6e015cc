import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import OpenAI from "openai";
import { type GgufValue, kv, readGgufFile, writeGgufFile } from "./fixtures/gguf.ts";
import { ensureFixtures } from "./fixtures/models.ts";
import { sharedModel } from "./fixtures/prepare.ts";
import { buildModel, type SynthShape } from "./fixtures/synth.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

// Embeddings through the official OpenAI SDK against a real server and real (synthetic) GGUFs.
// Besides the shared fixtures, a few models are written here whose pooling comes from metadata:
// a 1024-context BERT with mean pooling and qwen2 twins that differ only in `qwen2.pooling_type`.

const fx = ensureFixtures();
const dir = mkdtempSync(join(tmpdir(), "lmx-embed-"));
const tiny = { layers: 2, embd: 64, ff: 128, heads: 4, kvHeads: 2, seed: 7 } as const;

function synth(file: string, vocab: string, shape: Omit<SynthShape, keyof typeof tiny>, extra: [string, GgufValue][] = []): string {
  const built = buildModel(readGgufFile(sharedModel(vocab)).metadata, { ...tiny, ...shape });
  const metadata = new Map(built.metadata);
  for (const [key, value] of extra) metadata.set(key, value);
  const path = join(dir, file);
  writeGgufFile(path, { metadata, tensors: built.tensors });
  return path;
}

// llama.cpp's enum llama_pooling_type.
const MEAN = 1;
const LAST = 3;
const bertLong = synth("bert-long.gguf", "ggml-vocab-bert-bge.gguf", { arch: "bert", ctx: 1024, type: "f32", pooling: "mean" });
const qwenPlain = synth("qwen-plain.gguf", "ggml-vocab-qwen2.gguf", { arch: "qwen2", ctx: 2048, type: "q8_0" });
const qwenLast = synth("qwen-last.gguf", "ggml-vocab-qwen2.gguf", { arch: "qwen2", ctx: 2048, type: "q8_0" }, [["qwen2.pooling_type", kv.u32(LAST)]]);
const qwenMean = synth("qwen-mean.gguf", "ggml-vocab-qwen2.gguf", { arch: "qwen2", ctx: 2048, type: "q8_0" }, [["qwen2.pooling_type", kv.u32(MEAN)]]);

let srv: TestServer;
let client: OpenAI;
let llama: Llama;
let bert: LlamaModel;

beforeAll(async () => {
  srv = await startTestServer(["--model", fx.bertTiny, "--model", fx.stories260K, "--model", bertLong, "--model", qwenPlain,
    "--model", qwenLast, "--model", qwenMean, "--ctx", "2048"]);
  client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "unused", maxRetries: 0 });
  llama = await getLlama({ logLevel: "error" as never });
  bert = await llama.loadModel({ modelPath: fx.bertTiny, gpuLayers: 0 });
});
afterAll(async () => {
  await bert?.dispose();
  await srv?.[Symbol.asyncDispose]();
  rmSync(dir, { recursive: true, force: true });
});

const norm = (v: readonly number[]) => Math.hypot(...v);
const floats = async (model: string, input: string | string[] | number[] | number[][], extra: { dimensions?: number } = {}) =>
  client.embeddings.create({ model, input, encoding_format: "float", ...extra });

/** Reference vector: node-llama-cpp with the whole input in one batch, L2-normalized. */
async function reference(path: string, text: string): Promise<number[]> {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  try {
    const tokens = model.tokenize(text);
    const ctx = await model.createEmbeddingContext({ contextSize: 2049, batchSize: 2049, threads: 1 });
    try {
      const v = [...(await ctx.getEmbeddingFor(tokens)).vector];
      const n = norm(v);
      return v.map((x) => x / n);
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}

function expectClose(a: readonly number[], b: readonly number[], digits = 5): void {
  expect(a.length).toBe(b.length);
  a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, digits));
}

async function badRequest(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.BadRequestError>> {
  const err = await p.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  return err as InstanceType<typeof OpenAI.BadRequestError>;
}

const words = (n: number) => Array.from({ length: n }, () => "hello").join(" ");

describe("embeddings through the openai SDK", () => {
  test("vectors are L2-normalized; the SDK's default (base64) decodes to the same floats", async () => {
    const input = ["the cat sat on the mat", "quantum chromodynamics"];
    const f = await floats("bert-tiny", input);
    const b = await client.embeddings.create({ model: "bert-tiny", input });
    expect(f.data.map((d) => d.index)).toEqual([0, 1]);
    for (const [i, d] of f.data.entries()) {
      expect(d.embedding.length).toBe(64);
      expect(norm(d.embedding)).toBeCloseTo(1, 5);
      // base64 is float32: equal to the float answer up to float32 rounding.
      expectClose(b.data[i]!.embedding, d.embedding, 6);
    }
    expect(f.data[0]!.embedding).not.toEqual(f.data[1]!.embedding);
  });

  test("usage counts the tokens the model evaluated, [CLS] and [SEP] included", async () => {
    const r = await floats("bert-tiny", ["hello", "hello world"]);
    expect(r.usage).toEqual({ prompt_tokens: 3 + 4, total_tokens: 3 + 4 });
  });

  test("an input exactly as long as the context works; one token more is a 400 naming the input", async () => {
    // bert-tiny: 512 positions; 510 words + [CLS] + [SEP] fill them.
    const full = await floats("bert-tiny", ["hi", words(510)]);
    expect(full.usage.prompt_tokens).toBe(3 + 512);
    expect(norm(full.data[1]!.embedding)).toBeCloseTo(1, 5);
    const over = await badRequest(floats("bert-tiny", ["hi", words(511)]));
    expect(over.code).toBe("context_length_exceeded");
    expect(over.param).toBe("input");
    expect(over.message).toContain("input[1] has 513 tokens");
    // A causal model: stories260K declares 2048 (the loaded context), and BOS is one of them.
    const ids = Array.from({ length: 2047 }, (_, i) => 3 + (i % 500));
    expect((await floats("stories260K", [ids])).usage.prompt_tokens).toBe(2048);
    expect((await badRequest(floats("stories260K", [[1, 2], [...ids, 5]]))).message).toContain("input[1] has 2049 tokens");
  });

  test("an input longer than the default batch is pooled whole (mean-pooled BERT, 1024 context)", async () => {
    const text = words(900);
    const r = await floats("bert-long", text);
    expect(r.usage.prompt_tokens).toBe(902);
    expectClose(r.data[0]!.embedding, await reference(bertLong, text));
  });

  test("a causal model with mean pooling in its metadata is pooled over the whole input", async () => {
    const text = Array.from({ length: 200 }, (_, i) => `w${i}`).join(" ");
    const r = await floats("qwen-mean", text);
    expect(r.usage.prompt_tokens).toBeGreaterThan(512);
    expectClose(r.data[0]!.embedding, await reference(qwenMean, text));
  });

  test("a causal model without pooling metadata gives its last token's state, as `pooling_type: last` does, at any length", async () => {
    // The long one spans several of node-llama-cpp's 512-token batches: a causal model's last
    // token sees them all through the KV cache, so the plain model needs no whole-input batch.
    const input = ["a causal model", "embeds with its last token", Array.from({ length: 200 }, (_, i) => `w${i}`).join(" ")];
    const plain = await floats("qwen-plain", input);
    const last = await floats("qwen-last", input);
    expect(plain.usage.prompt_tokens).toBeGreaterThan(512);
    for (const i of [0, 1, 2]) expectClose(plain.data[i]!.embedding, last.data[i]!.embedding, 6);
    expect(plain.data[0]!.embedding).not.toEqual(plain.data[1]!.embedding);
  });

  test("token ids: one list or a list of lists, the same as the text they spell", async () => {
    const ids = [...bert.tokenize("hello world")];
    const fromText = await floats("bert-tiny", ["hello world", "goodbye"]);
    const one = await floats("bert-tiny", ids);
    expect(one.data.length).toBe(1);
    expectClose(one.data[0]!.embedding, fromText.data[0]!.embedding, 6);
    expect(one.usage.prompt_tokens).toBe(ids.length + 2);
    const many = await floats("bert-tiny", [ids, [...bert.tokenize("goodbye")]]);
    expect(many.data.length).toBe(2);
    expectClose(many.data[1]!.embedding, fromText.data[1]!.embedding, 6);
    // Already carrying [CLS] ... [SEP]: not added twice.
    const framed = await floats("bert-tiny", [[101, ...ids, 102]]);
    expectClose(framed.data[0]!.embedding, fromText.data[0]!.embedding, 6);
  });

  test("bad token ids are a 400 naming the input", async () => {
    const vocab = 30522;
    for (const input of [[5, vocab], [[1, 2], [3, vocab + 7]]]) {
      const err = await badRequest(floats("bert-tiny", input as number[]));
      expect(err.param).toBe("input");
      expect(err.message).toContain(String(input.flat().at(-1)));
    }
    for (const input of [[1.5], [-1], [[1], []], [[1], ["a"]]]) {
      expect((await badRequest(floats("bert-tiny", input as number[]))).param).toMatch(/^input/);
    }
  });

  test("empty input is a 400, never a 200 with an empty vector", async () => {
    for (const input of ["", [""], ["a", ""], [], [[]]]) {
      expect((await badRequest(floats("bert-tiny", input as string[]))).param).toMatch(/^input/);
    }
  });

  test("dimensions truncates and renormalizes; more than the model has is a 400", async () => {
    const full = (await floats("bert-tiny", "hello world")).data[0]!.embedding;
    const cut = (await floats("bert-tiny", "hello world", { dimensions: 16 })).data[0]!.embedding;
    expect(cut.length).toBe(16);
    expect(norm(cut)).toBeCloseTo(1, 5);
    const head = full.slice(0, 16);
    expectClose(cut, head.map((x) => x / norm(head)), 6);
    expect((await floats("bert-tiny", "hello world", { dimensions: 64 })).data[0]!.embedding.length).toBe(64);
    const err = await badRequest(floats("bert-tiny", "hello world", { dimensions: 65 }));
    expect(err.param).toBe("dimensions");
    expect(err.message).toContain("64");
  });
});
