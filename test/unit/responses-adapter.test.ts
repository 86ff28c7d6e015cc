// The OpenAI Responses adapter through the real Elysia app on the FakeEngine: input items to chat
// messages, every output item kind, the stream's events in order, tools (function, custom,
// namespace, hosted) and errors. The store and the HTTP contract: responses-store.test.ts.
import { describe, expect, test } from "bun:test";
import type { ChatGeneration } from "../../src/core/request.ts";
import { CustomInputStream } from "../../src/api/responses/custom-input.ts";
import { fakeApp } from "../fakes/fake-app.ts";
import type { Script, Step } from "../fakes/fake-engine.ts";
import { events, expectError, json, lastChat, type Json } from "../helpers/responses.ts";

const steps = (...s: Step[]): Script => ({ steps: s });
const weather = { type: "function", name: "get_weather", description: "Weather of a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } };
const applyPatch = { type: "custom", name: "apply_patch", description: "Apply a patch", format: { type: "grammar", syntax: "lark", definition: "start: /.+/" } };

describe("POST /v1/responses: output", () => {
  test("a string input answers one message item; usage, echoes and ids", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ text: "Hello" }, { text: " there" }) }]);
    const res = await f.post("/v1/responses", { model: "m", input: "hi", instructions: "Be brief.", metadata: { a: "1" }, temperature: 0.5, user: "u1" });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.id).toMatch(/^resp_[0-9a-f]{48}$/);
    expect(body).toMatchObject({
      object: "response", status: "completed", model: "m", error: null, incomplete_details: null,
      instructions: "Be brief.", metadata: { a: "1" }, temperature: 0.5, top_p: null, user: "u1",
      parallel_tool_calls: true, tool_choice: "auto", tools: [], store: true, truncation: "disabled",
      text: { format: { type: "text" } }, max_output_tokens: null, previous_response_id: null,
      usage: { input_tokens: 9, input_tokens_details: { cached_tokens: 0 }, output_tokens: 2, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 11 },
    });
    expect(typeof body.created_at).toBe("number");
    expect(body.output).toHaveLength(1);
    expect(body.output[0]).toMatchObject({ type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "Hello there", annotations: [], logprobs: [] }] });
    expect(body.output[0].id).toMatch(/^msg_/);
    expect(lastChat(f).messages).toEqual([{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }]);
  });

  test("reasoning, then a message: a reasoning item with reasoning_text, usage counts reasoning tokens", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ reasoning: "let me" }, { reasoning: " think" }, { text: "42" }) }]);
    const body = await json(await f.post("/v1/responses", { model: "m", input: "q" }));
    expect(body.output.map((o: Json) => o.type)).toEqual(["reasoning", "message"]);
    expect(body.output[0]).toMatchObject({ type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "let me think" }], status: "completed" });
    expect(body.output[0].id).toMatch(/^rs_/);
    expect(body.output[1].content[0].text).toBe("42");
    expect(body.usage.output_tokens_details.reasoning_tokens).toBe(2);
  });

  test("function calls: fc_ ids, call ids, arguments; two calls in order", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ reasoning: "call it" }, { toolCall: { name: "get_weather", arguments: '{"city":"Paris"}', id: "call_a" } }, { toolCall: { name: "get_weather", arguments: '{"city":"Rome"}', id: "call_b" } }) }]);
    const body = await json(await f.post("/v1/responses", { model: "m", input: "weather?", tools: [weather] }));
    expect(body.status).toBe("completed");
    expect(body.output.map((o: Json) => o.type)).toEqual(["reasoning", "function_call", "function_call"]);
    expect(body.output[1]).toMatchObject({ type: "function_call", call_id: "call_a", name: "get_weather", arguments: '{"city":"Paris"}', status: "completed" });
    expect(body.output[1].id).toMatch(/^fc_/);
    expect(body.output[2]).toMatchObject({ call_id: "call_b", arguments: '{"city":"Rome"}' });
    expect(body.tools).toEqual([weather]);
    expect(lastChat(f).tools).toEqual([{ name: "get_weather", description: "Weather of a city", parameters: weather.parameters }]);
  });

  test("max_output_tokens cuts: status incomplete, reason max_output_tokens, the item incomplete", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ text: "a" }, { text: "b" }, { text: "c" }) }]);
    const body = await json(await f.post("/v1/responses", { model: "m", input: "hi", max_output_tokens: 2 }));
    expect(body).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" }, max_output_tokens: 2 });
    expect(body.output[0]).toMatchObject({ status: "incomplete", content: [{ text: "ab" }] });
    expect(lastChat(f).maxTokens).toBe(2);
  });

  test("max_output_tokens beyond the context is no error: the context's end cuts it, incomplete", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps(...Array.from({ length: 40 }, () => ({ text: "x" }))) }], { contextLength: 20 });
    const body = await json(await f.post("/v1/responses", { model: "m", input: "hi", max_output_tokens: 100_000 }));
    expect(body).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" } });
    expect(body.usage.output_tokens).toBe(20 - body.usage.input_tokens);
  });

  test("text.format json_schema, json_object; reasoning.effort; sampling; parallel_tool_calls", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ text: '{"a":1}' }) }]);
    const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };
    const body = await json(await f.post("/v1/responses", { model: "m", input: "j", text: { format: { type: "json_schema", name: "thing", schema, strict: true } }, reasoning: { effort: "low", summary: "auto" }, top_p: 0.9, temperature: 0 }));
    expect(body.text).toEqual({ format: { type: "json_schema", name: "thing", schema, strict: true } });
    expect(body.reasoning).toEqual({ effort: "low", summary: "auto" });
    expect(lastChat(f)).toMatchObject({ responseFormat: { type: "json_schema", schema, name: "thing" }, reasoningEffort: "low", topP: 0.9, temperature: 0 });
    await f.post("/v1/responses", { model: "m", input: "j", text: { format: { type: "json_object" } }, reasoning: { effort: "xhigh" }, parallel_tool_calls: false });
    expect(lastChat(f)).toMatchObject({ responseFormat: { type: "json_object" }, reasoningEffort: "high", parallelToolCalls: false });
  });

  test("what cannot change the answer is accepted: Codex's request fields", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const res = await f.post("/v1/responses", {
      model: "m", input: [{ type: "message", role: "developer", content: [{ type: "input_text", text: "You are Codex." }] }, { type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] }],
      store: false, stream: false, include: ["reasoning.encrypted_content"], prompt_cache_key: "k", reasoning: { summary: "auto" }, parallel_tool_calls: true,
      tool_choice: "auto", service_tier: "auto", client_metadata: { x: "y" }, safety_identifier: "s", truncation: "auto", stream_options: { include_obfuscation: false }, text: { verbosity: "low" },
    });
    expect(res.status).toBe(200);
    expect(lastChat(f).messages).toEqual([{ role: "system", content: "You are Codex." }, { role: "user", content: "hi" }]);
  });
});

describe("input items", () => {
  test("a whole conversation: reasoning goes with the assistant turn after it, calls join it, outputs are tool messages", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const res = await f.post("/v1/responses", {
      model: "m", tools: [weather, applyPatch],
      input: [
        { role: "system", content: "sys" },
        { role: "user", content: "weather in Paris?" },
        { type: "reasoning", id: "rs_1", summary: [], content: [{ type: "reasoning_text", text: "I should call" }], encrypted_content: "opaque" },
        { type: "function_call", call_id: "c1", name: "get_weather", arguments: '{"city":"Paris"}' },
        { type: "function_call_output", call_id: "c1", output: "rainy" },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "It is rainy." }] },
        { role: "user", content: "patch it" },
        { type: "reasoning", summary: [{ type: "summary_text", text: "summary only" }] },
        { type: "custom_tool_call", call_id: "c2", name: "apply_patch", input: "*** Begin Patch" },
        { type: "custom_tool_call_output", call_id: "c2", output: [{ type: "input_text", text: "done" }] },
        { type: "web_search_call", id: "ws_1", status: "completed" },
      ],
    });
    expect(res.status).toBe(200);
    expect(lastChat(f).messages).toEqual([
      { role: "system", content: "sys" },
      { role: "user", content: "weather in Paris?" },
      { role: "assistant", content: "", reasoning: "I should call", toolCalls: [{ id: "c1", name: "get_weather", arguments: '{"city":"Paris"}' }] },
      { role: "tool", content: "rainy", toolCallId: "c1" },
      { role: "assistant", content: "It is rainy." },
      { role: "user", content: "patch it" },
      { role: "assistant", content: "", reasoning: "summary only", toolCalls: [{ id: "c2", name: "apply_patch", arguments: '{"input":"*** Begin Patch"}' }] },
      { role: "tool", content: "done", toolCallId: "c2" },
    ]);
  });

  test("images, files and audio are a clear 400 naming the part", async () => {
    await using f = fakeApp([{ id: "m" }]);
    for (const part of [{ type: "input_image", image_url: "https://x/y.png" }, { type: "input_file", file_id: "f" }, { type: "input_audio", input_audio: {} }]) {
      const err = await expectError(await f.post("/v1/responses", { model: "m", input: [{ role: "user", content: [{ type: "input_text", text: "see" }, part] }] }), 400, { param: "input[0].content[1].type", code: "unsupported_content" });
      expect(err.message).toContain(part.type);
    }
    await expectError(await f.post("/v1/responses", { model: "m", input: [{ role: "user", content: "x" }, { type: "function_call_output", call_id: "c", output: [{ type: "input_image", image_url: "u" }] }] }), 400, { param: "input[1].output[0].type" });
  });

  test("malformed items: 400 naming the field; unknown item types; item_reference; no input at all", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.post("/v1/responses", { model: "m", input: [{ type: "message", role: "user" }] }), 400, { param: "input[0].content" });
    await expectError(await f.post("/v1/responses", { model: "m", input: [{ type: "bogus" }] }), 400, { param: "input[0].type" });
    await expectError(await f.post("/v1/responses", { model: "m", input: [{ type: "function_call", call_id: "c", name: "f" }] }), 400, { param: "input[0].arguments" });
    await expectError(await f.post("/v1/responses", { model: "m", input: [{ type: "item_reference", id: "msg_1" }] }), 400, { param: "input[0].type", code: "unsupported_parameter" });
    await expectError(await f.post("/v1/responses", { model: "m", instructions: "only this" }), 400, { param: "input" });
    await expectError(await f.post("/v1/responses", { model: "m", input: 5 }), 400, { param: "input" });
  });
});

describe("tools", () => {
  test("a custom tool runs as a function of one string `input` and comes back as custom_tool_call with the text", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ toolCall: { name: "apply_patch", arguments: JSON.stringify({ input: "*** Begin Patch\n+x \"q\"\n*** End Patch" }), id: "call_p" } }) }]);
    const body = await json(await f.post("/v1/responses", { model: "m", input: "patch", tools: [applyPatch] }));
    expect(body.output).toHaveLength(1);
    expect(body.output[0]).toMatchObject({ type: "custom_tool_call", call_id: "call_p", name: "apply_patch", input: "*** Begin Patch\n+x \"q\"\n*** End Patch" });
    expect(body.output[0].id).toMatch(/^ctc_/);
    expect(lastChat(f).tools).toEqual([{ name: "apply_patch", description: "Apply a patch", parameters: { type: "object", properties: { input: { type: "string", description: "The tool's input as free text." } }, required: ["input"] } }]);
  });

  test("namespace tools are flattened to their names and come back with their namespace; a clash is namespace-qualified", async () => {
    const ns = (name: string, inner: string[]) => ({ type: "namespace", name, description: `${name} tools`, tools: inner.map((n) => ({ type: "function", name: n, parameters: { type: "object", properties: {} } })) });
    await using f = fakeApp([{ id: "m", script: (r) => steps({ toolCall: { name: (r as ChatGeneration).tools!.at(-1)!.name, arguments: "{}" } }) }]);
    const body = await json(await f.post("/v1/responses", { model: "m", input: "go", tools: [ns("collaboration", ["spawn_agent"])] }));
    expect(body.output[0]).toMatchObject({ type: "function_call", name: "spawn_agent", namespace: "collaboration" });
    expect(lastChat(f).tools!.map((t) => [t.name, t.description])).toEqual([["spawn_agent", "collaboration tools"]]);
    const clash = await json(await f.post("/v1/responses", { model: "m", input: "go", tools: [ns("a", ["read"]), ns("b", ["read"])] }));
    expect(lastChat(f).tools!.map((t) => t.name)).toEqual(["a.read", "b.read"]);
    expect(clash.output[0]).toMatchObject({ name: "read", namespace: "b" });
    // A call sent back with its namespace reaches the template under the name the model saw.
    await f.post("/v1/responses", { model: "m", tools: [ns("a", ["read"]), ns("b", ["read"])], input: [{ role: "user", content: "x" }, { type: "function_call", call_id: "c", name: "read", namespace: "b", arguments: "{}" }, { type: "function_call_output", call_id: "c", output: "ok" }] });
    expect((lastChat(f).messages[1] as { toolCalls: { name: string }[] }).toolCalls[0]!.name).toBe("b.read");
  });

  test("hosted tools are accepted and never offered; duplicate names are a 400", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const hosted = ["web_search", "web_search_preview", "file_search", "code_interpreter", "computer_use_preview", "image_generation", "local_shell", "mcp", "tool_search"].map((type) => ({ type }));
    const res = await f.post("/v1/responses", { model: "m", input: "hi", tools: [...hosted, weather] });
    expect(res.status).toBe(200);
    expect(lastChat(f).tools!.map((t) => t.name)).toEqual(["get_weather"]);
    await f.post("/v1/responses", { model: "m", input: "hi", tools: hosted });
    expect(lastChat(f).tools).toBeUndefined();
    await expectError(await f.post("/v1/responses", { model: "m", input: "hi", tools: [weather, weather] }), 400, { message: "duplicate tool name 'get_weather'" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "hi", tools: [{ type: "function" }] }), 400, { param: "tools[0].name" });
  });

  test("tool_choice: strings, a named function or custom tool, allowed_tools narrowing; hosted choices refused", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const ask = (tool_choice: unknown) => f.post("/v1/responses", { model: "m", input: "hi", tools: [weather, applyPatch, { type: "web_search" }], tool_choice });
    for (const c of ["auto", "none", "required"] as const) {
      expect((await ask(c)).status).toBe(200);
      expect(lastChat(f).toolChoice).toBe(c);
    }
    expect((await ask({ type: "function", name: "get_weather" })).status).toBe(200);
    expect(lastChat(f).toolChoice).toEqual({ name: "get_weather" });
    expect((await ask({ type: "custom", name: "apply_patch" })).status).toBe(200);
    expect(lastChat(f).toolChoice).toEqual({ name: "apply_patch" });
    const narrowed = await ask({ type: "allowed_tools", mode: "required", tools: [{ type: "function", name: "get_weather" }, { type: "web_search" }] });
    expect(narrowed.status).toBe(200);
    expect((await json(narrowed)).tool_choice).toMatchObject({ type: "allowed_tools", mode: "required" });
    expect(lastChat(f)).toMatchObject({ toolChoice: "required" });
    expect(lastChat(f).tools!.map((t) => t.name)).toEqual(["get_weather"]);
    await expectError(await ask({ type: "function", name: "nope" }), 400, { param: "tool_choice.name" });
    await expectError(await ask({ type: "function", name: "apply_patch" }), 400, { param: "tool_choice.name" });
    await expectError(await ask({ type: "web_search_preview" }), 400, { param: "tool_choice.type", code: "unsupported_parameter" });
    await expectError(await ask({ type: "allowed_tools", mode: "sometimes", tools: [] }), 400, { param: "tool_choice.mode" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "hi", tool_choice: "required" }), 400, { param: "tool_choice" });
  });
});

describe("streaming", () => {
  test("events in OpenAI's order with growing sequence numbers: reasoning, message, completed", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ progress: true }, { reasoning: "hm" }, { reasoning: "m" }, { text: "Hi" }, { text: "!" }) }]);
    const ev = await events(await f.post("/v1/responses", { model: "m", input: "hi", stream: true }));
    expect(ev.map((e) => e.sequence_number)).toEqual(ev.map((_, i) => i));
    expect(ev.map((e) => e.type)).toEqual([
      "response.created", "response.in_progress",
      "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.completed",
    ]);
    expect(ev[0]!.response).toMatchObject({ status: "in_progress", output: [], usage: null });
    expect(ev[2]).toMatchObject({ output_index: 0, item: { type: "reasoning", status: "in_progress" } });
    expect(ev[4]).toMatchObject({ output_index: 0, content_index: 0, delta: "hm" });
    expect(ev[6]).toMatchObject({ text: "hmm" });
    expect(ev[10]).toMatchObject({ output_index: 1, content_index: 0, part: { type: "output_text", text: "" } });
    expect(ev[11]).toMatchObject({ item_id: ev[9]!.item.id, output_index: 1, delta: "Hi", logprobs: [] });
    expect(ev[13]).toMatchObject({ text: "Hi!" });
    const done = ev.at(-1)!.response;
    expect(done).toMatchObject({ status: "completed", usage: { output_tokens: 4, output_tokens_details: { reasoning_tokens: 2 } } });
    expect(done.output).toEqual([ev[8]!.item, ev[15]!.item]);
    expect(done.id).toBe(ev[0]!.response.id);
  });

  test("function call arguments stream as generated; custom tool input streams as decoded text", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps(
      { toolCall: { name: "get_weather", arguments: '{"city":"Paris"}', pieces: 3, id: "call_1" } },
      { toolCall: { name: "apply_patch", arguments: JSON.stringify({ input: "line1\nline \"2\" é😀" }), pieces: 7, id: "call_2" } },
    ) }]);
    const ev = await events(await f.post("/v1/responses", { model: "m", input: "x", tools: [weather, applyPatch], stream: true }));
    const types = ev.map((e) => e.type);
    expect(types.slice(0, 3)).toEqual(["response.created", "response.in_progress", "response.output_item.added"]);
    const fnDeltas = ev.filter((e) => e.type === "response.function_call_arguments.delta");
    expect(fnDeltas.length).toBe(3);
    expect(fnDeltas.map((e) => e.delta).join("")).toBe('{"city":"Paris"}');
    expect(ev.find((e) => e.type === "response.function_call_arguments.done")).toMatchObject({ name: "get_weather", arguments: '{"city":"Paris"}', output_index: 0 });
    const inputDeltas = ev.filter((e) => e.type === "response.custom_tool_call_input.delta");
    expect(inputDeltas.length).toBeGreaterThan(2);
    expect(inputDeltas.map((e) => e.delta).join("")).toBe("line1\nline \"2\" é😀");
    expect(ev.find((e) => e.type === "response.custom_tool_call_input.done")).toMatchObject({ input: "line1\nline \"2\" é😀", output_index: 1 });
    expect(types.filter((t) => t === "response.output_item.done")).toHaveLength(2);
    expect(ev.at(-1)!.response.output.map((o: Json) => o.type)).toEqual(["function_call", "custom_tool_call"]);
  });

  test("cut by max_output_tokens: response.incomplete, the open item done as incomplete", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ text: "a" }, { text: "b" }, { text: "c" }) }]);
    const ev = await events(await f.post("/v1/responses", { model: "m", input: "x", stream: true, max_output_tokens: 1 }));
    expect(ev.at(-1)).toMatchObject({ type: "response.incomplete", response: { status: "incomplete", incomplete_details: { reason: "max_output_tokens" } } });
    expect(ev.find((e) => e.type === "response.output_item.done")!.item).toMatchObject({ status: "incomplete" });
  });

  test("a failure before output is a plain HTTP error; after output, response.failed ends the stream", async () => {
    await using f = fakeApp([{ id: "m", script: () => steps({ text: "partial" }, { fail: "boom" }) }]);
    await expectError(await f.post("/v1/responses", { model: "nope", input: "x", stream: true }), 404, { type: "invalid_request_error" });
    const ev = await events(await f.post("/v1/responses", { model: "m", input: "x", stream: true }));
    const last = ev.at(-1)!;
    expect(last.type).toBe("response.failed");
    expect(last.response).toMatchObject({ status: "failed", error: { message: expect.stringContaining("boom") } });
    expect(typeof last.response.error.code).toBe("string");
    // A failed response is not stored.
    expect((await f.request(`/v1/responses/${last.response.id}`)).status).toBe(404);
  });
});

describe("errors", () => {
  test("validation errors name the field; refused fields say why; OpenAI's error shape", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.post("/v1/responses", { input: "x" }), 400, { param: "model" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", temperature: 3 }), 400, { param: "temperature" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", max_output_tokens: 0 }), 400, { param: "max_output_tokens" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])) }), 400, { param: "metadata" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", truncation: "sometimes" }), 400, { param: "truncation" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", background: true }), 400, { param: "background", code: "unsupported_parameter" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", prompt: { id: "pmpt_1" } }), 400, { param: "prompt" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", text: { format: { type: "json_schema", name: "x" } } }), 400, { param: "text.format.schema" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", text: { format: { type: "json_schema", schema: { type: "nonsense" } } } }), 400, { code: "invalid_schema" });
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", tools: [weather], text: { format: { type: "json_object" } }, tool_choice: "required" }), 400, {});
  });

  test("a prompt that does not fit is a 400 with truncation auto too (never truncated silently); an unknown model 404", async () => {
    await using f = fakeApp([{ id: "m" }], { contextLength: 16 });
    const long = "word ".repeat(40);
    for (const truncation of ["disabled", "auto"]) {
      await expectError(await f.post("/v1/responses", { model: "m", input: long, truncation }), 400, { code: "context_length_exceeded" });
    }
    await expectError(await f.post("/v1/responses", { model: "missing", input: "x" }), 404, {});
  });
});

describe("CustomInputStream", () => {
  test("decodes the input string across any split, escapes and surrogate pairs included; other shapes are not streamed", () => {
    const args = JSON.stringify({ input: "a\"b\\c\n\u00e9\u{1F600}\t/" });
    for (let size = 1; size <= args.length; size++) {
      const s = new CustomInputStream();
      let out = "";
      for (let at = 0; at < args.length; at += size) {
        const piece = s.feed(args.slice(at, at + size));
        expect(/[\uD800-\uDBFF]$/.test(piece)).toBe(false);
        out += piece;
      }
      expect(out).toBe("a\"b\\c\n\u00e9\u{1F600}\t/");
    }
    const other = new CustomInputStream();
    expect(other.feed('{"patch": "x"}')).toBe("");
    expect(other.streamed).toBe("");
  });
});
