import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { ensureFixtures } from "./fixtures/models.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

// The official OpenAI SDK, changed only in its base URL, against the real engine.

const fx = ensureFixtures();
let srv: TestServer;
let client: OpenAI;

beforeAll(async () => {
  srv = await startTestServer(["--model", fx.stories260K, "--model", fx.qwen2Tiny, "--model", fx.bertTiny, "--ctx", "2048", "--api-key", "test-key"]);
  client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "test-key", maxRetries: 0 });
});
afterAll(async () => {
  await srv[Symbol.asyncDispose]();
});

const weatherTool = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", enum: ["Paris", "Tokyo", "Lima"] }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
      required: ["city", "unit"],
    },
  },
};

describe("openai npm client", () => {
  test("models.list", async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(expect.arrayContaining(["stories260K", "qwen2-tiny"]));
  });

  test("streaming chat", async () => {
    const stream = await client.chat.completions.create({
      model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 24, stream: true, stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(finish === "stop" || finish === "length").toBe(true);
    expect(usage!.completion_tokens).toBeGreaterThan(0);
  });

  test("tools with tool_choice 'required' return tool_calls with finish_reason tool_calls", async () => {
    const res = await client.chat.completions.create({
      model: "qwen2-tiny", messages: [{ role: "user", content: "What is the weather in Paris?" }], tools: [weatherTool], tool_choice: "required", max_tokens: 100, seed: 2,
    });
    const choice = res.choices[0]!;
    expect(choice.finish_reason).toBe("tool_calls");
    const call = choice.message.tool_calls![0]!;
    expect(call.type).toBe("function");
    if (call.type !== "function") throw new Error("unreachable");
    expect(call.function.name).toBe("get_weather");
    const args = JSON.parse(call.function.arguments) as { city: string; unit: string };
    expect(["Paris", "Tokyo", "Lima"]).toContain(args.city);
    expect(["celsius", "fahrenheit"]).toContain(args.unit);

    // The tool result goes back in the history and the conversation continues.
    const next = await client.chat.completions.create({
      model: "qwen2-tiny",
      max_tokens: 8,
      tools: [weatherTool],
      messages: [
        { role: "user", content: "What is the weather in Paris?" },
        { role: "assistant", content: null, tool_calls: [call] },
        { role: "tool", tool_call_id: call.id, content: JSON.stringify({ temperature: 21 }) },
      ],
    });
    expect(next.choices[0]!.finish_reason).not.toBeNull();
  });

  test("tool_choice 'auto' renders the tools into the template and lets the model choose", async () => {
    const res = await client.chat.completions.create({
      model: "qwen2-tiny", messages: [{ role: "user", content: "Weather in Lima?" }], tools: [weatherTool], max_tokens: 16, seed: 1,
    });
    const choice = res.choices[0]!;
    // A random-weight model rarely decides to call; either outcome must be well-formed.
    if (choice.finish_reason === "tool_calls") expect(choice.message.tool_calls!.length).toBeGreaterThan(0);
    else expect(choice.message.tool_calls ?? []).toEqual([]);
    const plain = await client.chat.completions.create({ model: "qwen2-tiny", messages: [{ role: "user", content: "Weather in Lima?" }], max_tokens: 16, seed: 1 });
    // The tool definitions are part of the prompt.
    expect(res.usage!.prompt_tokens).toBeGreaterThan(plain.usage!.prompt_tokens + 20);
  });

  test("a named tool_choice calls that tool, streamed", async () => {
    const other = { type: "function" as const, function: { name: "get_time", parameters: { type: "object", properties: { tz: { type: "string", enum: ["UTC"] } }, required: ["tz"] } } };
    const stream = await client.chat.completions.create({
      model: "qwen2-tiny", messages: [{ role: "user", content: "time?" }], tools: [weatherTool, other],
      tool_choice: { type: "function", function: { name: "get_time" } }, max_tokens: 60, stream: true,
    });
    // As OpenAI streams a call: its first delta carries index, id, type and name; arguments follow in fragments.
    const calls: { id?: string; name?: string; arguments: string }[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const c of chunk.choices[0]?.delta.tool_calls ?? []) {
        if (c.id) calls[c.index] = { id: c.id, name: c.function?.name, arguments: c.function?.arguments ?? "" };
        else calls[c.index]!.arguments += c.function?.arguments ?? "";
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe("tool_calls");
    expect(calls).toHaveLength(1);
    expect(calls[0]!.name).toBe("get_time");
    expect(calls[0]!.id).toMatch(/^call_/);
    expect(JSON.parse(calls[0]!.arguments)).toEqual({ tz: "UTC" });
  });

  test("json_schema output parses and validates", async () => {
    const schema = {
      type: "object",
      properties: { name: { type: "string", enum: ["ann", "bob"] }, ok: { type: "boolean" }, tags: { type: "array", items: { type: "string", enum: ["x", "y"] }, maxItems: 3 } },
      required: ["name", "ok", "tags"],
    };
    const res = await client.chat.completions.create({
      model: "qwen2-tiny", messages: [{ role: "user", content: "Describe a person" }], max_tokens: 200, seed: 4,
      response_format: { type: "json_schema", json_schema: { name: "person", schema } },
    });
    const value = JSON.parse(res.choices[0]!.message.content!) as { name: string; ok: boolean; tags: string[] };
    expect(["ann", "bob"]).toContain(value.name);
    expect(typeof value.ok).toBe("boolean");
    expect(Array.isArray(value.tags)).toBe(true);
    for (const t of value.tags) expect(["x", "y"]).toContain(t);
  });

  test("json_object output is JSON", async () => {
    const res = await client.chat.completions.create({
      model: "stories260K", messages: [{ role: "user", content: "json" }], max_tokens: 120, seed: 9, response_format: { type: "json_object" },
    });
    if (res.choices[0]!.finish_reason === "stop") expect(() => JSON.parse(res.choices[0]!.message.content!)).not.toThrow();
    else expect(res.choices[0]!.message.content!.trimStart().startsWith("{")).toBe(true);
  });

  test("embeddings", async () => {
    const res = await client.embeddings.create({ model: "bert-tiny", input: ["hello", "world"] });
    expect(res.data.length).toBe(2);
    expect(res.data[0]!.embedding.length).toBe(64);
  });

  test("errors surface as OpenAI SDK errors", async () => {
    const notFound = await client.chat.completions.create({ model: "missing", messages: [{ role: "user", content: "x" }] }).catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(OpenAI.NotFoundError);
    const tooLong = await client.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time ".repeat(2000) }] }).catch((e: unknown) => e);
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tooLong as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("context_length_exceeded");
    const badKey = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "nope", maxRetries: 0 });
    expect(await badKey.models.list().catch((e: unknown) => e)).toBeInstanceOf(OpenAI.AuthenticationError);
  });
});
