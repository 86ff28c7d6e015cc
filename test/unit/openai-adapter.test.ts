// The OpenAI adapter (Chat Completions, Completions, Embeddings, Models) through the real Elysia
// app on the FakeEngine: routing, validation, translation to the core, shaping, error mapping.
import { describe, expect, test } from "bun:test";
import type { GenerationRequest } from "../../src/core/request.ts";
import { fakeApp, readSse } from "../fakes/fake-app.ts";
import type { Script } from "../fakes/fake-engine.ts";

// Wire JSON, read loosely: the assertions themselves check its shape.
type Json = Record<string, any>;

const user = (content: string) => [{ role: "user", content }];
const words = (...pieces: string[]): Script => ({ steps: pieces.map((text) => ({ text })) });
const weatherTool = { type: "function", function: { name: "weather", parameters: { type: "object", properties: { city: { type: "string" } } } } };

async function json(res: Response): Promise<Json> {
  return (await res.json()) as Json;
}

function expectClose(a: readonly number[], b: readonly number[], digits = 12): void {
  expect(a.length).toBe(b.length);
  a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, digits));
}

async function expectError(res: Response, status: number, fields: Json): Promise<Json> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = await json(res);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(body.error).toMatchObject(fields);
  return body.error;
}

describe("chat completions", () => {
  test("non-streamed: text, finish_reason, usage, timings", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("Hello", " there") }]);
    const res = await f.post("/v1/chat/completions", { model: "m", messages: user("hi") });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({
      object: "chat.completion", model: "m", system_fingerprint: "lmx",
      choices: [{ index: 0, message: { role: "assistant", content: "Hello there" }, logprobs: null, finish_reason: "stop" }],
      usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 },
      timings: { prompt_n: 4, predicted_n: 2 },
    });
    expect(body.id).toMatch(/^chatcmpl-/);
  });

  test("streamed: a role chunk, one chunk per piece, the finish chunk, usage when asked, [DONE]", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("a", "b", "c") }]);
    const res = await f.post("/v1/chat/completions", { model: "m", messages: user("hi"), stream: true, stream_options: { include_usage: true } });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const { events, done } = await readSse(res);
    expect(done).toBe(true);
    const chunks = events as Json[];
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([{ role: "assistant", content: "" }, { content: "a" }, { content: "b" }, { content: "c" }, {}, undefined]);
    expect(chunks[4]!.choices[0].finish_reason).toBe("stop");
    expect(chunks[5]).toMatchObject({ choices: [], usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 } });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  });

  test("max_tokens ends with finish_reason length", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("a", "b", "c") }]);
    const body = await json(await f.post("/v1/chat/completions", { model: "m", messages: user("hi"), max_tokens: 2 }));
    expect(body.choices[0]).toMatchObject({ message: { content: "ab" }, finish_reason: "length" });
  });

  test("reasoning goes to reasoning_content (streamed: delta.reasoning_content), never into content; usage counts it", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ reasoning: "let me" }, { reasoning: " think" }, { text: "answer" }] }) }]);
    const body = await json(await f.post("/v1/chat/completions", { model: "m", messages: user("hi") }));
    expect(body.choices[0].message).toEqual({ role: "assistant", content: "answer", reasoning_content: "let me think" });
    expect(body.usage).toMatchObject({ completion_tokens: 3, completion_tokens_details: { reasoning_tokens: 2 } });
    const chunks = (await readSse(await f.post("/v1/chat/completions", { model: "m", messages: user("hi"), stream: true, stream_options: { include_usage: true } }))).events as Json[];
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([
      { role: "assistant", content: "" }, { reasoning_content: "let me" }, { reasoning_content: " think" }, { content: "answer" }, {}, undefined,
    ]);
    expect(chunks.at(-1)!.usage.completion_tokens_details).toEqual({ reasoning_tokens: 2 });
  });

  test("reasoning_format: inline puts thoughts back between <think> tags, none drops them; the server default applies otherwise", async () => {
    const script = (): Script => ({ steps: [{ reasoning: "hmm" }, { text: "yes" }] });
    await using f = fakeApp([{ id: "m", script }], { reasoningFormat: "inline" });
    const inline = await json(await f.post("/v1/chat/completions", { model: "m", messages: user("hi") }));
    expect(inline.choices[0].message).toEqual({ role: "assistant", content: "<think>hmm</think>yes" });
    const none = await json(await f.post("/v1/chat/completions", { model: "m", messages: user("hi"), reasoning_format: "none" }));
    expect(none.choices[0].message).toEqual({ role: "assistant", content: "yes" });
    expect(none.usage.completion_tokens_details.reasoning_tokens).toBe(1);
    const separate = await json(await f.post("/v1/chat/completions", { model: "m", messages: user("hi"), reasoning_format: "separate" }));
    expect(separate.choices[0].message).toEqual({ role: "assistant", content: "yes", reasoning_content: "hmm" });
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("hi"), reasoning_format: "loud" }), 400, { param: "reasoning_format" });
  });

  test("tool calls: content null and tool_calls when not streamed; streamed, the first delta names the call and its arguments follow in fragments", async () => {
    const script = (): Script => ({ steps: [
      { toolCall: { name: "weather", arguments: '{"city":"Oslo"}', id: "call_x", pieces: 3 } },
      { toolCall: { name: "weather", arguments: '{"city":"Rome"}', id: "call_y" } },
    ] });
    await using f = fakeApp([{ id: "m", script }]);
    const req = { model: "m", messages: user("weather?"), tools: [weatherTool] };
    const body = await json(await f.post("/v1/chat/completions", req));
    expect(body.choices[0]).toMatchObject({
      finish_reason: "tool_calls",
      message: { role: "assistant", content: null, tool_calls: [
        { id: "call_x", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } },
        { id: "call_y", type: "function", function: { name: "weather", arguments: '{"city":"Rome"}' } },
      ] },
    });
    const chunks = (await readSse(await f.post("/v1/chat/completions", { ...req, stream: true }))).events as Json[];
    expect(chunks.map((c) => c.choices[0].delta)).toEqual([
      { role: "assistant", content: "" },
      { tool_calls: [{ index: 0, id: "call_x", type: "function", function: { name: "weather", arguments: "" } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{"cit' } }] },
      { tool_calls: [{ index: 0, function: { arguments: 'y":"O' } }] },
      { tool_calls: [{ index: 0, function: { arguments: 'slo"}' } }] },
      { tool_calls: [{ index: 1, id: "call_y", type: "function", function: { name: "weather", arguments: "" } }] },
      { tool_calls: [{ index: 1, function: { arguments: '{"city":"Rome"}' } }] },
      {},
    ]);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe("tool_calls");
  });

  test("the wire request becomes one core request: messages, tools, tool_choice, format, sampling, stop", async () => {
    const seen: GenerationRequest[] = [];
    await using f = fakeApp([{ id: "m", script: (r) => { seen.push(r); return words("ok"); } }]);
    await f.post("/v1/chat/completions", {
      model: "m",
      messages: [
        { role: "developer", content: [{ type: "text", text: "be brief" }] },
        { role: "user", content: "weather?" },
        { role: "assistant", content: null, reasoning_content: "need weather", tool_calls: [{ id: "c1", type: "function", function: { name: "weather", arguments: "{}" } }] },
        { role: "tool", tool_call_id: "c1", content: "sunny" },
      ],
      tools: [weatherTool], tool_choice: { type: "function", function: { name: "weather" } },
      parallel_tool_calls: false, reasoning_effort: "low", chat_template_kwargs: { enable_thinking: true },
      temperature: 0.2, top_p: 0.5, seed: 7, stop: ["\n", ""], max_completion_tokens: 9, max_tokens: 3,
    });
    expect(seen[0]).toEqual({
      kind: "chat",
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: "weather?" },
        { role: "assistant", content: "", toolCalls: [{ id: "c1", name: "weather", arguments: "{}" }], reasoning: "need weather" },
        { role: "tool", content: "sunny", toolCallId: "c1" },
      ],
      tools: [{ name: "weather", description: undefined, parameters: weatherTool.function.parameters }],
      toolChoice: { name: "weather" },
      responseFormat: undefined,
      maxTokens: 9, temperature: 0.2, topP: 0.5, topK: undefined, minP: undefined, seed: 7,
      presencePenalty: undefined, frequencyPenalty: undefined, repeatPenalty: undefined, ignoreEos: undefined, stop: ["\n"],
      parallelToolCalls: false, reasoningEffort: "low", templateKwargs: { enable_thinking: true },
    });
  });
});

describe("completions", () => {
  test("a list prompt runs each prompt in turn: one choice each, usage summed, 16 tokens by default", async () => {
    const seen: GenerationRequest[] = [];
    await using f = fakeApp([{ id: "m", script: (r) => { seen.push(r); return words(r.kind === "text" ? ` <${r.prompt}>` : "?"); } }]);
    const body = await json(await f.post("/v1/completions", { model: "m", prompt: ["one", "two words"] }));
    expect(body).toMatchObject({
      object: "text_completion",
      choices: [{ index: 0, text: " <one>", finish_reason: "stop", logprobs: null }, { index: 1, text: " <two words>", finish_reason: "stop" }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
    expect(body.id).toMatch(/^cmpl-/);
    expect(seen.map((r) => [r.kind, r.maxTokens])).toEqual([["text", 16], ["text", 16]]);
  });

  test("streamed: chunks carry their prompt's index, then one finish chunk per prompt and usage", async () => {
    await using f = fakeApp([{ id: "m", script: (r) => words(r.kind === "text" ? r.prompt.toUpperCase() : "?", "!") }]);
    const { events, done } = await readSse(await f.post("/v1/completions", { model: "m", prompt: ["a", "b"], stream: true, stream_options: { include_usage: true }, max_tokens: 1 }));
    expect(done).toBe(true);
    expect((events as Json[]).map((c) => c.choices.map((x: Json) => [x.index, x.text, x.finish_reason]))).toEqual([
      [[0, "A", null]], [[1, "B", null]], [[0, "", "length"]], [[1, "", "length"]], [],
    ]);
    expect((events as Json[]).at(-1)!.usage).toEqual({ prompt_tokens: 2, completion_tokens: 2, total_tokens: 4, prompt_tokens_details: { cached_tokens: 0 } });
  });
});

describe("embeddings and models", () => {
  test("embeddings as floats and as base64", async () => {
    await using f = fakeApp([{ id: "m" }]);
    // The fake engine pools "ab" to [2, 1, 1] and "c d e" to [5, 3, 1]; the core normalizes.
    const floats = await json(await f.post("/v1/embeddings", { model: "m", input: ["ab", "c d e"] }));
    expect(floats).toMatchObject({ object: "list", data: [{ object: "embedding", index: 0 }, { index: 1 }], usage: { prompt_tokens: 4, total_tokens: 4 } });
    expectClose(floats.data[0].embedding, [2, 1, 1].map((x) => x / Math.sqrt(6)));
    expectClose(floats.data[1].embedding, [5, 3, 1].map((x) => x / Math.sqrt(35)));
    const b64 = await json(await f.post("/v1/embeddings", { model: "m", input: "ab", encoding_format: "base64" }));
    const buf = Buffer.from(b64.data[0].embedding, "base64");
    expect(buf.length).toBe(12);
    expectClose([0, 1, 2].map((i) => buf.readFloatLE(i * 4)), [2, 1, 1].map((x) => x / Math.sqrt(6)), 6);
  });

  test("embeddings: token-id inputs, dimensions, and what is refused before the engine runs", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const one = await json(await f.post("/v1/embeddings", { model: "m", input: [3, 4] }));
    expect(one.data.length).toBe(1);
    expectClose(one.data[0].embedding, [7, 2, 1].map((x) => x / Math.sqrt(54)));
    const two = await json(await f.post("/v1/embeddings", { model: "m", input: [[3, 4], [0]], dimensions: 2 }));
    expectClose(two.data[0].embedding, [7 / Math.sqrt(53), 2 / Math.sqrt(53)]);
    expectClose(two.data[1].embedding, [0, 1]);
    await expectError(await f.post("/v1/embeddings", { model: "m", input: "ab", dimensions: 4 }), 400, { param: "dimensions" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: "" }), 400, { param: "input" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: ["a", ""] }), 400, { param: "input[1]" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: [] }), 400, { param: "input" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: [[1], []] }), 400, { param: "input[1]" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: [1, -2] }), 400, { param: "input[1]" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: [1, 2.5] }), 400, { param: "input[1]" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: [[1], ["a"]] }), 400, { param: "input" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: Array.from({ length: 2049 }, () => "a") }), 400, { param: "input" });
    await expectError(await f.post("/v1/embeddings", { model: "m", input: "a", dimensions: 0 }), 400, { param: "dimensions" });
  });

  test("models list and retrieve", async () => {
    await using f = fakeApp([{ id: "m" }, { id: "dir/n" }]);
    const list = await json(await f.request("/v1/models"));
    expect(list.data.map((m: Json) => m.id)).toEqual(["m", "dir/n"]);
    expect((await json(await f.request("/v1/models/dir/n"))).id).toBe("dir/n");
    await expectError(await f.request("/v1/models/zzz"), 404, { code: "model_not_found" });
  });
});

describe("error paths: status and OpenAI error shape", () => {
  test("validation: bad JSON, wrong types, duplicate tools, tool_choice without tools", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.request("/v1/chat/completions", { method: "POST", body: "{", headers: { "content-type": "application/json" } }), 400, { code: "invalid_json" });
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: "hi" }), 400, { type: "invalid_request_error", param: "messages" });
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("x"), tools: [weatherTool, weatherTool] }), 400, { param: "tools[1].function.name" });
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("x"), tool_choice: "required", stream: true }), 400, { param: "tool_choice" });
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("x"), tools: [weatherTool], response_format: { type: "json_object" } }), 400, { param: "response_format" });
    expect(f.engine.instances[0]?.requests ?? []).toEqual([]);
  });

  test("unknown model is 404 model_not_found, streamed or not", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.post("/v1/chat/completions", { model: "zzz", messages: user("x") }), 404, { code: "model_not_found", param: "model" });
    await expectError(await f.post("/v1/completions", { model: "zzz", prompt: "x", stream: true }), 404, { code: "model_not_found" });
  });

  test("context too long is 400 context_length_exceeded with the right param, streamed or not", async () => {
    await using f = fakeApp([{ id: "m" }], { contextLength: 64 });
    const long = Array.from({ length: 80 }, () => "w").join(" ");
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user(long) }), 400, { code: "context_length_exceeded", param: "messages" });
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user(long), stream: true }), 400, { code: "context_length_exceeded" });
    await expectError(await f.post("/v1/completions", { model: "m", prompt: long }), 400, { code: "context_length_exceeded", param: "prompt" });
  });

  test("a failing load is 500 model_load_failed; not enough memory is 503 insufficient_memory", async () => {
    await using f = fakeApp([{ id: "bad", loadError: "truncated file" }, { id: "big", modelBytes: 10_000 }], { memoryBudget: 5000 });
    const err = await expectError(await f.post("/v1/chat/completions", { model: "bad", messages: user("x") }), 500, { code: "model_load_failed", type: "server_error" });
    expect(err.message).toContain("truncated file");
    await expectError(await f.post("/v1/chat/completions", { model: "big", messages: user("x"), stream: true }), 503, { code: "insufficient_memory" });
  });

  test("a full queue is a fast 503 server_overloaded", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ sleep: 200 }, { text: "done" }] }) }], { parallel: 1, queueLimit: 1 });
    const running = f.post("/v1/chat/completions", { model: "m", messages: user("a") });
    const queued = f.post("/v1/chat/completions", { model: "m", messages: user("b") });
    await Bun.sleep(20);
    const started = performance.now();
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("c") }), 503, { code: "server_overloaded", type: "server_error" });
    expect(performance.now() - started).toBeLessThan(100);
    expect((await running).status).toBe(200);
    expect((await queued).status).toBe(200);
  });

  test("an engine failure: 500 when nothing was sent; after streamed output an error event, then [DONE]", async () => {
    await using f = fakeApp([{ id: "m", script: (r) => ({ steps: r.kind === "chat" && r.messages[0]!.content === "late" ? [{ text: "par" }, { fail: "out of memory" }] : [{ fail: "out of memory" }] }) }]);
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("early") }), 500, { code: "engine_error", message: "generation failed: out of memory" });
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("early"), stream: true }), 500, { code: "engine_error" });
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("late") }), 500, { code: "engine_error" });
    const res = await f.post("/v1/chat/completions", { model: "m", messages: user("late"), stream: true });
    expect(res.status).toBe(200);
    const { events, done } = await readSse(res);
    expect(done).toBe(true);
    expect(events.at(-2)).toMatchObject({ choices: [{ delta: { content: "par" } }] });
    expect(events.at(-1)).toEqual({ error: { message: "generation failed: out of memory", type: "server_error", param: null, code: "engine_error" } });
    expect((await f.scheduler.get("m")).running).toBe(0);
  });

  test("a crashed model keeps failing with a clear 500 until it is loaded again", async () => {
    let crash = true;
    await using f = fakeApp([{ id: "m", script: () => (crash ? { steps: [{ crash: "worker exited with signal 9" }] } : words("back")) }]);
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("x") }), 500, { code: "worker_crashed" });
    crash = false;
    await expectError(await f.post("/v1/chat/completions", { model: "m", messages: user("x") }), 500, { message: "generation failed: worker exited with signal 9" });
    await f.scheduler.unload("m");
    expect((await json(await f.post("/v1/chat/completions", { model: "m", messages: user("x") }))).choices[0].message.content).toBe("back");
  });
});
