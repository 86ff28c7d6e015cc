// The Ollama adapter (/api/*) through the real Elysia app on the FakeEngine: routing, validation,
// translation to the core, NDJSON and whole answers, keep_alive, errors in Ollama's shape.
import { describe, expect, test } from "bun:test";
import type { ChatGeneration, TextGeneration } from "../../src/core/request.ts";
import { keepAliveSeconds, modelName } from "../../src/api/ollama/requests.ts";
import { pullSpec } from "../../src/api/ollama/pull.ts";
import { fakeApp } from "../fakes/fake-app.ts";
import type { Script } from "../fakes/fake-engine.ts";

// Wire JSON, read loosely: the assertions themselves check its shape.
type Json = Record<string, any>;

const user = (content: string) => [{ role: "user", content }];
const words = (...pieces: string[]): Script => ({ steps: pieces.map((text) => ({ text })) });
const weather = { type: "function", function: { name: "weather", parameters: { type: "object", properties: { city: { type: "string" } } } } };
const STATS = ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"];

async function json(res: Response): Promise<Json> {
  return (await res.json()) as Json;
}

async function ndjson(res: Response): Promise<Json[]> {
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/x-ndjson");
  const text = await res.text();
  expect(text.endsWith("\n")).toBe(true);
  return text.trim().split("\n").map((line) => JSON.parse(line) as Json);
}

async function expectError(res: Response, status: number, message: string | RegExp): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = await json(res);
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error).toMatch(message);
}

function expectFinal(chunk: Json, reason: string): void {
  expect(chunk.done).toBe(true);
  expect(chunk.done_reason).toBe(reason);
  for (const key of STATS) expect(Number.isInteger(chunk[key]) && chunk[key] >= 0).toBe(true);
  expect(chunk.total_duration).toBeGreaterThanOrEqual(chunk.prompt_eval_duration + chunk.eval_duration);
}

describe("root, version", () => {
  test("GET / and HEAD / answer as Ollama does; /api/version has {version}", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const get = await f.request("/");
    expect(get.status).toBe(200);
    expect(await get.text()).toBe("Ollama is running");
    const head = await f.request("/", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect(Object.keys(await json(await f.request("/api/version")))).toEqual(["version"]);
  });

  test("an unknown /api path is a 404 in Ollama's shape; OpenAI paths keep theirs", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.request("/api/nothing"), 404, "no such route");
    const openai = await json(await f.post("/v1/chat/completions", { model: "nope", messages: user("hi") }));
    expect(openai.error.code).toBe("model_not_found");
  });
});

describe("keys", () => {
  test("inference keys reach chat and listings; pull, delete and copy need an admin key; errors in Ollama's shape", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const { key, admin } = f.keys.create("inference");
    const as = (k: string) => ({ authorization: `Bearer ${k}` });
    await expectError(await f.request("/api/tags"), 401, /API key/);
    expect((await f.request("/api/tags", { headers: as(key) })).status).toBe(200);
    expect((await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false }, { headers: { "x-api-key": key } })).status).toBe(200);
    await expectError(await f.post("/api/pull", { model: "org/repo" }, { headers: as(key) }), 403, /admin key/);
    await expectError(await f.request("/api/delete", { method: "DELETE", json: { model: "m" }, headers: as(key) }), 403, /admin key/);
    await expectError(await f.post("/api/copy", { source: "m", destination: "n" }, { headers: as(key) }), 403, /admin key/);
    await expectError(await f.post("/api/copy", { source: "m", destination: "n" }, { headers: as(admin!.key) }), 400, /models directory/);
  });
});

describe("/api/chat", () => {
  test("streams NDJSON by default: thinking, content, a whole tool call with object arguments, then the final chunk", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ reasoning: "hmm" }, { text: "Hi" }, { toolCall: { name: "weather", arguments: '{"city":"Paris"}', pieces: 3 } }] }) }]);
    const lines = await ndjson(await f.post("/api/chat", { model: "m", messages: user("hi"), tools: [weather] }));
    expect(lines.map((l) => l.message)).toEqual([
      { role: "assistant", content: "", thinking: "hmm" },
      { role: "assistant", content: "Hi" },
      { role: "assistant", content: "", tool_calls: [{ id: "call_fake0", function: { index: 0, name: "weather", arguments: { city: "Paris" } } }] },
      { role: "assistant", content: "" },
    ]);
    expect(lines.slice(0, -1).every((l) => l.done === false && l.model === "m" && !Number.isNaN(Date.parse(l.created_at)))).toBe(true);
    expectFinal(lines.at(-1)!, "stop");
    expect(lines.at(-1)).toMatchObject({ prompt_eval_count: expect.any(Number), eval_count: 5 });
  });

  test("stream: false answers one object with the whole message", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ reasoning: "a" }, { reasoning: "b" }, { text: "Hello" }, { text: " there" }, { toolCall: { name: "weather", arguments: '{"city":"Oslo"}' } }] }) }]);
    const res = await f.post("/api/chat", { model: "m", messages: user("hi"), tools: [weather], stream: false });
    expect(res.headers.get("content-type")).toContain("application/json");
    const body = await json(res);
    expect(body.message).toEqual({ role: "assistant", content: "Hello there", thinking: "ab", tool_calls: [{ id: "call_fake0", function: { index: 0, name: "weather", arguments: { city: "Oslo" } } }] });
    expect(body.model).toBe("m");
    expectFinal(body, "stop");
    expect(body.eval_count).toBe(5);
  });

  test("num_predict ends with done_reason length; -1 and -2 mean no limit", async () => {
    await using f = fakeApp([{ id: "m", script: () => words("a", "b", "c") }]);
    const short = await json(await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false, options: { num_predict: 2 } }));
    expect(short.message.content).toBe("ab");
    expectFinal(short, "length");
    for (const n of [-1, -2]) {
      const all = await json(await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false, options: { num_predict: n } }));
      expect(all.message.content).toBe("abc");
      expect(all.done_reason).toBe("stop");
    }
    expect(f.engine.model("m").requests.slice(1).map((r) => r.maxTokens)).toEqual([undefined, undefined]);
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), options: { num_predict: 0 } }), 400, /num_predict/);
  });

  test("options map to the core's sampling; options that would change the answer unseen are refused, the harmless ones ignored", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const options = { temperature: 0.3, top_p: 0.9, top_k: 7, min_p: 0.1, seed: 42, stop: ["x", ""], repeat_penalty: 1.2, presence_penalty: 0.5, frequency_penalty: 0.25, repeat_last_n: 64, num_gpu: 0, num_thread: 2, use_mmap: true, mirostat: 0, typical_p: 1 };
    await json(await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false, options }));
    expect(f.engine.model("m").requests[0]).toMatchObject({ temperature: 0.3, topP: 0.9, topK: 7, minP: 0.1, seed: 42, stop: ["x"], repeatPenalty: 1.2, presencePenalty: 0.5, frequencyPenalty: 0.25 });
    for (const [key, value] of [["mirostat", 2], ["typical_p", 0.5], ["tfs_z", 2], ["repeat_last_n", 128]] as const) {
      await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), options: { [key]: value } }), 400, new RegExp(`options\\.${key}`));
    }
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), options: { temperature: 5 } }), 400, /options\.temperature/);
  });

  test("format json and a JSON schema become the core's response format; think maps to reasoning effort", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const schema = { type: "object", properties: { a: { type: "string" } } };
    const cases: [Json, Partial<ChatGeneration>][] = [
      [{ format: "json" }, { responseFormat: { type: "json_object" } }],
      [{ format: schema }, { responseFormat: { type: "json_schema", schema } }],
      [{ think: false }, { reasoningEffort: "none" }],
      [{ think: true }, { reasoningFormat: "separate" }],
      [{ think: "high" }, { reasoningEffort: "high", reasoningFormat: "separate" }],
    ];
    for (const [extra, expected] of cases) {
      expect((await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false, ...extra })).status).toBe(200);
      expect(f.engine.model("m").requests.at(-1)).toMatchObject(expected);
    }
    expect(f.engine.model("m").requests[0]!).not.toHaveProperty("reasoningEffort", expect.anything());
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), think: "max" }), 400, /think/);
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), format: { type: "nonsense" } }), 400, /format/);
  });

  test("history: assistant tool calls with object arguments, thinking given back, tool results matched by tool_name", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const messages = [
      { role: "system", content: "be brief" },
      { role: "user", content: "weather in Paris and Oslo?" },
      { role: "assistant", content: "", thinking: "two calls", tool_calls: [
        { function: { name: "weather", arguments: { city: "Paris" } } },
        { function: { name: "time", arguments: { city: "Oslo" } } },
      ] },
      { role: "tool", content: "10:00", tool_name: "time" },
      { role: "tool", content: "sunny", tool_name: "weather" },
    ];
    expect((await f.post("/api/chat", { model: "m", messages, stream: false })).status).toBe(200);
    const sent = f.engine.model("m").requests[0] as ChatGeneration;
    expect(sent.messages).toEqual([
      { role: "system", content: "be brief" },
      { role: "user", content: "weather in Paris and Oslo?" },
      { role: "assistant", content: "", reasoning: "two calls", toolCalls: [{ id: "call_2_0", name: "weather", arguments: '{"city":"Paris"}' }, { id: "call_2_1", name: "time", arguments: '{"city":"Oslo"}' }] },
      { role: "tool", content: "10:00", toolCallId: "call_2_1" },
      { role: "tool", content: "sunny", toolCallId: "call_2_0" },
    ]);
    const orphan = [...messages.slice(0, 2), { role: "tool", content: "x", tool_name: "weather" }];
    await expectError(await f.post("/api/chat", { model: "m", messages: orphan }), 400, /messages\[2\].*no preceding assistant/);
  });

  test("images are a clear 400: the models cannot see", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.post("/api/chat", { model: "m", messages: [{ role: "user", content: "what is this?", images: ["aGVsbG8="] }] }), 400, /messages\[0\]\.images.*text only/);
    expect(f.engine.loads).toEqual([]);
  });

  test("tool_choice (LMX extension) reaches the core with OpenAI's meaning and its rules", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ toolCall: { name: "weather", arguments: '{"city":"Rome"}' } }] }) }]);
    const body = await json(await f.post("/api/chat", { model: "m", messages: user("hi"), tools: [weather], tool_choice: "required", stream: false }));
    expect(body.message.tool_calls[0].function).toEqual({ index: 0, name: "weather", arguments: { city: "Rome" } });
    expect((f.engine.model("m").requests[0] as ChatGeneration).toolChoice).toBe("required");
    await json(await f.post("/api/chat", { model: "m", messages: user("hi"), tools: [weather], tool_choice: { type: "function", function: { name: "weather" } }, stream: false }));
    expect((f.engine.model("m").requests[1] as ChatGeneration).toolChoice).toEqual({ name: "weather" });
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), tool_choice: "required" }), 400, /tool_choice requires tools/);
  });

  test("tool call arguments that are not a JSON object fail clearly: before output a 500, mid-stream a final error line", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "x" }, { toolCall: { name: "weather", arguments: "[1]" } }] }) }]);
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), tools: [weather], stream: false }), 500, /not a JSON object/);
    const lines = await ndjson(await f.post("/api/chat", { model: "m", messages: user("hi"), tools: [weather] }));
    expect(lines.at(-1)).toEqual({ error: expect.stringMatching(/not a JSON object/) });
  });
});

describe("/api/generate", () => {
  test("streams `response` pieces with thinking, then the final chunk; the prompt goes through the chat template after `system`", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ reasoning: "r" }, { text: "a" }, { text: "b" }] }) }]);
    const lines = await ndjson(await f.post("/api/generate", { model: "m", prompt: "hi", system: "sys", think: true }));
    expect(lines.map((l) => [l.response, l.thinking, l.done])).toEqual([["", "r", false], ["a", undefined, false], ["b", undefined, false], ["", undefined, true]]);
    expect(lines.every((l) => !("message" in l))).toBe(true);
    expectFinal(lines.at(-1)!, "stop");
    expect((f.engine.model("m").requests[0] as ChatGeneration).messages).toEqual([{ role: "system", content: "sys" }, { role: "user", content: "hi" }]);
    const whole = await json(await f.post("/api/generate", { model: "m", prompt: "hi", stream: false }));
    expect(whole).toMatchObject({ model: "m", response: "ab", thinking: "r", done: true, done_reason: "stop" });
  });

  test("raw continues the prompt as is; suffix asks for fill-in-the-middle", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await json(await f.post("/api/generate", { model: "m", prompt: "<|im_start|>user", raw: true, stream: false }));
    await json(await f.post("/api/generate", { model: "m", prompt: "def f(", suffix: "return x", stream: false }));
    const [raw, fim] = f.engine.model("m").requests as TextGeneration[];
    expect(raw).toMatchObject({ kind: "text", prompt: "<|im_start|>user" });
    expect(fim).toMatchObject({ kind: "text", prompt: "def f(", suffix: "return x" });
  });

  test("what LMX cannot do is refused by name: template, context, images, system or format with raw", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.post("/api/generate", { model: "m", prompt: "hi", template: "{{ .Prompt }}" }), 400, /^template: .*raw: true/);
    await expectError(await f.post("/api/generate", { model: "m", prompt: "hi", context: [1, 2, 3] }), 400, /^context:/);
    await expectError(await f.post("/api/generate", { model: "m", prompt: "hi", images: ["aGk="] }), 400, /images/);
    await expectError(await f.post("/api/generate", { model: "m", prompt: "hi", raw: true, system: "s" }), 400, /system cannot be combined with raw/);
    await expectError(await f.post("/api/generate", { model: "m", prompt: "hi", raw: true, format: "json" }), 400, /format cannot be combined/);
    expect(f.engine.loads).toEqual([]);
  });

  test("no prompt loads the model (done_reason load); with keep_alive 0 it unloads it (done_reason unload)", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const load = await json(await f.post("/api/generate", { model: "m" }));
    expect(load).toMatchObject({ model: "m", response: "", done: true, done_reason: "load" });
    expect(f.engine.loads).toEqual(["m"]);
    const unload = await json(await f.post("/api/chat", { model: "m", messages: [], keep_alive: 0 }));
    expect(unload).toMatchObject({ model: "m", message: { role: "assistant", content: "" }, done: true, done_reason: "unload" });
    expect(f.engine.unloads).toEqual(["m"]);
    await expectError(await f.post("/api/generate", { model: "nope", keep_alive: 0 }), 404, 'model "nope" not found, try pulling it first');
  });
});

describe("errors", () => {
  test("an unknown model is a 404 in Ollama's words, streamed or not", async () => {
    await using f = fakeApp([{ id: "m" }]);
    for (const stream of [true, false]) {
      await expectError(await f.post("/api/chat", { model: "llama3:8b", messages: user("hi"), stream }), 404, 'model "llama3:8b" not found, try pulling it first');
    }
    await expectError(await f.post("/api/generate", { model: "x", prompt: "hi" }), 404, 'model "x" not found');
    await expectError(await f.post("/api/embed", { model: "x", input: "hi" }), 404, 'model "x" not found');
    await expectError(await f.post("/api/show", { model: "x" }), 404, 'model "x" not found');
  });

  test("bad requests are 400s with the field named; a failure mid-stream ends with an {error} line", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "a" }, { fail: "boom" }] }) }]);
    await expectError(await f.post("/api/chat", { messages: user("hi") }), 400, /model/);
    await expectError(await f.post("/api/chat", { model: "m", messages: [{ role: "robot", content: "x" }] }), 400, /messages\[0\]\.role/);
    await expectError(await f.request("/api/chat", { method: "POST", headers: { "content-type": "application/json" }, body: "{" }), 400, /not valid JSON/);
    const lines = await ndjson(await f.post("/api/chat", { model: "m", messages: user("hi") }));
    expect(lines.map((l) => l.message?.content ?? l.error)).toEqual(["a", expect.stringMatching(/boom/)]);
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false }), 500, /boom/);
  });

  test("a full queue is a 503 in Ollama's shape", async () => {
    await using f = fakeApp([{ id: "m", stepMs: 50, script: () => words("a", "b") }], { parallel: 1, queueLimit: 0 });
    const first = f.post("/api/chat", { model: "m", messages: user("hi"), stream: false });
    await Bun.sleep(20);
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false }), 503, /.+/);
    expect((await first).status).toBe(200);
  });
});

describe("model names", () => {
  test("id:latest is the id; other tags are part of the name", async () => {
    expect(modelName("qwen:latest")).toBe("qwen");
    expect(modelName("qwen2.5:0.5b")).toBe("qwen2.5:0.5b");
    await using f = fakeApp([{ id: "m" }]);
    const body = await json(await f.post("/api/chat", { model: "m:latest", messages: user("hi"), stream: false }));
    expect(body.model).toBe("m:latest");
    expect(f.engine.loads).toEqual(["m"]);
    await expectError(await f.post("/api/chat", { model: "m:7b", messages: user("hi"), stream: false }), 404, 'model "m:7b" not found');
  });
});

describe("keep_alive", () => {
  test("durations in seconds or Go's notation; negative: for ever", () => {
    expect(keepAliveSeconds(undefined)).toBeUndefined();
    expect(keepAliveSeconds(300)).toBe(300);
    expect(keepAliveSeconds("5m")).toBe(300);
    expect(keepAliveSeconds("1h30m")).toBe(5400);
    expect(keepAliveSeconds("10")).toBe(10);
    expect(keepAliveSeconds("500ms")).toBe(1);
    expect(keepAliveSeconds(0)).toBe(0);
    expect(keepAliveSeconds("0s")).toBe(0);
    expect(keepAliveSeconds(-1)).toBeNull();
    expect(keepAliveSeconds("-1m")).toBeNull();
    expect(() => keepAliveSeconds("soon")).toThrow(/keep_alive/);
  });

  test("sets the model's TTL shown in /api/ps; 0 unloads it once the request is done; a bad one is a 400", async () => {
    let now = 1_000_000;
    await using f = fakeApp([{ id: "m" }], { now: () => now });
    await json(await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false, keep_alive: "5m" }));
    let ps = (await json(await f.request("/api/ps"))).models;
    expect(ps).toHaveLength(1);
    expect(ps[0]).toMatchObject({ name: "m", model: "m", size_vram: 0, context_length: 1024, expires_at: new Date(now + 300_000).toISOString() });
    expect(ps[0].size).toBeGreaterThan(0);
    await json(await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false, keep_alive: -1 }));
    ps = (await json(await f.request("/api/ps"))).models;
    expect(ps[0].expires_at).toBe("9999-12-31T23:59:59Z");
    now += 10_000;
    await json(await f.post("/api/generate", { model: "m", prompt: "hi", stream: false, keep_alive: 0 }));
    for (let i = 0; i < 50 && f.engine.unloads.length === 0; i++) await Bun.sleep(10);
    expect(f.engine.unloads).toEqual(["m"]);
    expect((await json(await f.request("/api/ps"))).models).toEqual([]);
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), keep_alive: "soon" }), 400, /keep_alive/);
  });

  test("num_ctx within the model's context changes nothing; beyond it is refused, saying how to load more", async () => {
    await using f = fakeApp([{ id: "m" }], { contextLength: 1024 });
    expect((await f.post("/api/chat", { model: "m", messages: user("hi"), stream: false, options: { num_ctx: 512 } })).status).toBe(200);
    await expectError(await f.post("/api/chat", { model: "m", messages: user("hi"), options: { num_ctx: 8192 } }), 400, /num_ctx: 8192 .*1024-token context .*--ctx 8192/);
  });
});

describe("models", () => {
  test("/api/tags lists every model with Ollama's fields", async () => {
    await using f = fakeApp([{ id: "a" }, { id: "b", modelBytes: 5000 }]);
    const { models } = await json(await f.request("/api/tags"));
    expect(models.map((m: Json) => m.name)).toEqual(["a", "b"]);
    expect(models[1]).toEqual({
      name: "b", model: "b", modified_at: expect.any(String), size: 5000, digest: expect.stringMatching(/^[0-9a-f]{64}$/),
      details: { parent_model: "", format: "gguf", family: "fake", families: ["fake"], parameter_size: "", quantization_level: "F32" },
    });
  });

  test("/api/show: details, model_info with the declared context, the template and capabilities from it", async () => {
    const template = "{% if tools %}{{ tools }}{% endif %}<think>{{ messages }}";
    await using f = fakeApp([{ id: "m", declaredContext: 4096, chatTemplate: template }, { id: "plain" }]);
    const body = await json(await f.post("/api/show", { model: "m:latest" }));
    expect(body).toMatchObject({
      template,
      details: { format: "gguf", family: "fake" },
      model_info: { "general.architecture": "fake", "fake.context_length": 4096 },
      capabilities: ["completion", "tools", "thinking"],
    });
    expect((await json(await f.post("/api/show", { name: "plain" }))).capabilities).toEqual(["completion"]);
    await expectError(await f.post("/api/show", {}), 400, /model is required/);
  });

  test("/api/delete and /api/copy: files in the models directory are not LMX's; unknown models 404", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.request("/api/delete", { method: "DELETE", json: { model: "m" } }), 400, /did not download/);
    await expectError(await f.request("/api/delete", { method: "DELETE", json: { model: "x" } }), 404, 'model "x" not found');
    await expectError(await f.post("/api/copy", { source: "m", destination: "mine" }), 400, /models directory/);
    await expectError(await f.post("/api/copy", { source: "x", destination: "mine" }), 404, 'model "x" not found');
    await expectError(await f.post("/api/copy", { source: "m", destination: "bad name!" }), 400, /destination/);
  });

  test("/api/embed and /api/embeddings", async () => {
    await using f = fakeApp([{ id: "e" }]);
    const body = await json(await f.post("/api/embed", { model: "e", input: ["ab", "abcd efg"] }));
    expect(Object.keys(body).sort()).toEqual(["embeddings", "load_duration", "model", "prompt_eval_count", "total_duration"]);
    expect(body.embeddings).toHaveLength(2);
    for (const v of body.embeddings as number[][]) expect(Math.hypot(...v)).toBeCloseTo(1, 10);
    expect(body.prompt_eval_count).toBe(3);
    expect((await json(await f.post("/api/embed", { model: "e", input: "abc", dimensions: 2 }))).embeddings[0]).toHaveLength(2);
    const old = await json(await f.post("/api/embeddings", { model: "e", prompt: "abc" }));
    expect(Object.keys(old)).toEqual(["embedding"]);
    expect(old.embedding).toHaveLength(3);
    await expectError(await f.post("/api/embed", { model: "e", input: [] }), 400, /input/);
  });
});

describe("/api/pull", () => {
  test("names map to download specs", () => {
    expect(pullSpec("hf.co/org/repo:Q4_K_M")).toBe("org/repo:Q4_K_M");
    expect(pullSpec("https://huggingface.co/org/repo")).toBe("org/repo");
    expect(pullSpec("org/repo:latest")).toBe("org/repo");
  });

  test("a bad name is a 400 before anything streams; a hub failure after the first line is a final {error} line", async () => {
    await using f = fakeApp([{ id: "m" }]);
    await expectError(await f.post("/api/pull", { model: "llama3" }), 400, /.+/);
    await expectError(await f.post("/api/pull", {}), 400, /model is required/);
    const lines = await ndjson(await f.post("/api/pull", { model: "hf.co/org/repo" }));
    expect(lines[0]).toEqual({ status: "pulling manifest" });
    expect(lines.at(-1)).toEqual({ error: expect.stringMatching(/^pull org\/repo: /) });
    await expectError(await f.post("/api/pull", { model: "org/repo", stream: false }), 500, /^pull org\/repo: /);
  });
});
