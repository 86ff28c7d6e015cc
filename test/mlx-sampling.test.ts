// Sampling fidelity on the MLX engine through the official OpenAI SDK, served by a real mlx-lm
// worker: the fixture is a 2-layer qwen2 with random weights and Qwen2's tokenizer.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { mlxTestEnv, type MlxTestEnv } from "./helpers/mlx.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

let env: MlxTestEnv;
let s: TestServer;
let client: OpenAI;
const model = "mlx-qwen2-tiny";
/** " time" in Qwen2's vocabulary. */
const TIME = 882;

beforeAll(async () => {
  env = await mlxTestEnv();
  s = await startTestServer(["--python", env.python, "--parallel", "4", "--ctx", "1024"]);
  const r = await s.request("/admin/v1/import", { method: "POST", json: { paths: [env.model] } });
  expect(r.status).toBe(200);
  client = new OpenAI({ baseURL: s.url + "/v1", apiKey: "none", maxRetries: 0 });
}, 600_000);

afterAll(async () => {
  await s?.[Symbol.asyncDispose]();
});

const messages = [{ role: "user" as const, content: "Tell me a story" }];
const chat = (extra: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}) =>
  client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, ...extra });

async function status(path: string, json: object): Promise<{ status: number; param: string | null }> {
  const r = await s.request(path, { method: "POST", json });
  const body = (await r.json()) as { error?: { param: string | null } };
  return { status: r.status, param: body.error?.param ?? null };
}

describe("MLX sampling", () => {
  test("the same seed gives the same text; without one, concurrent requests differ", async () => {
    const a = await chat({ temperature: 1, seed: 5, max_tokens: 12 });
    const b = await chat({ temperature: 1, seed: 5, max_tokens: 12 });
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    const texts = await Promise.all(Array.from({ length: 4 }, () => chat({ temperature: 1, max_tokens: 12 }).then((r) => r.choices[0]!.message.content)));
    expect(new Set(texts).size).toBeGreaterThan(1);
  }, 60_000);

  test("logit_bias: +100 forces a token, -100 bans it; an id outside the vocabulary is a 400", async () => {
    const forced = await client.completions.create({ model, prompt: "Once upon a", max_tokens: 3, temperature: 0, logit_bias: { [TIME]: 100 } });
    expect(forced.choices[0]!.text).toBe(" time time time");
    // Forced, then banned: the greedy token is no longer " time", and its logprob says it is (all but) impossible.
    const banned = await client.completions.create({ model, prompt: "Once upon a", max_tokens: 1, temperature: 0, logit_bias: { [TIME]: -100 }, logprobs: 1 });
    expect(banned.choices[0]!.text).not.toBe(" time");
    expect(banned.choices[0]!.text.length).toBeGreaterThan(0);
    expect(await status("/v1/completions", { model, prompt: "x", logit_bias: { 10_000_000: 1 } })).toMatchObject({ status: 400, param: "logit_bias" });
  }, 60_000);

  test("chat logprobs: OpenAI's shape, the greedy token is the most likely, streamed alike", async () => {
    const r = await chat({ logprobs: true, top_logprobs: 3 });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content.length).toBe(r.usage!.completion_tokens);
    expect(content.map((t) => t.token).join("")).toBe(r.choices[0]!.message.content!);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.logprob).toBeCloseTo(Math.max(...t.top_logprobs.map((a) => a.logprob)), 3);
      expect(t.bytes).toEqual([...Buffer.from(t.token, "utf8")]);
    }
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const c of await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3, stream: true })) {
      streamed.push(...(c.choices[0]?.logprobs?.content ?? []));
    }
    expect(streamed.map((t) => t.token)).toEqual(content.map((t) => t.token));
  }, 60_000);

  test("legacy completions logprobs", async () => {
    const r = await client.completions.create({ model, prompt: "Once upon a", max_tokens: 5, temperature: 0, logprobs: 2 });
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens!.join("")).toBe(r.choices[0]!.text);
    expect(lp.top_logprobs!.every((t) => Object.keys(t).length >= 1)).toBe(true);
    expect(lp.text_offset![0]).toBe(0);
  }, 60_000);

  test("a completion keeps the leading space of its first piece", async () => {
    const r = await client.completions.create({ model, prompt: "Once upon a", max_tokens: 2, temperature: 0, logit_bias: { [TIME]: 100 } });
    expect(r.choices[0]!.text).toBe(" time time");
  }, 60_000);

  test("n choices, indexed, reproducible with a seed", async () => {
    const a = await chat({ temperature: 1, n: 3, seed: 9 });
    expect(a.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(new Set(a.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
    const b = await chat({ temperature: 1, n: 3, seed: 9 });
    expect(b.choices.map((c) => c.message.content)).toEqual(a.choices.map((c) => c.message.content));
  }, 60_000);

  test("suffix is a 400 naming it", async () => {
    expect(await status("/v1/completions", { model, prompt: "def f(", suffix: "return x" })).toMatchObject({ status: 400, param: "suffix" });
  }, 60_000);

  test("echo: the prompt in front; with logprobs its tokens are scored too, the first null", async () => {
    const plain = await client.completions.create({ model, prompt: "Once upon a", max_tokens: 3, temperature: 0, logprobs: 2 });
    const r = await client.completions.create({ model, prompt: "Once upon a", max_tokens: 3, temperature: 0, echo: true, logprobs: 2 });
    expect(r.choices[0]!.text).toBe("Once upon a" + plain.choices[0]!.text);
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens).toEqual(["Once", " upon", " a", ...plain.choices[0]!.logprobs!.tokens!]);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.top_logprobs![0]).toBeNull();
    expect(lp.token_logprobs!.slice(1).every((x) => typeof x === "number" && x <= 0)).toBe(true);
    expect(Object.keys(lp.top_logprobs![1]!)).toHaveLength(2);
    // The generated tokens' logprobs are the same whether the prompt was echoed or not.
    expect(lp.token_logprobs!.slice(3).map((x) => x!.toFixed(3))).toEqual(plain.choices[0]!.logprobs!.token_logprobs!.map((x) => x!.toFixed(3)));
  }, 60_000);
});
