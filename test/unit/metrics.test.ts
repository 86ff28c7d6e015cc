// /metrics on the fake app: what each API's requests count for (model, api and status labels),
// token counters, latency histograms, the scheduler's gauges, the exposition format and its auth.
import { describe, expect, test } from "bun:test";
import { fakeApp, type FakeApp } from "../fakes/fake-app.ts";
import type { Script } from "../fakes/fake-engine.ts";
import { type Exposition, parseExposition } from "../helpers/exposition.ts";

// Wire JSON, read loosely: the assertions themselves check its shape.
type Json = Record<string, any>;

const user = (content: string) => [{ role: "user", content }];
const words = (...pieces: string[]): Script => ({ steps: pieces.map((text) => ({ text })) });
const endless = (): Script => ({ steps: Array.from({ length: 1000 }, () => ({ text: "t" })) });

async function scrape(f: FakeApp, headers: Record<string, string> = {}): Promise<Exposition> {
  const res = await f.request("/metrics", { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await res.text());
}

async function until(what: () => Promise<boolean> | boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await Bun.sleep(5);
  }
}

const FAMILIES: Record<string, string> = {
  lmx_requests_total: "counter",
  lmx_request_duration_seconds: "histogram",
  lmx_time_to_first_token_seconds: "histogram",
  lmx_prompt_tokens_total: "counter",
  lmx_prompt_cached_tokens_total: "counter",
  lmx_draft_tokens_total: "counter",
  lmx_draft_accepted_tokens_total: "counter",
  lmx_generated_tokens_total: "counter",
  lmx_peer_requests_total: "counter",
  lmx_peer_time_to_first_byte_seconds: "histogram",
  lmx_peer_request_duration_seconds: "histogram",
  lmx_peer_fallbacks_total: "counter",
  lmx_active_requests: "gauge",
  lmx_queued_requests: "gauge",
  lmx_model_loaded: "gauge",
  lmx_model_memory_bytes: "gauge",
  lmx_memory_budget_bytes: "gauge",
  lmx_downloads_active: "gauge",
  lmx_build_info: "gauge",
};

describe("/metrics", () => {
  test("every family is there with readable HELP and its TYPE, and nothing else (no process metrics)", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const m = await scrape(f);
    expect(Object.fromEntries([...m.families].map(([name, fam]) => [name, fam.type]))).toEqual(FAMILIES);
    for (const [name, fam] of m.families) expect(fam.help?.length, name).toBeGreaterThan(20);
    expect(m.value("lmx_build_info", { version: "test", engine_version: "fake" })).toBe(1);
    expect(m.value("lmx_memory_budget_bytes")).toBe(1e12);
    expect(m.value("lmx_downloads_active")).toBe(0);
  });

  test("requests of every API count under their api label, with tokens equal to the usage returned", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("Hello", " there", "!") }]);
    const generated: number[] = [];
    const prompt: number[] = [];
    const ok = async (path: string, body: unknown): Promise<Json> => {
      const res = await f.post(path, body);
      expect(res.status, path).toBe(200);
      return (await res.json()) as Json;
    };
    let r = await ok("/v1/chat/completions", { model: "m", messages: user("hi") });
    generated.push(r.usage.completion_tokens); prompt.push(r.usage.prompt_tokens);
    // Each of the n choices evaluates the prompt, where usage counts it once.
    r = await ok("/v1/chat/completions", { model: "m", messages: user("two words"), n: 2 });
    generated.push(r.usage.completion_tokens); prompt.push(2 * r.usage.prompt_tokens);
    r = await ok("/v1/completions", { model: "m", prompt: "once upon" });
    generated.push(r.usage.completion_tokens); prompt.push(r.usage.prompt_tokens);
    r = await ok("/v1/responses", { model: "m", input: "hi" });
    generated.push(r.usage.output_tokens); prompt.push(r.usage.input_tokens);
    r = await ok("/v1/messages", { model: "m", max_tokens: 50, messages: user("hi") });
    generated.push(r.usage.output_tokens); prompt.push(r.usage.input_tokens);
    r = await ok("/api/chat", { model: "m", messages: user("hi"), stream: false });
    generated.push(r.eval_count); prompt.push(r.prompt_eval_count);
    r = await ok("/api/generate", { model: "m", prompt: "hi", stream: false });
    generated.push(r.eval_count); prompt.push(r.prompt_eval_count);
    r = await ok("/v1/embeddings", { model: "m", input: ["a b", "c"] });
    prompt.push(r.usage.prompt_tokens);
    r = await ok("/api/embed", { model: "m", input: "a b c" });
    prompt.push(r.prompt_eval_count);
    // Streamed, with usage in the last chunk.
    const stream = await f.post("/v1/chat/completions", { model: "m", messages: user("hi"), stream: true, stream_options: { include_usage: true } });
    const lines = (await stream.text()).split("\n").filter((l) => l.startsWith("data: {"));
    const last = JSON.parse(lines.at(-1)!.slice(6)) as Json;
    generated.push(last.usage.completion_tokens); prompt.push(last.usage.prompt_tokens);

    const m = await scrape(f);
    const counts: Record<string, number> = {
      "openai.chat": 3, "openai.completions": 1, "openai.responses": 1, "anthropic.messages": 1,
      "ollama.chat": 1, "ollama.generate": 1, "openai.embeddings": 1, "ollama.embed": 1,
    };
    for (const [api, n] of Object.entries(counts)) {
      expect(m.value("lmx_requests_total", { model: "m", api, status: "ok" }), api).toBe(n);
      expect(m.value("lmx_request_duration_seconds_count", { model: "m", api }), api).toBe(n);
      expect(m.value("lmx_request_duration_seconds_bucket", { model: "m", api, le: "+Inf" }), api).toBe(n);
      // Embeddings produce no token, so no time to a first one.
      expect(m.value("lmx_time_to_first_token_seconds_count", { model: "m", api }), api).toBe(api.endsWith("embeddings") || api.endsWith("embed") ? undefined : n);
    }
    expect(m.samples.filter((s) => s.name === "lmx_requests_total").length).toBe(Object.keys(counts).length);
    expect(generated.every((n) => n > 0)).toBe(true);
    expect(m.value("lmx_generated_tokens_total", { model: "m" })).toBe(generated.reduce((a, b) => a + b, 0));
    expect(m.value("lmx_prompt_tokens_total", { model: "m" })).toBe(prompt.reduce((a, b) => a + b, 0));
    const sum = m.value("lmx_request_duration_seconds_sum", { model: "m", api: "openai.chat" })!;
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(10);
    expect(m.value("lmx_time_to_first_token_seconds_sum", { model: "m", api: "openai.chat" })!).toBeLessThanOrEqual(sum);
  });

  test("the time to the first token is measured to the first token, not to the end", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "a" }, { sleep: 300 }, { text: "b" }] }) }]);
    expect((await f.post("/v1/chat/completions", { model: "m", messages: user("hi") })).status).toBe(200);
    const m = await scrape(f);
    const labels = { model: "m", api: "openai.chat" };
    expect(m.value("lmx_time_to_first_token_seconds_sum", labels)!).toBeLessThan(0.25);
    expect(m.value("lmx_request_duration_seconds_sum", labels)!).toBeGreaterThanOrEqual(0.29);
    expect(m.value("lmx_time_to_first_token_seconds_bucket", { ...labels, le: "0.25" })).toBe(1);
    expect(m.value("lmx_request_duration_seconds_bucket", { ...labels, le: "0.25" })).toBe(0);
  });

  test("a failed request counts under its HTTP status; names nobody knows are one 'unknown' model, routes count for their model", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "a" }, { fail: "boom" }] }) }], { routes: { "gpt-4o": "m" } });
    expect((await f.post("/v1/chat/completions", { model: "nope-1", messages: user("hi") })).status).toBe(404);
    expect((await f.post("/v1/messages", { model: "nope-2", max_tokens: 5, messages: user("hi") })).status).toBe(404);
    expect((await f.post("/v1/chat/completions", { model: "gpt-4o", messages: user("hi") })).status).toBe(500);
    expect((await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false })).status).toBe(500);
    const m = await scrape(f);
    expect(m.value("lmx_requests_total", { model: "unknown", api: "openai.chat", status: "404" })).toBe(1);
    expect(m.value("lmx_requests_total", { model: "unknown", api: "anthropic.messages", status: "404" })).toBe(1);
    expect(m.value("lmx_requests_total", { model: "m", api: "openai.chat", status: "500" })).toBe(1);
    expect(m.value("lmx_requests_total", { model: "m", api: "ollama.chat", status: "500" })).toBe(1);
    expect(m.samples.some((s) => Object.values(s.labels).some((v) => v.startsWith("nope") || v === "gpt-4o"))).toBe(false);
  });

  test("a full queue counts as 503, a client that goes away as aborted", async () => {
    await using f = fakeApp([{ id: "m", stepMs: 5, script: endless }], { parallel: 1, queueLimit: 0 });
    const leave = new AbortController();
    const res = await f.post("/v1/chat/completions", { model: "m", messages: user("go"), stream: true }, { signal: leave.signal });
    const reader = res.body!.getReader();
    await reader.read();
    expect((await f.post("/v1/chat/completions", { model: "m", messages: user("hi") })).status).toBe(503);
    leave.abort();
    await reader.cancel().catch(() => undefined);
    await until(async () => (await scrape(f)).value("lmx_requests_total", { model: "m", api: "openai.chat", status: "aborted" }) === 1);
    expect((await scrape(f)).value("lmx_requests_total", { model: "m", api: "openai.chat", status: "503" })).toBe(1);
  });

  test("gauges: loaded and known models, their memory, running and queued requests", async () => {
    await using f = fakeApp([
      { id: "m", modelBytes: 1000, bytesPerContextToken: 2, stepMs: 5, script: endless },
      { id: "idle" },
    ], { parallel: 1, contextLength: 100 });
    let m = await scrape(f);
    expect(m.value("lmx_model_loaded", { model: "m", engine: "fake" })).toBe(0);
    expect(m.value("lmx_model_loaded", { model: "idle", engine: "fake" })).toBe(0);
    expect(m.value("lmx_model_memory_bytes", { model: "m" })).toBeUndefined();
    const leave = new AbortController();
    const first = f.post("/v1/chat/completions", { model: "m", messages: user("go"), stream: true }, { signal: leave.signal });
    const reader = (await first).body!.getReader();
    await reader.read();
    const second = f.post("/v1/chat/completions", { model: "m", messages: user("go"), stream: true }, { signal: leave.signal });
    await until(async () => (await f.scheduler.get("m")).queued === 1);
    m = await scrape(f);
    expect(m.value("lmx_model_loaded", { model: "m", engine: "fake" })).toBe(1);
    expect(m.value("lmx_model_loaded", { model: "idle", engine: "fake" })).toBe(0);
    expect(m.value("lmx_model_memory_bytes", { model: "m" })).toBe(1000 + 2 * 100);
    expect(m.value("lmx_active_requests", { model: "m" })).toBe(1);
    expect(m.value("lmx_queued_requests", { model: "m" })).toBe(1);
    expect(m.value("lmx_active_requests", { model: "idle" })).toBe(0);
    leave.abort();
    await reader.cancel().catch(() => undefined);
    await (await second).body?.cancel().catch(() => undefined);
    await until(async () => (await scrape(f)).value("lmx_active_requests", { model: "m" }) === 0);
    await f.scheduler.unload("m");
    m = await scrape(f);
    expect(m.value("lmx_model_loaded", { model: "m", engine: "fake" })).toBe(0);
    expect(m.value("lmx_queued_requests", { model: "m" })).toBe(0);
  });

  test("auth: open without keys; with keys it needs an admin key (an inference key is refused)", async () => {
    await using f = fakeApp([{ id: "m" }]);
    expect((await f.request("/metrics")).status).toBe(200);
    const { key, admin } = f.keys.create("inference");
    const none = await f.request("/metrics");
    expect(none.status).toBe(401);
    expect(((await none.json()) as Json).error.code).toBe("invalid_api_key");
    const inference = await f.request("/metrics", { headers: { authorization: `Bearer ${key}` } });
    expect(inference.status).toBe(403);
    expect(((await inference.json()) as Json).error.code).toBe("insufficient_scope");
    // The router answers a trailing slash too: the scope check must not be passed by one.
    expect((await f.request("/metrics/", { headers: { authorization: `Bearer ${key}` } })).status).toBe(403);
    expect((await f.post("/api/pull/", { model: "x" }, { headers: { authorization: `Bearer ${key}` } })).status).toBe(403);
    expect((await f.request("/metrics", { headers: { "x-api-key": key } })).status).toBe(403);
    await scrape(f, { authorization: `Bearer ${admin!.key}` });
    await scrape(f, { "x-api-key": admin!.key });
  });
});

describe("exposition parser", () => {
  test("refuses what a scraper would refuse", () => {
    expect(() => parseExposition("x 1\n")).toThrow("without a TYPE");
    expect(() => parseExposition("# TYPE x gauge\nx{a=\"1} 1\n")).toThrow();
    expect(() => parseExposition("# TYPE x gauge\nx one\n")).toThrow("bad sample value");
    expect(() => parseExposition("# TYPE x gauge\nx{1a=\"b\"} 1\n")).toThrow("bad label");
    const ok = parseExposition("# HELP x An x.\n# TYPE x histogram\nx_bucket{le=\"+Inf\",q=\"a\\\"b\"} 2\nx_sum 1.5e0\nx_count 2\n");
    expect(ok.value("x_bucket", { le: "+Inf", q: "a\"b" })).toBe(2);
    expect(ok.value("x_sum")).toBe(1.5);
  });
});
