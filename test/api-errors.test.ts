import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fixtures } from "./fixtures/models.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

// Every bad request gets a 4xx in OpenAI's error shape, and the server keeps serving.

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer(["--model", fixtures.stories260K, "--ctx", "256", "--parallel", "2"]);
});
afterAll(async () => {
  await srv[Symbol.asyncDispose]();
});

async function expectError(res: Response, status: number, match: { code?: string | null; param?: string | null; message?: RegExp }) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
  expect(typeof body.error.message).toBe("string");
  expect(typeof body.error.type).toBe("string");
  if (match.code !== undefined) expect(body.error.code).toBe(match.code);
  if (match.param !== undefined) expect(body.error.param).toBe(match.param);
  if (match.message) expect(body.error.message).toMatch(match.message);
  return body.error;
}

const chat = (body: unknown) => srv.request("/v1/chat/completions", { method: "POST", json: body });
const user = (content: string) => [{ role: "user", content }];

describe("request validation", () => {
  test("invalid JSON", async () => {
    const res = await srv.request("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
    await expectError(res, 400, { code: "invalid_json" });
  });

  test("wrong type names the field", async () => {
    await expectError(await chat({ model: "stories260K", messages: [{ role: "user", content: 42 }] }), 400, { param: "messages[0].content" });
    await expectError(await chat({ model: 7, messages: user("hi") }), 400, { param: "model" });
  });

  test("missing and empty messages", async () => {
    await expectError(await chat({ model: "stories260K" }), 400, { param: "messages" });
    await expectError(await chat({ model: "stories260K", messages: [] }), 400, { param: "messages" });
  });

  test("negative, fractional and huge numbers", async () => {
    await expectError(await chat({ model: "stories260K", messages: user("hi"), max_tokens: -5 }), 400, { param: "max_tokens" });
    await expectError(await chat({ model: "stories260K", messages: user("hi"), max_tokens: 1.5 }), 400, { param: "max_tokens" });
    await expectError(await chat({ model: "stories260K", messages: user("hi"), max_tokens: 1e30 }), 400, { param: "max_tokens" });
    await expectError(await chat({ model: "stories260K", messages: user("hi"), temperature: 9 }), 400, { param: "temperature" });
    await expectError(await chat({ model: "stories260K", messages: user("hi"), top_p: -1 }), 400, { param: "top_p" });
  });

  test("unknown role, image parts, n over the maximum", async () => {
    await expectError(await chat({ model: "stories260K", messages: [{ role: "wizard", content: "x" }] }), 400, { param: "messages[0].role" });
    await expectError(await chat({
      model: "stories260K",
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:," } }] }],
    }), 400, { param: "messages[0].content[0].type" });
    await expectError(await chat({ model: "stories260K", messages: user("hi"), n: 9 }), 400, { param: "n" });
  });

  test("tool messages must answer an issued call", async () => {
    await expectError(await chat({ model: "stories260K", messages: [...user("hi"), { role: "tool", tool_call_id: "nope", content: "1" }] }), 400,
      { param: "messages[1].tool_call_id" });
  });

  test("tool_choice naming a missing tool", async () => {
    const tools = [{ type: "function", function: { name: "a", parameters: { type: "object", properties: {} } } }];
    await expectError(await chat({ model: "stories260K", messages: user("hi"), tools, tool_choice: { type: "function", function: { name: "b" } } }), 400,
      { param: "tool_choice.function.name" });
  });

  test("unknown model is 404 model_not_found", async () => {
    await expectError(await chat({ model: "no-such-model", messages: user("hi") }), 404, { code: "model_not_found", param: "model" });
    await expectError(await srv.request("/v1/models/no-such-model"), 404, { code: "model_not_found" });
  });

  test("unknown route is a JSON 404", async () => {
    await expectError(await srv.request("/v1/nothing-here"), 404, { code: "unknown_route" });
  });
});

describe("context length", () => {
  const long = "Once upon a time there was a little dog. ".repeat(60);

  test("prompt longer than the loaded context is context_length_exceeded, never truncated", async () => {
    const err = await expectError(await chat({ model: "stories260K", messages: user(long) }), 400, { code: "context_length_exceeded" });
    expect(err.message).toMatch(/256 tokens/);
  });

  test("max_tokens beyond the room left is not an error: generation stops when the context is full", async () => {
    for (const stream of [false, true]) {
      const res = await chat({ model: "stories260K", messages: user("hi"), max_tokens: 400, ignore_eos: true, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) });
      expect(res.status).toBe(200);
      const text = await res.text();
      const usage = stream
        ? (text.split("\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)) as { usage?: { prompt_tokens: number; completion_tokens: number } }).find((c) => c.usage)!.usage!)
        : (JSON.parse(text) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
      expect(usage.prompt_tokens + usage.completion_tokens).toBe(256);
      expect(text).toContain('"finish_reason":"length"');
    }
    const res = await srv.request("/v1/completions", { method: "POST", json: { model: "stories260K", prompt: long, max_tokens: 10 } });
    await expectError(res, 400, { code: "context_length_exceeded", param: "prompt" });
  });

  test("a request that fits still works after all the errors", async () => {
    const res = await chat({ model: "stories260K", messages: user("Once upon a time"), max_tokens: 8 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]!.message.content.length).toBeGreaterThan(0);
  });
});

describe("garbage never gets a 5xx", () => {
  const bodies: unknown[] = [
    null, [], "text", 42, true, {}, { model: null }, { model: "stories260K", messages: null },
    { model: "stories260K", messages: [null] }, { model: "stories260K", messages: [{}] }, { model: "stories260K", messages: [{ role: "user" }] },
    { model: "stories260K", messages: [{ role: "user", content: [{}] }] }, { model: "stories260K", messages: "hi" },
    { model: "stories260K", prompt: null }, { model: "stories260K", prompt: [1, 2, 3] }, { model: "stories260K", input: [[1, 2]] },
    { model: "stories260K", messages: [{ role: "user", content: "hi" }], stop: [1] }, { model: "stories260K", messages: [{ role: "user", content: "hi" }], tools: "x" },
    { model: "stories260K", messages: [{ role: "user", content: "hi" }], tools: [{ type: "function", function: { name: "bad name!" } }] },
    { model: "stories260K", messages: [{ role: "user", content: "hi" }], response_format: { type: "json_schema", json_schema: {} } },
    { model: "stories260K", messages: [{ role: "user", content: "hi" }], response_format: { type: "yaml" } },
    { model: "stories260K", messages: [{ role: "user", content: "hi" }], stream_options: "yes" },
    { model: "x".repeat(100_000), messages: [{ role: "user", content: "hi" }] },
    { model: "stories260K", messages: [{ role: "user", content: "hi" }], seed: Number.MAX_VALUE },
    { model: "stories260K", messages: [{ role: "user", content: "hi" }], logit_bias: { a: 1 }, extra: { deep: [1, { x: null }] } },
  ];
  for (const path of ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/admin/v1/downloads", "/admin/v1/import", "/admin/v1/keys", "/admin/v1/models/stories260K/load"]) {
    test(`POST ${path}`, async () => {
      for (const body of bodies) {
        const res = await srv.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        if (res.status >= 500) throw new Error(`${path} ${JSON.stringify(body).slice(0, 80)} → ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
      }
      // Wrong content types and empty bodies too.
      for (const [type, raw] of [["text/plain", "hello"], ["application/x-www-form-urlencoded", "a=1"], ["application/json", ""]] as const) {
        const res = await srv.request(path, { method: "POST", headers: { "content-type": type }, body: raw });
        expect(res.status).toBeLessThan(500);
      }
    });
  }
});
