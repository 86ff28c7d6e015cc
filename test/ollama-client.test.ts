// The Ollama API (/api/*) through the official `ollama` npm client against a real LMX server on the
// real llama.cpp engine: the tiny stories260K model for plain chat and generate, a synthetic BERT
// for embeddings, the trained agent model for thinking and tool calls (exact at temperature 0, see
// test/fixtures/agent-model.ts), a pull from the local fake hub, and the --ollama-port listener.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ollama, type ChatRequest, type Message, type ProgressResponse } from "ollama";
import { ensureAgentModel } from "./fixtures/agent-model.ts";
import { ensureFixtures } from "./fixtures/models.ts";
import { demoRepos, startFakeHub, type FakeHub } from "./hub/fake-hub.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();
const agent = await ensureAgentModel();
const agentCase = agent.case;
const expected = agent.expected;
const cache = mkdtempSync(join(tmpdir(), "lmx-ollama-hf-"));

/** A port nothing listens on right now, for the second listener. */
function freePort(): number {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = probe.port!;
  probe.stop(true);
  return port;
}



/** tool_choice is LMX's extension to Ollama's chat: the client passes it through as it is. */
type LmxChat = ChatRequest & { tool_choice?: unknown; stream?: false };

let hub: FakeHub & AsyncDisposable;
let srv: TestServer;
let client: Ollama;
const ollamaPort = freePort();

beforeAll(async () => {
  hub = await startFakeHub({ repos: demoRepos() });
  srv = await startTestServer([
    "--model", `stories=${fx.stories260K}`, "--model", `bert=${fx.bertTiny}`, "--model", `agent=${agent.gguf}`,
    "--hub-url", hub.url, "--hub-cache", cache, "--ctx", "512", "--parallel", "1", "--ollama-port", String(ollamaPort),
  ]);
  client = new Ollama({ host: srv.url });
}, 600_000);

afterAll(async () => {
  await srv?.[Symbol.asyncDispose]();
  await hub?.[Symbol.asyncDispose]();
  rmSync(cache, { recursive: true, force: true });
});

describe("chat and generate on stories260K", () => {
  test("chat, not streamed: the message, done_reason and the figures in nanoseconds", async () => {
    const res = await client.chat({ model: "stories", messages: [{ role: "user", content: "Once upon a time" }], options: { temperature: 0, num_predict: 8 } });
    expect(res.model).toBe("stories");
    expect(res.message.role).toBe("assistant");
    expect(res.message.content.length).toBeGreaterThan(0);
    expect(res.done).toBe(true);
    expect(res.done_reason).toBe("length");
    expect(res.eval_count).toBe(8);
    expect(res.prompt_eval_count).toBeGreaterThan(0);
    expect(res.eval_duration).toBeGreaterThan(0);
    expect(res.total_duration).toBeGreaterThanOrEqual(res.eval_duration + res.prompt_eval_duration);
  }, 60_000);

  test("chat, streamed: pieces then one final chunk; the same text as not streamed (temperature 0)", async () => {
    const req = { model: "stories:latest", messages: [{ role: "user", content: "Once upon a time" }], options: { temperature: 0, num_predict: 8 } };
    const whole = await client.chat(req);
    const parts = [];
    for await (const part of await client.chat({ ...req, stream: true })) parts.push(part);
    expect(parts.length).toBeGreaterThan(2);
    expect(parts.slice(0, -1).every((p) => !p.done)).toBe(true);
    const last = parts.at(-1)!;
    expect(last).toMatchObject({ done: true, done_reason: "length", eval_count: 8, model: "stories:latest" });
    expect(parts.map((p) => p.message.content).join("")).toBe(whole.message.content);
  }, 60_000);

  test("generate: through the chat template, and raw; streamed too", async () => {
    const res = await client.generate({ model: "stories", prompt: "Once upon a time", options: { temperature: 0, num_predict: 6 } });
    expect(res).toMatchObject({ done: true, done_reason: "length", eval_count: 6 });
    expect(res.response!.length).toBeGreaterThan(0);
    const raw = await client.generate({ model: "stories", prompt: "Once upon a time", raw: true, options: { temperature: 0, num_predict: 6, seed: 1 } });
    let streamed = "";
    for await (const part of await client.generate({ model: "stories", prompt: "Once upon a time", raw: true, stream: true, options: { temperature: 0, num_predict: 6, seed: 1 } })) streamed += part.response;
    expect(streamed).toBe(raw.response!);
  }, 60_000);

  test("format json constrains the answer to JSON", async () => {
    const res = await client.chat({ model: "stories", messages: [{ role: "user", content: "Give me JSON" }], format: { type: "object", properties: { a: { type: "integer" } }, required: ["a"] }, options: { temperature: 0, num_predict: 40 } });
    expect(typeof (JSON.parse(res.message.content) as { a: unknown }).a).toBe("number");
  }, 60_000);
});

describe("embeddings on a synthetic BERT", () => {
  test("embed and the older embeddings", async () => {
    const res = await client.embed({ model: "bert", input: ["hello world", "goodbye"] });
    expect(res.embeddings).toHaveLength(2);
    expect(res.embeddings[0]!.length).toBeGreaterThan(8);
    expect(Math.hypot(...res.embeddings[0]!)).toBeCloseTo(1, 5);
    expect(res.prompt_eval_count).toBeGreaterThan(0);
    const old = await client.embeddings({ model: "bert", prompt: "hello world" });
    expect(old.embedding).toHaveLength(res.embeddings[0]!.length);
    old.embedding.forEach((x, i) => expect(x).toBeCloseTo(res.embeddings[0]![i]!, 5));
  }, 60_000);
});

describe("models", () => {
  test("list, ps, show, version", async () => {
    const { models } = await client.list();
    const stories = models.find((m) => m.name === "stories")!;
    expect(stories).toMatchObject({ model: "stories", details: { format: "gguf", family: "llama", families: ["llama"] } });
    expect(stories.size).toBeGreaterThan(0);
    expect(stories.digest).toMatch(/^[0-9a-f]{64}$/);
    await client.generate({ model: "stories", prompt: "Hi", options: { num_predict: 1 }, keep_alive: "10m" });
    const ps = (await client.ps()).models.find((m) => m.name === "stories")!;
    expect(ps).toMatchObject({ size_vram: 0 });
    expect((ps as unknown as { context_length: number }).context_length).toBe(512);
    const expires = Date.parse(ps.expires_at as unknown as string) - Date.now();
    expect(expires).toBeGreaterThan(9 * 60_000);
    expect(expires).toBeLessThanOrEqual(10 * 60_000);
    const show = await client.show({ model: "agent" });
    // The client types model_info as a Map; on the wire (and once parsed) it is an object.
    const info = show.model_info as unknown as Record<string, unknown>;
    expect(info["general.architecture"]).toBe("qwen3");
    expect(info["qwen3.context_length"]).toBeGreaterThan(0);
    expect(show.template).toBe(agent.chatTemplate);
    expect(show.capabilities).toEqual(["completion", "tools", "thinking"]);
    expect((await client.version()).version).toMatch(/.+/);
  }, 60_000);

  test("errors come back as the client's ResponseError with Ollama's status and message", async () => {
    const err = await client.chat({ model: "llama3:8b", messages: [{ role: "user", content: "hi" }] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "ResponseError", status_code: 404, error: 'model "llama3:8b" not found, try pulling it first' });
    const bad = await client.generate({ model: "stories", prompt: "hi", template: "{{ .Prompt }}" }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ name: "ResponseError", status_code: 400 });
    expect((bad as Error).message).toMatch(/^template: /);
    const streamed = await client.chat({ model: "nope", messages: [{ role: "user", content: "hi" }], stream: true }).catch((e: unknown) => e);
    expect(streamed).toMatchObject({ name: "ResponseError", status_code: 404 });
  }, 60_000);
});

describe("thinking and tool calls on the agent model", () => {
  const weatherCase = () => agentCase("tool_call");

  test("a thought in message.thinking, the call in message.tool_calls with object arguments", async () => {
    const c = weatherCase();
    const res = await client.chat({ model: "agent", messages: c.messages as Message[], tools: c.tools, think: true, options: { temperature: 0, num_predict: 120 } });
    expect(res.message.thinking?.trim()).toBe(expected("tool_call").thought);
    expect(res.message.tool_calls).toHaveLength(1);
    expect(res.message.tool_calls![0]!.function).toMatchObject({ name: "get_weather", arguments: { city: "Paris" } });
    expect(res.done_reason).toBe("stop");
  }, 60_000);

  test("streamed: thinking pieces first, then the whole call in one chunk", async () => {
    const c = weatherCase();
    const parts = [];
    for await (const p of await client.chat({ model: "agent", messages: c.messages as Message[], tools: c.tools, think: true, stream: true, options: { temperature: 0, num_predict: 120 } })) parts.push(p);
    const thinking = parts.map((p) => p.message.thinking ?? "").join("");
    expect(thinking.trim()).toBe(expected("tool_call").thought);
    const withCalls = parts.filter((p) => p.message.tool_calls?.length);
    expect(withCalls).toHaveLength(1);
    expect(withCalls[0]!.message.tool_calls![0]!.function).toMatchObject({ name: "get_weather", arguments: { city: "Paris" } });
    expect(parts.indexOf(withCalls[0]!)).toBeGreaterThan(parts.findLastIndex((p) => p.message.thinking));
    expect(parts.at(-1)!.done).toBe(true);
  }, 60_000);

  test("tool_choice (LMX extension) forces a call where the model would answer; the result goes back by tool_name", async () => {
    const plain = agentCase("plain_answer");
    const forced = await client.chat({ model: "agent", messages: plain.messages as Message[], tools: plain.tools, tool_choice: { type: "function", function: { name: "get_weather" } }, options: { temperature: 0, num_predict: 60 } } as LmxChat);
    expect(forced.message.tool_calls).toHaveLength(1);
    const call = forced.message.tool_calls![0]!.function;
    expect(call.name).toBe("get_weather");
    expect(typeof call.arguments).toBe("object");
    const round = agentCase("tool_result");
    const messages = round.messages.map((m) => (m.role === "tool" ? { ...m, tool_name: "get_weather" } : m)) as Message[];
    const answer = await client.chat({ model: "agent", messages, tools: round.tools, options: { temperature: 0, num_predict: 120 } });
    expect(answer.message.content).toBe(expected("tool_result").rest);
    expect(answer.message.thinking?.trim()).toBe(expected("tool_result").thought);
  }, 60_000);

  test("think: false: no thinking, the answer at once", async () => {
    const c = agentCase("no_thinking");
    const res = await client.chat({ model: "agent", messages: c.messages as Message[], tools: c.tools, think: false, options: { temperature: 0, num_predict: 60 } });
    expect(res.message.thinking ?? "").toBe("");
    expect(res.message.content).toBe(expected("no_thinking").rest);
  }, 60_000);
});

describe("pull, copy, delete", () => {
  test("pull from the hub with progress, copy as an alias, delete the copy then the model", async () => {
    const progress: ProgressResponse[] = [];
    for await (const p of await client.pull({ model: "hf.co/ggml-org/tiny-llamas", stream: true })) progress.push(p);
    expect(progress[0]!.status).toBe("pulling manifest");
    const bytes = progress.filter((p) => p.total);
    expect(bytes.length).toBeGreaterThan(0);
    expect(bytes.at(-1)).toMatchObject({ digest: "stories260K.gguf", completed: bytes.at(-1)!.total });
    expect(progress.at(-1)!.status).toBe("success");
    expect((await client.list()).models.map((m) => m.name)).toContain("stories260K");

    expect(await client.copy({ source: "stories260K", destination: "my-stories" })).toEqual({ status: "success" });
    const res = await client.generate({ model: "my-stories:latest", prompt: "Hi", options: { num_predict: 2 } });
    expect(res.done).toBe(true);
    await client.delete({ model: "my-stories" });
    expect(await client.generate({ model: "my-stories", prompt: "Hi" }).catch((e: unknown) => e)).toMatchObject({ status_code: 404 });
    await client.delete({ model: "stories260K" });
    expect((await client.list()).models.map((m) => m.name)).not.toContain("stories260K");

    expect((await client.pull({ model: "ggml-org/tiny-llamas", stream: false })).status).toBe("success");
    const missing = await client.pull({ model: "hf.co/nobody/nothing", stream: false }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ name: "ResponseError", status_code: 500 });
  }, 120_000);
});

describe("--ollama-port", () => {
  test("the second listener serves the same API to an unmodified client", async () => {
    expect(srv.server.ollamaUrl).toBe(`http://127.0.0.1:${ollamaPort}`);
    const root = await fetch(`http://127.0.0.1:${ollamaPort}/`);
    expect(await root.text()).toBe("Ollama is running");
    // A browser gets the dashboard on the main port only: this listener is Ollama's alone.
    const browser = { headers: { accept: "text/html,application/xhtml+xml,*/*;q=0.8" } };
    expect(await (await fetch(`http://127.0.0.1:${ollamaPort}/`, browser)).text()).toBe("Ollama is running");
    expect(await (await fetch(`${srv.url}/`, browser)).text()).toContain("/dashboard/app.js");
    const other = new Ollama({ host: `http://127.0.0.1:${ollamaPort}` });
    expect((await other.list()).models.map((m) => m.name)).toContain("stories");
    const res = await other.chat({ model: "stories", messages: [{ role: "user", content: "Hi" }], options: { num_predict: 3 } });
    expect(res.eval_count).toBe(3);
    const rebinding = await fetch(`http://127.0.0.1:${ollamaPort}/api/tags`, { headers: { host: "evil.example" } });
    expect(rebinding.status).toBe(403);
  }, 60_000);
});
