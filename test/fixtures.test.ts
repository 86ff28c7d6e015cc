// The GGUF reader/writer and the synthetic models, checked against the real llama.cpp engine.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JinjaTemplateChatWrapper, type Llama, LlamaLogLevel, type LlamaModel, type Token, getLlama } from "node-llama-cpp";
import {
  type GgufValue,
  TensorType,
  encodeGguf,
  encodeQ8_0,
  kv,
  parseGguf,
  readGgufFile,
  writeGgufFile,
} from "./fixtures/gguf.ts";
import { ensureFixtures, fixtures } from "./fixtures/models.ts";
import { SYNTHETIC_FIXTURES, prepareFixtures, sharedModel } from "./fixtures/prepare.ts";
import { buildModel, synthesizeModel } from "./fixtures/synth.ts";

// Set per test rather than relying on bunfig: the real engine on a busy 2-core machine can take
// several seconds where the default is 5.
const ENGINE_TIMEOUT = 60_000;
const BUILD_TIMEOUT = 60_000;

// Builds missing fixtures (about a second), so this file also runs on its own.
beforeAll(() => {
  ensureFixtures();
}, BUILD_TIMEOUT);

const tokenizerKeys = (m: ReadonlyMap<string, GgufValue>) =>
  new Map([...m].filter(([k]) => k.startsWith("tokenizer.")));

describe("GGUF reader and writer", () => {
  test("stories260K round-trips: same metadata, tensors and bytes", () => {
    const original = readFileSync(fixtures.stories260K);
    const first = parseGguf(original);
    const rewritten = encodeGguf({ metadata: first.metadata, tensors: first.tensors });
    const second = parseGguf(rewritten);

    expect(second.metadata).toEqual(first.metadata);
    expect(second.tensors.map(({ data: _d, ...info }) => info)).toEqual(first.tensors.map(({ data: _d, ...info }) => info));
    second.tensors.forEach((t, i) => expect(t.data).toEqual(first.tensors[i]?.data ?? new Uint8Array()));
    expect(Buffer.from(rewritten).equals(original)).toBe(true);
  });

  test("keeps the on-disk type of every tokenizer value", () => {
    const { metadata, tensors } = readGgufFile(fixtures.stories260K);
    expect(metadata.get("tokenizer.ggml.token_type")).toMatchObject({ type: "array", items: { type: "i32" } });
    expect(metadata.get("tokenizer.ggml.scores")).toMatchObject({ type: "array", items: { type: "f32" } });
    expect(metadata.get("tokenizer.ggml.tokens")).toMatchObject({ type: "array", items: { type: "string" } });
    expect(metadata.get("tokenizer.ggml.bos_token_id")).toEqual(kv.u32(1));
    // ggml dims are innermost first: the (vocab, embd) embedding matrix is [embd, vocab].
    expect(tensors.find((t) => t.name === "token_embd.weight")?.dims).toEqual([64, 512]);
  });

  test("vocab-only files round-trip byte for byte", () => {
    for (const path of [fixtures.vocabQwen2, fixtures.vocabBertBge]) {
      const original = readFileSync(path);
      const { metadata } = parseGguf(original);
      expect(Buffer.from(encodeGguf({ metadata, tensors: [] })).equals(original)).toBe(true);
    }
  }, BUILD_TIMEOUT);

  test("writes and reads back every value type, nested arrays and a custom alignment", () => {
    const metadata = new Map<string, GgufValue>([
      ["general.alignment", kv.u32(64)],
      ["t.u8", kv.u8(255)],
      ["t.i8", kv.i8(-128)],
      ["t.u16", kv.u16(65535)],
      ["t.i16", kv.i16(-32768)],
      ["t.u32", kv.u32(4294967295)],
      ["t.i32", kv.i32(-2147483648)],
      ["t.f32", kv.f32(Math.fround(0.1))],
      ["t.f64", kv.f64(0.1)],
      ["t.u64", kv.u64(18446744073709551615n)],
      ["t.i64", kv.i64(-9223372036854775808n)],
      ["t.bool", kv.bool(true)],
      ["t.string", kv.string("\uFEFFstarts with a BOM, ends with ✓")],
      ["t.a.u8", kv.array({ type: "u8", values: new Uint8Array([1, 2, 3]) })],
      ["t.a.i16", kv.array({ type: "i16", values: new Int16Array([-1, 2]) })],
      ["t.a.f64", kv.array({ type: "f64", values: new Float64Array([Math.PI]) })],
      ["t.a.u64", kv.array({ type: "u64", values: new BigUint64Array([1n, 2n ** 63n]) })],
      ["t.a.bool", kv.array({ type: "bool", values: [true, false, true] })],
      ["t.a.string", kv.array({ type: "string", values: ["", "a", "日本"] })],
      [
        "t.a.nested",
        kv.array({
          type: "array",
          values: [
            { type: "i32", values: new Int32Array([7]) },
            { type: "string", values: ["x"] },
          ],
        }),
      ],
    ]);
    const f32 = new Float32Array([1, -2, 0.5]);
    const f16 = new Uint8Array(new Uint16Array([0x3c00, 0xc000]).buffer); // 1.0, -2.0
    const bytes = encodeGguf({
      metadata,
      tensors: [
        { name: "a", dims: [3], type: TensorType.F32, data: new Uint8Array(f32.buffer) },
        { name: "b", dims: [2, 1], type: TensorType.F16, data: () => f16 },
      ],
    });
    const back = parseGguf(bytes);
    expect(back.metadata).toEqual(metadata);
    expect(back.alignment).toBe(64);
    expect(back.dataOffset % 64).toBe(0);
    expect(back.tensors.map((t) => [t.name, t.dims, t.type, t.offset])).toEqual([
      ["a", [3], TensorType.F32, 0],
      ["b", [2, 1], TensorType.F16, 64],
    ]);
    expect(new Float32Array(back.tensors[0]?.data.slice().buffer ?? new ArrayBuffer(0))).toEqual(f32);
    expect(back.tensors[1]?.data).toEqual(f16);
  });

  test("Q8_0 blocks hold an fp16 scale max|x|/127 and int8 round(x/scale)", () => {
    const values = new Float32Array(64);
    for (let i = 0; i < 32; i++) values[i] = (i - 16) / 16; // max |x| = 1 at i = 0
    // the second block stays all zeros: its scale must be 0, not NaN
    const out = encodeQ8_0(values);
    expect(out.byteLength).toBe(2 * 34);
    const view = new DataView(out.buffer);
    const d = new Float16Array(new Uint16Array([view.getUint16(0, true)]).buffer)[0] ?? NaN;
    expect(d).toBeCloseTo(1 / 127, 5);
    const q = new Int8Array(out.buffer, 2, 32);
    expect(q[0]).toBe(-127);
    expect(q[16]).toBe(0);
    for (let i = 0; i < 32; i++) expect(Math.abs((q[i] ?? 0) * d - (values[i] ?? 0))).toBeLessThanOrEqual(d / 2 + 1e-6);
    expect([...out.subarray(34)]).toEqual(new Array(34).fill(0));
  });

  test("writeGgufFile streams the same bytes to disk", () => {
    const { metadata, tensors } = readGgufFile(fixtures.stories260K);
    const out = join(tmpdir(), `lmx-gguf-${process.pid}.gguf`);
    try {
      writeGgufFile(out, { metadata, tensors });
      expect(readFileSync(out).equals(readFileSync(fixtures.stories260K))).toBe(true);
    } finally {
      rmSync(out, { force: true });
    }
  });
});

describe("synthetic models", () => {
  const bertShape = { ...SYNTHETIC_FIXTURES.bertTiny };

  test("preparing again rebuilds nothing once the fixtures are current", () => {
    const results = prepareFixtures();
    expect(results.map((r): string => r.name).sort()).toEqual(Object.keys(SYNTHETIC_FIXTURES).sort());
    expect(results.filter((r) => r.built)).toEqual([]);
  });

  test("the same seed gives identical bytes, another seed other weights", () => {
    const vocab = readGgufFile(sharedModel(bertShape.vocab)).metadata;
    const a = encodeGguf(buildModel(vocab, bertShape));
    const b = encodeGguf(buildModel(vocab, bertShape));
    const c = encodeGguf(buildModel(vocab, { ...bertShape, seed: 2 }));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(a.byteLength).toBe(c.byteLength);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
    // The cached fixture was written by the same generator from the same spec.
    expect(Buffer.from(a).equals(readFileSync(fixtures.bertTiny))).toBe(true);
  }, BUILD_TIMEOUT);

  test("the file written by synthesizeModel is identical to the cached fixture", () => {
    const spec = SYNTHETIC_FIXTURES.qwen2Tiny;
    const out = join(tmpdir(), `lmx-synth-${process.pid}.gguf`);
    try {
      synthesizeModel({ ...spec, vocab: sharedModel(spec.vocab), out });
      expect(readFileSync(out).equals(readFileSync(fixtures.qwen2Tiny))).toBe(true);
    } finally {
      rmSync(out, { force: true });
    }
  }, BUILD_TIMEOUT);

  test("copies all tokenizer metadata with its types and lays out qwen2 tensors", () => {
    const vocab = readGgufFile(fixtures.vocabQwen2);
    const model = readGgufFile(fixtures.qwen2Tiny);
    expect(tokenizerKeys(model.metadata)).toEqual(tokenizerKeys(vocab.metadata));
    expect(model.metadata.get("general.architecture")).toEqual(kv.string("qwen2"));
    expect(model.metadata.get("qwen2.context_length")).toEqual(kv.u32(4096));
    expect(model.metadata.get("general.file_type")).toEqual(kv.u32(7));
    const byName = new Map(model.tensors.map((t) => [t.name, t]));
    expect(byName.get("token_embd.weight")).toMatchObject({ dims: [64, 151936], type: TensorType.Q8_0 });
    // kv width = kvHeads * head_dim = 2 * 16
    expect(byName.get("blk.1.attn_k.weight")).toMatchObject({ dims: [64, 32], type: TensorType.Q8_0 });
    expect(byName.get("blk.1.attn_k.bias")).toMatchObject({ dims: [32], type: TensorType.F32 });
    expect(byName.get("blk.0.ffn_down.weight")?.dims).toEqual([128, 64]);
    for (const t of model.tensors) expect(t.offset % 32).toBe(0);
  }, BUILD_TIMEOUT);

  test("llama3-tiny carries the Llama-3 style chat template, which renders turns and tool calls", () => {
    const template = readGgufFile(fixtures.llama3Tiny).metadata.get("tokenizer.chat_template");
    if (template?.type !== "string") throw new Error("llama3-tiny has no chat template");
    const wrapper = new JinjaTemplateChatWrapper({ template: template.value });
    const { contextText } = wrapper.generateContextState({
      chatHistory: [
        { type: "system", text: "Be brief." },
        { type: "user", text: "Weather in Paris?" },
        {
          type: "model",
          response: [{ type: "functionCall", name: "get_weather", params: { city: "Paris" }, result: { celsius: 21 } }, "21C."],
        },
        { type: "user", text: "Thanks" },
        { type: "model", response: [] },
      ],
      availableFunctions: { get_weather: { description: "Weather for a city" } },
    });
    const text = contextText.toString();
    expect(text).toContain("<|start_header_id|>system<|end_header_id|>\n\nBe brief.");
    expect(text).toContain('"name": "get_weather"');
    expect(text).toContain('<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>');
    expect(text).toContain("<|start_header_id|>ipython<|end_header_id|>\n\n");
    expect(text.endsWith("<|start_header_id|>user<|end_header_id|>\n\nThanks<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")).toBe(true);
  }, BUILD_TIMEOUT);
});

describe("synthetic models in the real engine", () => {
  let llama: Llama;
  const loaded = new Map<string, Promise<LlamaModel>>();

  /** Each file is loaded once per run: a 150k-token vocabulary alone takes over a second. */
  function load(modelPath: string, vocabOnly = false): Promise<LlamaModel> {
    const key = `${modelPath}:${vocabOnly}`;
    let model = loaded.get(key);
    if (!model) {
      model = llama.loadModel({ modelPath, vocabOnly });
      loaded.set(key, model);
    }
    return model;
  }

  async function generate(model: LlamaModel, prompt: Token[], count: number): Promise<Token[]> {
    const context = await model.createContext({ threads: 1, contextSize: 256 });
    try {
      const generated: Token[] = [];
      for await (const token of context.getSequence().evaluate(prompt, { temperature: 0 })) {
        generated.push(token);
        if (generated.length === count) break;
      }
      return generated;
    } finally {
      await context.dispose();
    }
  }

  beforeAll(async () => {
    // Quiets expected warnings (BERT's lowercasing trips node-llama-cpp's detokenize check). The
    // "missing tensor" errors logged on each vocab-only load are expected too: node-llama-cpp
    // first simulates a full load of the file to estimate memory, then falls back.
    llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  }, ENGINE_TIMEOUT);

  afterAll(async () => {
    for (const model of loaded.values()) await (await model).dispose();
    await llama.dispose();
  }, ENGINE_TIMEOUT);

  const decoders = [
    { name: "qwen2Tiny", arch: "qwen2", ctx: 4096, vocab: fixtures.vocabQwen2 },
    { name: "llama3Tiny", arch: "llama", ctx: 8192, vocab: fixtures.vocabLlamaBpe },
  ] as const;

  for (const d of decoders) {
    test(`${d.name} loads and reports its architecture, context and template`, async () => {
      const model = await load(fixtures[d.name]);
      expect(String(model.fileInfo.metadata.general.architecture)).toBe(d.arch);
      expect(model.trainContextSize).toBe(d.ctx);
      expect(model.fileInfo.metadata.tokenizer.chat_template).toBeString();
    }, ENGINE_TIMEOUT);

    test(`${d.name} tokenizes exactly like its vocab-only file`, async () => {
      const model = await load(fixtures[d.name]);
      const vocabOnly = await load(d.vocab, true);
      const ids = model.tokenize("Hello world");
      expect(ids.length).toBeGreaterThan(0);
      expect(ids).toEqual(vocabOnly.tokenize("Hello world"));
      expect(model.detokenize(ids)).toBe("Hello world");
    }, ENGINE_TIMEOUT);

    test(`${d.name} generates tokens`, async () => {
      const model = await load(fixtures[d.name]);
      const generated = await generate(model, model.tokenize("Hello world"), 4);
      expect(generated).toHaveLength(4);
      for (const t of generated) expect(t).toBeLessThan(model.fileInfo.metadata.tokenizer.ggml.tokens.length);
    }, ENGINE_TIMEOUT);
  }

  test("bertTiny loads as an encoder and tokenizes like its vocab-only file", async () => {
    const model = await load(fixtures.bertTiny);
    expect(String(model.fileInfo.metadata.general.architecture)).toBe("bert");
    expect(model.trainContextSize).toBe(512);
    const vocabOnly = await load(fixtures.vocabBertBge, true);
    expect(model.tokenize("hello world")).toEqual(vocabOnly.tokenize("hello world"));
  }, ENGINE_TIMEOUT);

  test("bertTiny embeds text", async () => {
    const model = await load(fixtures.bertTiny);
    const context = await model.createEmbeddingContext({ threads: 1 });
    try {
      const hello = (await context.getEmbeddingFor("hello")).vector;
      const other = (await context.getEmbeddingFor("a different sentence")).vector;
      expect(hello).toHaveLength(SYNTHETIC_FIXTURES.bertTiny.embd);
      expect(hello.every(Number.isFinite)).toBe(true);
      expect(hello.some((x) => x !== 0)).toBe(true);
      expect(other).not.toEqual(hello);
    } finally {
      await context.dispose();
    }
  }, ENGINE_TIMEOUT);

  test("stories260K from the shared folder still generates", async () => {
    const model = await load(fixtures.stories260K);
    const generated = await generate(model, model.tokenize("Once upon a time"), 4);
    expect(model.detokenize(generated).length).toBeGreaterThan(0);
  }, ENGINE_TIMEOUT);
});
