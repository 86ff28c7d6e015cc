import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ensureFixtures } from "./fixtures/models.ts";
import { readSse, startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();
let srv: TestServer;

beforeAll(async () => {
  srv = await startTestServer(["--model", fx.stories260K, "--model", fx.qwen2Tiny, "--model", fx.bertTiny, "--ctx", "2048", "--parallel", "4"]);
});
afterAll(async () => {
  await srv[Symbol.asyncDispose]();
});

type ChatResponse = {
  choices: { message: { content: string | null }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  timings: { prompt_per_second: number; predicted_per_second: number };
};
type Chunk = { object: string; choices: { delta: { content?: string; role?: string }; finish_reason: string | null }[]; usage?: ChatResponse["usage"] };

const story = [{ role: "user", content: "Once upon a time" }];
const post = (path: string, json: unknown, init: RequestInit = {}) => srv.request(path, { method: "POST", json, ...init });

describe("models", () => {
  test("GET /v1/models lists every servable model with LMX fields", async () => {
    const res = await srv.request("/v1/models");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; data: Record<string, unknown>[] };
    expect(body.object).toBe("list");
    const ids = body.data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(["stories260K", "qwen2-tiny", "bert-tiny"]));
    const qwen = body.data.find((m) => m.id === "qwen2-tiny")!;
    expect(qwen).toMatchObject({ object: "model", owned_by: "lmx", format: "gguf", max_context_length: 4096, architecture: "qwen2" });
  });

  test("GET /health needs nothing", async () => {
    const res = await srv.request("/health");
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: string }).status).toBe("ok");
  });
});

describe("chat completions", () => {
  test("non-streamed answer with usage and timings; loaded context shows in /v1/models", async () => {
    const res = await post("/v1/chat/completions", { model: "stories260K", messages: story, max_tokens: 20, seed: 1 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as ChatResponse;
    expect(body.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(body.usage.prompt_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(20);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens);
    expect(body.timings.predicted_per_second).toBeGreaterThan(0);
    const m = (await (await srv.request("/v1/models/stories260K")).json()) as Record<string, unknown>;
    expect(m.loaded_context_length).toBe(2048);
    expect(m.state).toBe("ready");
  });

  test("streamed answer equals the non-streamed one for the same seed, ends with [DONE] and usage", async () => {
    const req = { model: "stories260K", messages: story, max_tokens: 40, seed: 7, temperature: 0.7 };
    const full = (await (await post("/v1/chat/completions", req)).json()) as ChatResponse;
    const res = await post("/v1/chat/completions", { ...req, stream: true, stream_options: { include_usage: true } });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const { events, done } = await readSse(res);
    expect(done).toBe(true);
    const chunks = events as Chunk[];
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe(full.choices[0]!.message.content!);
    const last = chunks[chunks.length - 1]!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.completion_tokens).toBe(full.usage.completion_tokens);
    expect(chunks[chunks.length - 2]!.choices[0]!.finish_reason).toBe(full.choices[0]!.finish_reason);
  });

  test("stop strings end the answer, across token boundaries, and are never emitted", async () => {
    const base = { model: "stories260K", messages: story, max_tokens: 60, seed: 3, temperature: 0 };
    const freeRes = (await (await post("/v1/chat/completions", base)).json()) as ChatResponse;
    const free = freeRes.choices[0]!.message.content!;
    // A stop string that starts inside one token and ends in another.
    const at = Math.floor(free.length / 2);
    const stop = free.slice(at, at + 5);
    expect(stop.length).toBe(5);
    const expected = free.slice(0, free.indexOf(stop));

    const stopped = (await (await post("/v1/chat/completions", { ...base, stop: [stop, "zzzz-never"] })).json()) as ChatResponse;
    expect(stopped.choices[0]!.message.content).toBe(expected);
    expect(stopped.choices[0]!.finish_reason).toBe("stop");
    // The engine stopped there (soft stop), and usage counts what it generated up to then.
    expect(stopped.usage.completion_tokens).toBeGreaterThan(0);
    expect(stopped.usage.completion_tokens).toBeLessThan(freeRes.usage.completion_tokens);

    const { events } = await readSse(await post("/v1/chat/completions", { ...base, stop, stream: true }));
    const streamed = (events as Chunk[]).map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(streamed).toBe(expected);
    expect(streamed).not.toContain(stop);
  });

  test("multi-byte characters split across tokens never reach the client as U+FFFD", async () => {
    // The random qwen2 model emits arbitrary byte-level BPE tokens, many of them partial UTF-8.
    const req = { model: "qwen2-tiny", messages: [{ role: "user", content: "写一首诗 🎉" }], max_tokens: 120, seed: 11, temperature: 1 };
    const full = ((await (await post("/v1/chat/completions", req)).json()) as ChatResponse).choices[0]!.message.content!;
    expect(/[^\x00-\x7f]/.test(full)).toBe(true);
    const { events } = await readSse(await post("/v1/chat/completions", { ...req, stream: true }));
    const deltas = (events as Chunk[]).map((c) => c.choices[0]?.delta.content ?? "");
    expect(deltas.join("")).toBe(full);
    const replacementInFull = (full.match(/\uFFFD/g) ?? []).length;
    const replacementInDeltas = deltas.reduce((n, d) => n + (d.match(/\uFFFD/g) ?? []).length, 0);
    expect(replacementInDeltas).toBe(replacementInFull);
  });

  test("system, assistant and multi-part user messages are accepted", async () => {
    const res = await post("/v1/chat/completions", {
      model: "qwen2-tiny",
      max_tokens: 5,
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: [{ type: "text", text: "Hello" }, { type: "text", text: " there" }] },
        { role: "assistant", content: "Hi." },
        { role: "developer", content: "Answer briefly." },
        { role: "user", content: "How are you?" },
      ],
    });
    expect(res.status).toBe(200);
  });
});

describe("text completions", () => {
  test("string prompt, streamed and not", async () => {
    const req = { model: "stories260K", prompt: "Once upon a time", max_tokens: 12, seed: 5, temperature: 0 };
    const body = (await (await post("/v1/completions", req)).json()) as { object: string; choices: { text: string; finish_reason: string }[]; usage: ChatResponse["usage"] };
    expect(body.object).toBe("text_completion");
    expect(body.choices[0]!.text.length).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(12);
    const { events, done } = await readSse(await post("/v1/completions", { ...req, stream: true }));
    expect(done).toBe(true);
    const text = (events as { choices: { text: string }[] }[]).map((e) => e.choices[0]?.text ?? "").join("");
    expect(text).toBe(body.choices[0]!.text);
  });

  test("list prompt gives one choice per prompt", async () => {
    const body = (await (await post("/v1/completions", { model: "stories260K", prompt: ["A cat", "A dog", "The sun"], max_tokens: 4 })).json()) as {
      choices: { index: number; text: string }[];
    };
    expect(body.choices.map((c) => c.index)).toEqual([0, 1, 2]);
  });

  test("default max_tokens is OpenAI's 16", async () => {
    const body = (await (await post("/v1/completions", { model: "stories260K", prompt: "Once upon a time", temperature: 0, seed: 1 })).json()) as { usage: ChatResponse["usage"] };
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(16);
  });
});

describe("embeddings", () => {
  type Emb = { object: string; data: { index: number; embedding: number[] | string }[]; usage: { prompt_tokens: number } };

  test("an embedding model: list input, float and base64 agree", async () => {
    const input = ["the cat sat on the mat", "quantum chromodynamics"];
    const floats = (await (await post("/v1/embeddings", { model: "bert-tiny", input })).json()) as Emb;
    expect(floats.data.length).toBe(2);
    const a = floats.data[0]!.embedding as number[];
    expect(a.length).toBe(64);
    expect(a.every(Number.isFinite)).toBe(true);
    expect(floats.data[1]!.embedding).not.toEqual(a);
    expect(floats.usage.prompt_tokens).toBeGreaterThan(0);
    const b64 = (await (await post("/v1/embeddings", { model: "bert-tiny", input, encoding_format: "base64" })).json()) as Emb;
    const buf = Buffer.from(b64.data[0]!.embedding as string, "base64");
    const decoded = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4));
    expect(decoded.length).toBe(a.length);
    decoded.forEach((x, i) => expect(x).toBeCloseTo(a[i]!, 5));
  });

  test("a causal model embeds too", async () => {
    const body = (await (await post("/v1/embeddings", { model: "stories260K", input: "hello world" })).json()) as Emb;
    expect((body.data[0]!.embedding as number[]).length).toBe(64);
  });
});
