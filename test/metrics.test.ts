import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { ensureFixtures } from "./fixtures/models.ts";
import { parseExposition } from "./helpers/exposition.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

// /metrics of a real server on the real engine: a chat through the official OpenAI SDK, then a
// scrape, parsed strictly, whose counters must agree with the usage the chat returned.

const fx = ensureFixtures();
let srv: TestServer;
let client: OpenAI;

beforeAll(async () => {
  srv = await startTestServer(["--model", fx.stories260K, "--ctx", "512", "--api-key", "test-key"]);
  client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "test-key", maxRetries: 0 });
});
afterAll(async () => {
  await srv[Symbol.asyncDispose]();
});

async function scrape() {
  const res = await srv.request("/metrics", { headers: { authorization: "Bearer test-key" } });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await res.text());
}

describe("/metrics on a real server", () => {
  test("needs the key", async () => {
    expect((await srv.request("/metrics")).status).toBe(401);
  });

  test("after chats (one streamed), the token counters equal the usage returned", async () => {
    const before = await scrape();
    expect(before.value("lmx_model_loaded", { model: "stories260K", engine: "llama.cpp" })).toBe(0);

    const whole = await client.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 24, temperature: 0 });
    const stream = await client.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "A cat" }], max_tokens: 16, stream: true, stream_options: { include_usage: true } });
    let streamed: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) if (chunk.usage) streamed = chunk.usage;
    expect(whole.usage!.completion_tokens).toBeGreaterThan(0);
    expect(streamed!.completion_tokens).toBeGreaterThan(0);

    const m = await scrape();
    const model = { model: "stories260K" };
    expect(m.value("lmx_generated_tokens_total", model)).toBe(whole.usage!.completion_tokens + streamed!.completion_tokens);
    expect(m.value("lmx_prompt_tokens_total", model)).toBe(whole.usage!.prompt_tokens + streamed!.prompt_tokens);
    expect(m.value("lmx_requests_total", { ...model, api: "openai.chat", status: "ok" })).toBe(2);
    expect(m.value("lmx_request_duration_seconds_count", { ...model, api: "openai.chat" })).toBe(2);
    expect(m.value("lmx_time_to_first_token_seconds_count", { ...model, api: "openai.chat" })).toBe(2);
    expect(m.value("lmx_model_loaded", { model: "stories260K", engine: "llama.cpp" })).toBe(1);
    expect(m.value("lmx_model_memory_bytes", model)!).toBeGreaterThan(0);
    expect(m.value("lmx_active_requests", model)).toBe(0);
    expect(m.value("lmx_queued_requests", model)).toBe(0);
    expect(m.value("lmx_memory_budget_bytes")!).toBeGreaterThan(0);
    const build = m.samples.find((s) => s.name === "lmx_build_info")!;
    expect(build.value).toBe(1);
    expect(build.labels.engine_version).toMatch(/^\d+\.\d+\.\d+/);
  });
});
