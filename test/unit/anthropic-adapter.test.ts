// The Anthropic Messages adapter through the real Elysia app on the FakeEngine: validation, the
// mapping of content blocks to core turns, the message and its content blocks, the exact event
// sequence of a stream, and every error in Anthropic's shape with its status.
import { describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { anthropicErrorType } from "../../src/api/anthropic/errors.ts";
import { anthropicRoutes } from "../../src/api/anthropic/plugin.ts";
import type { ChatGeneration } from "../../src/core/request.ts";
import { fakeApp, type FakeApp } from "../fakes/fake-app.ts";
import type { Script } from "../fakes/fake-engine.ts";

// Wire JSON, read loosely: the assertions themselves check its shape.
type Json = Record<string, any>;

const user = (content: unknown) => [{ role: "user", content }];
const words = (...pieces: string[]): Script => ({ steps: pieces.map((text) => ({ text })) });
const weather = { name: "get_weather", description: "Weather in a city", input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } };
const body = (extra: Json = {}) => ({ model: "m", max_tokens: 100, messages: user("hi"), ...extra });

async function json(res: Response): Promise<Json> {
  return (await res.json()) as Json;
}

interface Sse {
  event: string;
  data: Json;
}

/** An SSE body as its named events; every event's data says its own type, as Anthropic's do. */
async function readEvents(res: Response): Promise<{ events: Sse[]; raw: string }> {
  const raw = await res.text();
  const events: Sse[] = [];
  for (const block of raw.split("\n\n")) {
    if (!block.trim()) continue;
    const event = /^event: (.*)$/m.exec(block)?.[1];
    const data = /^data: (.*)$/m.exec(block)?.[1];
    if (event === undefined || data === undefined) throw new Error(`not a named event: ${JSON.stringify(block)}`);
    events.push({ event, data: JSON.parse(data) as Json });
  }
  return { events, raw };
}

async function expectError(res: Response, status: number, type: string, message?: RegExp): Promise<string> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const b = await json(res);
  expect(Object.keys(b).sort()).toEqual(["error", "type"]);
  expect(b.type).toBe("error");
  expect(Object.keys(b.error).sort()).toEqual(["message", "type"]);
  expect(b.error.type).toBe(type);
  if (message) expect(b.error.message).toMatch(message);
  return b.error.message as string;
}

/** The chat request the engine received last. */
function received(f: FakeApp, model = "m"): ChatGeneration {
  const r = f.engine.model(model).requests.at(-1);
  if (r?.kind !== "chat") throw new Error("no chat request");
  return r;
}

const thinkThenCall: Script = { steps: [{ reasoning: "need" }, { reasoning: " weather" }, { toolCall: { name: "get_weather", arguments: '{"city":"Paris"}', id: "call_abc", pieces: 3 } }] };

describe("messages: the response", () => {
  test("text: id msg_…, type, role, the model as requested, one text block, end_turn, usage with cache fields 0", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("Hello", " there") }]);
    const res = await f.post("/v1/messages", body());
    expect(res.status).toBe(200);
    const b = await json(res);
    expect(b).toEqual({
      id: b.id, type: "message", role: "assistant", model: "m",
      content: [{ type: "text", text: "Hello there" }],
      stop_reason: "end_turn", stop_sequence: null,
      usage: { input_tokens: 4, output_tokens: 2, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
    expect(b.id).toMatch(/^msg_[\w-]{16}$/);
  });

  test("max_tokens ends with stop_reason max_tokens", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("a", "b", "c") }]);
    const b = await json(await f.post("/v1/messages", body({ max_tokens: 2 })));
    expect(b).toMatchObject({ content: [{ type: "text", text: "ab" }], stop_reason: "max_tokens", stop_sequence: null });
  });

  test("stop_sequences: the text before it, stop_reason stop_sequence naming the one that matched", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("one ", "two", " END", " three") }]);
    const b = await json(await f.post("/v1/messages", body({ stop_sequences: ["NEVER", " END"] })));
    expect(b).toMatchObject({ content: [{ type: "text", text: "one two" }], stop_reason: "stop_sequence", stop_sequence: " END" });
    expect(received(f).stop).toEqual(["NEVER", " END"]);
    // A reply that ends by itself names none.
    const plain = await json(await f.post("/v1/messages", body({ stop_sequences: ["NEVER"] })));
    expect(plain).toMatchObject({ stop_reason: "end_turn", stop_sequence: null });
  });

  test("thinking, then a tool call: a thinking block with its signature, a tool_use block with a toolu_ id and parsed input, stop_reason tool_use", async () => {
    await using f = fakeApp([{ id: "m", script: () => thinkThenCall }]);
    const b = await json(await f.post("/v1/messages", body({ tools: [weather] })));
    expect(b.content).toEqual([
      { type: "thinking", thinking: "need weather", signature: "lmx-unsigned" },
      { type: "tool_use", id: "toolu_abc", name: "get_weather", input: { city: "Paris" } },
    ]);
    expect(b.stop_reason).toBe("tool_use");
  });

  test("text before a call keeps its block; arguments that are not an object (cut short) give an empty input", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "Let me check." }, { toolCall: { name: "get_weather", arguments: '{"city":"Par', id: "call_x" } }] }) }]);
    const b = await json(await f.post("/v1/messages", body({ tools: [weather] })));
    expect(b.content).toEqual([{ type: "text", text: "Let me check." }, { type: "tool_use", id: "toolu_x", name: "get_weather", input: {} }]);
  });

  test("an empty reply is one empty text block", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [] }) }]);
    const b = await json(await f.post("/v1/messages", body()));
    expect(b.content).toEqual([{ type: "text", text: "" }]);
  });

  test("thinking is a block of its own whatever the server's --reasoning-format", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ reasoning: "hmm" }, { text: "yes" }] }) }], { reasoningFormat: "inline" });
    const b = await json(await f.post("/v1/messages", body()));
    expect(b.content).toEqual([{ type: "thinking", thinking: "hmm", signature: "lmx-unsigned" }, { type: "text", text: "yes" }]);
  });
});

describe("messages: streaming", () => {
  const stream = (f: FakeApp, extra: Json = {}) => f.post("/v1/messages", body({ stream: true, ...extra }));

  test("thinking then text: the exact event sequence, a signature_delta before the thinking block stops, no [DONE]", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ reasoning: "let me" }, { reasoning: " think" }, { text: "Hi" }, { text: "!" }] }) }]);
    const res = await stream(f);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const { events, raw } = await readEvents(res);
    expect(raw).not.toContain("[DONE]");
    for (const e of events) expect(e.data.type).toBe(e.event);
    expect(events.map((e) => e.event)).toEqual([
      "message_start",
      "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
      "message_delta", "message_stop",
    ]);
    const start = events[0]!.data.message;
    expect(start).toEqual({ id: start.id, type: "message", role: "assistant", model: "m", content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 } });
    expect(start.id).toMatch(/^msg_/);
    expect(events.slice(1, 6).map((e) => e.data)).toEqual([
      { type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "", signature: "" } },
      { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "let me" } },
      { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: " think" } },
      { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "lmx-unsigned" } },
      { type: "content_block_stop", index: 0 },
    ]);
    expect(events.slice(6, 10).map((e) => e.data)).toEqual([
      { type: "content_block_start", index: 1, content_block: { type: "text", text: "" } },
      { type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "Hi" } },
      { type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "!" } },
      { type: "content_block_stop", index: 1 },
    ]);
    expect(events[10]!.data).toEqual({
      type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { input_tokens: 4, output_tokens: 4, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
    expect(events[11]!.data).toEqual({ type: "message_stop" });
  });

  test("a tool call: content_block_start with the id, name and empty input, input_json_delta fragments as the core streams them, stop_reason tool_use", async () => {
    await using f = fakeApp([{ id: "m", script: () => thinkThenCall }]);
    const { events } = await readEvents(await stream(f, { tools: [weather] }));
    const tool = events.filter((e) => e.data.index === 1);
    expect(tool[0]!.data).toEqual({ type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "toolu_abc", name: "get_weather", input: {} } });
    const fragments = tool.filter((e) => e.data.delta?.type === "input_json_delta").map((e) => e.data.delta.partial_json as string);
    expect(fragments.length).toBe(3);
    expect(JSON.parse(fragments.join(""))).toEqual({ city: "Paris" });
    expect(tool.at(-1)!.data).toEqual({ type: "content_block_stop", index: 1 });
    expect(events.at(-2)!.data.delta).toEqual({ stop_reason: "tool_use", stop_sequence: null });
  });

  test("stop sequence and max_tokens in message_delta", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("a", "b", "STOP", "c") }]);
    let { events } = await readEvents(await stream(f, { stop_sequences: ["STOP"] }));
    expect(events.at(-2)!.data.delta).toEqual({ stop_reason: "stop_sequence", stop_sequence: "STOP" });
    expect(events.filter((e) => e.data.delta?.type === "text_delta").map((e) => e.data.delta.text).join("")).toBe("ab");
    ({ events } = await readEvents(await stream(f, { max_tokens: 1 })));
    expect(events.at(-2)!.data).toMatchObject({ delta: { stop_reason: "max_tokens" }, usage: { output_tokens: 1 } });
  });

  test("prompt batches evaluated are ping events after message_start", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ progress: true }, { progress: true }, { text: "ok" }] }) }]);
    const { events } = await readEvents(await stream(f));
    expect(events.slice(0, 4).map((e) => e.event)).toEqual(["message_start", "ping", "ping", "content_block_start"]);
    expect(events[1]!.data).toEqual({ type: "ping" });
  });

  test("a quiet generation gets pings: the first starts the stream", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ sleep: 250 }, { text: "late" }] }) }]);
    const app = new Elysia().use(anthropicRoutes(f.core, { keepAliveMs: 40 }));
    const res = await app.handle(new Request("http://127.0.0.1/v1/messages", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body({ stream: true })) }));
    const { events } = await readEvents(res);
    const first = events.findIndex((e) => e.event === "content_block_start");
    expect(events[0]!.event).toBe("message_start");
    expect(first).toBeGreaterThan(2);
    expect(events.slice(1, first).every((e) => e.event === "ping")).toBe(true);
  });

  test("a failure after output began is an error event in Anthropic's shape, and the stream ends", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "partial" }, { fail: "boom" }] }) }]);
    const { events } = await readEvents(await stream(f));
    expect(events.map((e) => e.event)).toEqual(["message_start", "content_block_start", "content_block_delta", "error"]);
    expect(events.at(-1)!.data).toEqual({ type: "error", error: { type: "api_error", message: expect.stringContaining("boom") } });
  });

  test("a failure before any output is a plain JSON error with its status", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await stream(f, { model: "nope" }), 404, "not_found_error", /nope/);
  });
});

describe("messages: the request", () => {
  test("system as a string, and as text blocks with cache_control; leading system messages join it", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await f.post("/v1/messages", body({ system: "Be brief." }));
    expect(received(f).messages).toEqual([{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }]);
    await f.post("/v1/messages", body({
      system: [{ type: "text", text: "You are Claude Code.", cache_control: { type: "ephemeral" } }, { type: "text", text: "Be brief." }],
      messages: [{ role: "system", content: "Extra rules." }, { role: "user", content: "hi" }, { role: "assistant", content: "yo" }, { role: "system", content: [{ type: "text", text: "Later note." }] }, { role: "user", content: "again" }],
    }));
    expect(received(f).messages).toEqual([
      { role: "system", content: "You are Claude Code.\n\nBe brief.\n\nExtra rules." },
      { role: "user", content: "hi" },
      { role: "assistant", content: "yo" },
      { role: "system", content: "Later note." },
      { role: "user", content: "again" },
    ]);
  });

  test("a tool round trip: thinking and tool_use become the assistant's reasoning and calls, tool_result blocks tool turns (is_error said in the text)", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const res = await f.post("/v1/messages", body({
      tools: [weather],
      messages: [
        { role: "user", content: [{ type: "text", text: "Weather in Paris", cache_control: { type: "ephemeral" } }, { type: "text", text: "and Rome?" }] },
        { role: "assistant", content: [
          { type: "thinking", thinking: "Two cities.", signature: "anything" },
          { type: "redacted_thinking", data: "opaque" },
          { type: "text", text: "Checking." },
          { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
          { type: "tool_use", id: "toolu_2", name: "get_weather", input: { city: "Rome" } },
        ] },
        { role: "user", content: [
          { type: "tool_result", tool_use_id: "toolu_1", content: "rainy" },
          { type: "tool_result", tool_use_id: "toolu_2", content: [{ type: "text", text: "no such city" }], is_error: true },
          { type: "text", text: "Summarise." },
        ] },
      ],
    }));
    expect(res.status).toBe(200);
    const r = received(f);
    expect(r.messages).toEqual([
      { role: "user", content: "Weather in Paris\n\nand Rome?" },
      { role: "assistant", content: "Checking.", reasoning: "Two cities.", toolCalls: [
        { id: "toolu_1", name: "get_weather", arguments: '{"city":"Paris"}' },
        { id: "toolu_2", name: "get_weather", arguments: '{"city":"Rome"}' },
      ] },
      { role: "tool", content: "rainy", toolCallId: "toolu_1" },
      { role: "tool", content: "Error: no such city", toolCallId: "toolu_2" },
      { role: "user", content: "Summarise." },
    ]);
    expect(r.tools).toEqual([{ name: "get_weather", description: "Weather in a city", parameters: weather.input_schema }]);
  });

  test("sampling fields and max_tokens reach the core; thinking comes back separate", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await f.post("/v1/messages", body({ max_tokens: 77, temperature: 0.5, top_p: 0.9, top_k: 40, stop_sequences: ["", "X"], metadata: { user_id: "u1" } }));
    expect(received(f)).toMatchObject({ maxTokens: 77, temperature: 0.5, topP: 0.9, topK: 40, stop: ["X"], reasoningFormat: "separate" });
  });

  test("tool_choice: auto, any → required, tool → named, none; disable_parallel_tool_use → one call at most", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const cases: [Json, unknown, boolean | undefined][] = [
      [{ type: "auto" }, "auto", undefined],
      [{ type: "any" }, "required", undefined],
      [{ type: "tool", name: "get_weather" }, { name: "get_weather" }, undefined],
      [{ type: "none" }, "none", undefined],
      [{ type: "auto", disable_parallel_tool_use: true }, "auto", false],
      [{ type: "any", disable_parallel_tool_use: false }, "required", undefined],
    ];
    for (const [choice, expected, parallel] of cases) {
      expect((await f.post("/v1/messages", body({ tools: [weather], tool_choice: choice }))).status).toBe(200);
      expect(received(f).toolChoice).toEqual(expected as ChatGeneration["toolChoice"]);
      expect(received(f).parallelToolCalls).toBe(parallel);
    }
  });

  test("tools Anthropic runs itself are accepted and left out of the prompt", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const res = await f.post("/v1/messages", body({ tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 5 }, { ...weather, type: "custom" }], tool_choice: { type: "auto" } }));
    expect(res.status).toBe(200);
    expect(received(f).tools?.map((t) => t.name)).toEqual(["get_weather"]);
    // Only server tools: no tools at all, and tool_choice auto has nothing to apply to.
    expect((await f.post("/v1/messages", body({ tools: [{ type: "web_search_20250305", name: "web_search" }], tool_choice: { type: "auto" } }))).status).toBe(200);
    expect(received(f).tools).toBeUndefined();
    expect(received(f).toolChoice).toBeUndefined();
  });

  test("thinking: disabled → reasoning effort none; enabled and adaptive → the model's default; output_config.effort → the effort", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const effort = async (extra: Json) => {
      expect((await f.post("/v1/messages", body(extra))).status).toBe(200);
      return received(f).reasoningEffort;
    };
    expect(await effort({ thinking: { type: "disabled" } })).toBe("none");
    expect(await effort({ thinking: { type: "enabled", budget_tokens: 2048 } })).toBeUndefined();
    expect(await effort({ thinking: { type: "adaptive" } })).toBeUndefined();
    expect(await effort({ thinking: { type: "adaptive" }, output_config: { effort: "low" } })).toBe("low");
    expect(await effort({ output_config: { effort: "max" } })).toBe("high");
    expect(await effort({ thinking: { type: "disabled" }, output_config: { effort: "high" } })).toBe("none");
  });

  test("output_config.format json_schema becomes the response format", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const schema = { type: "object", properties: { a: { type: "string" } } };
    expect((await f.post("/v1/messages", body({ output_config: { format: { type: "json_schema", schema } } }))).status).toBe(200);
    expect(received(f).responseFormat).toEqual({ type: "json_schema", schema });
  });

  test("what Claude Code sends is accepted: ?beta=true, anthropic headers, context_management, metadata.user_id, adaptive thinking, a system message inside messages", async () => {
    await using f = fakeApp([{ id: "m", declaredContext: 65536 }], { contextLength: 65536 });
    const res = await f.post("/v1/messages?beta=true", body({
      max_tokens: 32000,
      thinking: { type: "adaptive" },
      context_management: { edits: [{ type: "clear_thinking_20251015", keep: "all" }] },
      output_config: { effort: "medium" },
      metadata: { user_id: "user_abc_account__session_123" },
      system: [{ type: "text", text: "x-anthropic-billing-header: cc_version=2.1", cache_control: { type: "ephemeral" } }],
      messages: [{ role: "system", content: "You are Claude Code." }, { role: "user", content: [{ type: "text", text: "<system-reminder>…</system-reminder>" }, { type: "text", text: "hello", cache_control: { type: "ephemeral" } }] }],
      tools: [{ ...weather, cache_control: { type: "ephemeral" } }],
      stream: false,
    }), { headers: { "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14", "x-app": "cli", "anthropic-dangerous-direct-browser-access": "true" } });
    expect([res.status, res.status === 200 ? "" : await res.text()]).toEqual([200, ""]);
    expect(received(f).messages[0]).toEqual({ role: "system", content: "x-anthropic-billing-header: cc_version=2.1\n\nYou are Claude Code." });
  });
});

describe("messages: errors in Anthropic's shape", () => {
  test("image and document blocks: 400 invalid_request_error naming the block", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const image = { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } };
    await expectError(await f.post("/v1/messages", body({ messages: user([{ type: "text", text: "what is this?" }, image]) })), 400, "invalid_request_error", /messages\[0\]\.content\[1\].*'image'.*text only/);
    await expectError(await f.post("/v1/messages", body({ messages: user([{ type: "tool_result", tool_use_id: "t", content: [image] }]) })), 400, "invalid_request_error", /content\[0\]\.content\[0\].*'image'/);
    await expectError(await f.post("/v1/messages", body({ messages: user([{ type: "document", source: { type: "text", media_type: "text/plain", data: "x" } }]) })), 400, "invalid_request_error", /'document'/);
    expect(f.engine.instances).toEqual([]);
  });

  test("invalid bodies: 400 invalid_request_error", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const { max_tokens: _, ...noMax } = body();
    await expectError(await f.post("/v1/messages", noMax), 400, "invalid_request_error", /max_tokens/);
    await expectError(await f.post("/v1/messages", body({ messages: [] })), 400, "invalid_request_error", /messages/);
    await expectError(await f.post("/v1/messages", body({ temperature: 1.5 })), 400, "invalid_request_error", /temperature/);
    await expectError(await f.post("/v1/messages", body({ messages: user([{ type: "tool_use", id: "t", name: "x", input: {} }]) })), 400, "invalid_request_error", /'tool_use' block cannot be in a user message/);
    await expectError(await f.post("/v1/messages", body({ tools: [{ name: "bad name!", input_schema: {} }] })), 400, "invalid_request_error", /tools/);
    await expectError(await f.post("/v1/messages", body({ tools: [{ name: "x" }] })), 400, "invalid_request_error", /input_schema/);
    await expectError(await f.post("/v1/messages", body({ tools: [weather], tool_choice: { type: "tool", name: "other" } })), 400, "invalid_request_error", /other/);
    await expectError(await f.request("/v1/messages", { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" }), 400, "invalid_request_error", /JSON/);
  });

  test("415 and 413 from before the route are invalid_request_error too", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.request("/v1/messages", { method: "POST", headers: { "content-type": "text/plain" }, body: "hi" }), 415, "invalid_request_error");
    await expectError(await f.request("/v1/messages", { method: "POST", headers: { "content-type": "application/json", "content-length": String(64 * 1024 * 1024) }, body: "{}" }), 413, "invalid_request_error");
  });

  test("unknown model 404 not_found_error; an unknown path under /v1/messages too", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.post("/v1/messages", body({ model: "claude-sonnet-4-5" })), 404, "not_found_error", /claude-sonnet-4-5/);
    await expectError(await f.post("/v1/messages/batches", body()), 404, "not_found_error");
  });

  test("keys: none or a wrong one 401 authentication_error (x-api-key or Bearer); a foreign Host 403 permission_error", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const created = await json(await f.post("/admin/v1/keys", { scope: "inference" }));
    await expectError(await f.post("/v1/messages", body()), 401, "authentication_error");
    await expectError(await f.post("/v1/messages", body(), { headers: { "x-api-key": "wrong" } }), 401, "authentication_error", /Invalid API key/);
    expect((await f.post("/v1/messages", body(), { headers: { "x-api-key": created.key } })).status).toBe(200);
    expect((await f.post("/v1/messages", body(), { headers: { authorization: `Bearer ${created.key}` } })).status).toBe(200);
    // Other APIs keep OpenAI's shape.
    expect((await json(await f.post("/v1/chat/completions", { model: "m", messages: user("hi") }))).error.code).toBe("invalid_api_key");
    const res = await f.app.handle(new Request("http://127.0.0.1/v1/messages", { method: "POST", headers: { host: "evil.example", "content-type": "application/json", "x-api-key": created.key }, body: JSON.stringify(body()) }));
    await expectError(res, 403, "permission_error", /evil\.example/);
  });

  test("a full queue 503 overloaded_error", async () => {
    await using f = fakeApp([{ id: "slow", script: () => ({ steps: [{ sleep: 200 }, { text: "done" }] }) }], { parallel: 1, queueLimit: 0 });
    const first = f.post("/v1/messages", body({ model: "slow" }));
    await Bun.sleep(50);
    await expectError(await f.post("/v1/messages", body({ model: "slow" })), 503, "overloaded_error");
    expect((await first).status).toBe(200);
  });

  test("an engine failure 500 api_error; a stall 504 api_error", async () => {
    await using f = fakeApp([
      { id: "bad", script: () => ({ steps: [{ fail: "kaput" }] }) },
      { id: "stuck", script: () => ({ steps: [{ stall: true }] }) },
    ], { stallTimeoutMs: 100 });
    await expectError(await f.post("/v1/messages", body({ model: "bad" })), 500, "api_error", /kaput/);
    await expectError(await f.post("/v1/messages", body({ model: "stuck" })), 504, "api_error", /no progress/);
  });

  test("every status maps to Anthropic's error type", () => {
    const table: [number, string][] = [
      [400, "invalid_request_error"], [413, "invalid_request_error"], [415, "invalid_request_error"], [422, "invalid_request_error"],
      [401, "authentication_error"], [403, "permission_error"], [404, "not_found_error"], [429, "rate_limit_error"],
      [503, "overloaded_error"], [529, "overloaded_error"], [500, "api_error"], [504, "api_error"], [507, "api_error"],
    ];
    for (const [status, type] of table) expect([status, anthropicErrorType(status) as string]).toEqual([status, type]);
  });
});

describe("count_tokens", () => {
  test("the prompt as the model's template counts it, tools included; nothing is generated", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const res = await f.post("/v1/messages/count_tokens", { model: "m", system: "Be brief.", messages: user("how are you"), tools: [weather] });
    expect(res.status).toBe(200);
    const b = await json(res);
    // The fake's count: 3 per message plus its words, plus 1 per 16 bytes of tools.
    const tools = Math.ceil(JSON.stringify([{ name: "get_weather", description: "Weather in a city", parameters: weather.input_schema }]).length / 16);
    expect(b).toEqual({ input_tokens: 3 + 2 + 3 + 3 + tools });
    expect(f.engine.model("m").requests).toEqual([]);
  });

  test("errors: unknown model 404 not_found_error, no messages 400, images 400", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.post("/v1/messages/count_tokens", { model: "nope", messages: user("hi") }), 404, "not_found_error");
    await expectError(await f.post("/v1/messages/count_tokens", { model: "m", messages: [] }), 400, "invalid_request_error");
    await expectError(await f.post("/v1/messages/count_tokens", { model: "m", messages: user([{ type: "image", source: {} }]) }), 400, "invalid_request_error", /image/);
  });
});
