// Prompt tokens served from the cache: the engine reports them once in its usage event
// (core/events.ts `cachedTokens`), and every API says so in its own field, streamed or not.
import { describe, expect, test } from "bun:test";
import { fakeApp, type FakeApp } from "../fakes/fake-app.ts";
import { parseExposition } from "../helpers/exposition.ts";

// Wire JSON, read loosely: the assertions themselves check its shape.
type Json = Record<string, any>;

const user = (content: string) => [{ role: "user", content }];
/** A model whose engine says 3 of the prompt's tokens came from its cache. */
const cachedThree = () => fakeApp([{ id: "m", script: () => ({ steps: [{ text: "Hello" }, { text: " there" }], cachedTokens: 3 }) }]);

async function ok(f: FakeApp, path: string, body: unknown): Promise<Json> {
  const res = await f.post(path, body);
  expect(res.status, path).toBe(200);
  return (await res.json()) as Json;
}

/** Every `data:` payload of an SSE body, named events or not. */
async function dataOf(res: Response): Promise<Json[]> {
  expect(res.status).toBe(200);
  return (await res.text()).split("\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)) as Json);
}

describe("cached prompt tokens", () => {
  test("OpenAI chat: usage.prompt_tokens_details.cached_tokens, streamed and not", async () => {
    await using f = cachedThree();
    const r = await ok(f, "/v1/chat/completions", { model: "m", messages: user("one two three four") });
    expect(r.usage.prompt_tokens).toBeGreaterThan(3);
    expect(r.usage.prompt_tokens_details).toEqual({ cached_tokens: 3 });
    const chunks = await dataOf(await f.post("/v1/chat/completions", { model: "m", messages: user("one two three four"), stream: true, stream_options: { include_usage: true } }));
    expect(chunks.at(-1)!.usage.prompt_tokens_details).toEqual({ cached_tokens: 3 });
  });

  test("OpenAI chat with n choices: the prompt, and its cached part, count once", async () => {
    await using f = cachedThree();
    const r = await ok(f, "/v1/chat/completions", { model: "m", messages: user("one two three four"), n: 3 });
    expect(r.usage.prompt_tokens_details.cached_tokens).toBe(3);
  });

  test("OpenAI completions: usage.prompt_tokens_details.cached_tokens, streamed and not", async () => {
    await using f = cachedThree();
    const r = await ok(f, "/v1/completions", { model: "m", prompt: "once upon a time there" });
    expect(r.usage).toMatchObject({ prompt_tokens: 5, prompt_tokens_details: { cached_tokens: 3 } });
    const chunks = await dataOf(await f.post("/v1/completions", { model: "m", prompt: "once upon a time there", stream: true, stream_options: { include_usage: true } }));
    expect(chunks.at(-1)!.usage).toMatchObject({ prompt_tokens: 5, prompt_tokens_details: { cached_tokens: 3 } });
    // Two prompts: each one's cached tokens add up.
    const two = await ok(f, "/v1/completions", { model: "m", prompt: ["once upon a time there", "a b c d"] });
    expect(two.usage.prompt_tokens_details.cached_tokens).toBe(6);
  });

  test("Responses: usage.input_tokens_details.cached_tokens, streamed and not", async () => {
    await using f = cachedThree();
    const r = await ok(f, "/v1/responses", { model: "m", input: "one two three four", store: false });
    expect(r.usage.input_tokens_details).toEqual({ cached_tokens: 3 });
    const events = await dataOf(await f.post("/v1/responses", { model: "m", input: "one two three four", store: false, stream: true }));
    const done = events.find((e) => e.type === "response.completed")!;
    expect(done.response.usage.input_tokens_details).toEqual({ cached_tokens: 3 });
  });

  test("Anthropic: cache_read_input_tokens, apart from input_tokens as Anthropic counts them", async () => {
    await using f = cachedThree();
    const plain = await ok(f, "/v1/chat/completions", { model: "m", messages: user("one two three four") });
    const r = await ok(f, "/v1/messages", { model: "m", max_tokens: 50, messages: user("one two three four") });
    expect(r.usage).toEqual({ input_tokens: plain.usage.prompt_tokens - 3, output_tokens: 2, cache_creation_input_tokens: 0, cache_read_input_tokens: 3 });
    const events = await dataOf(await f.post("/v1/messages", { model: "m", max_tokens: 50, messages: user("one two three four"), stream: true }));
    const delta = events.find((e) => e.type === "message_delta")!;
    expect(delta.usage).toEqual(r.usage);
  });

  test("no cache hit: every field says 0", async () => {
    await using f = fakeApp([{ id: "m" }]);
    expect((await ok(f, "/v1/chat/completions", { model: "m", messages: user("hi") })).usage.prompt_tokens_details).toEqual({ cached_tokens: 0 });
    expect((await ok(f, "/v1/completions", { model: "m", prompt: "hi" })).usage.prompt_tokens_details).toEqual({ cached_tokens: 0 });
    expect((await ok(f, "/v1/messages", { model: "m", max_tokens: 5, messages: user("hi") })).usage.cache_read_input_tokens).toBe(0);
  });

  test("Prometheus: lmx_prompt_cached_tokens_total counts what the engine reported", async () => {
    await using f = cachedThree();
    await ok(f, "/v1/chat/completions", { model: "m", messages: user("one two three four") });
    await ok(f, "/v1/completions", { model: "m", prompt: "once upon a time there" });
    const res = await f.request("/metrics");
    const m = parseExposition(await res.text());
    expect(m.value("lmx_prompt_cached_tokens_total", { model: "m" })).toBe(6);
    expect(m.value("lmx_prompt_tokens_total", { model: "m" })!).toBeGreaterThan(6);
  });
});
