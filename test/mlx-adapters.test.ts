// The Responses, Anthropic Messages and Ollama APIs on the MLX engine, through their official
// clients: the agent model's MLX export thinks and calls a tool through a real mlx-lm worker, and
// each API shapes the thought and the call as it does on llama.cpp (where the per-API tests run).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Anthropic from "@anthropic-ai/sdk";
import { Ollama } from "ollama";
import OpenAI from "openai";
import type { ResponseFunctionToolCall, ResponseReasoningItem } from "openai/resources/responses/responses";
import { ensureAgentModel } from "./fixtures/agent-model.ts";
import { mlxTestEnv } from "./helpers/mlx.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const agent = await ensureAgentModel();
const MODEL = "agent-qwen3-mlx";
const weather = agent.case("tool_call");
const question = weather.messages.find((m) => m.role === "user")!.content;
const thought = agent.expected("tool_call").thought;

let srv: TestServer;

beforeAll(async () => {
  const env = await mlxTestEnv();
  srv = await startTestServer(["--python", env.python, "--parallel", "2"]);
  const imported = await srv.request("/admin/v1/import", { method: "POST", json: { paths: [agent.mlxDir] } });
  expect(imported.status).toBe(200);
}, 600_000);

afterAll(async () => {
  await srv?.[Symbol.asyncDispose]();
});

describe("the MLX engine behind the other APIs", () => {
  test("Responses: a reasoning item with the thought, then a function_call item", async () => {
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const r = await client.responses.create({
      model: MODEL, input: question, temperature: 0, max_output_tokens: 120,
      tools: weather.tools.map((t) => ({ type: "function" as const, name: t.function.name, description: t.function.description, parameters: t.function.parameters, strict: false })),
    });
    expect(r.output.map((o) => o.type)).toEqual(["reasoning", "function_call"]);
    expect((r.output[0] as ResponseReasoningItem).content![0]!.text.trim()).toBe(thought);
    const call = r.output[1] as ResponseFunctionToolCall;
    expect(call.name).toBe("get_weather");
    expect(JSON.parse(call.arguments)).toEqual({ city: "Paris" });
    expect(r.usage!.output_tokens_details.reasoning_tokens).toBeGreaterThan(10);
  }, 120_000);

  test("Anthropic Messages, streamed: a thinking block, then tool_use with its input as an object", async () => {
    const client = new Anthropic({ baseURL: srv.url, apiKey: "unused", maxRetries: 0 });
    const stream = client.messages.stream({
      model: MODEL, max_tokens: 120, temperature: 0, messages: [{ role: "user", content: question }],
      tools: weather.tools.map((t) => ({ name: t.function.name, description: t.function.description, input_schema: t.function.parameters as Anthropic.Tool.InputSchema })),
    } as Anthropic.MessageStreamParams);
    const msg = await stream.finalMessage();
    expect(msg.content.map((b) => b.type)).toEqual(["thinking", "tool_use"]);
    expect((msg.content[0] as Anthropic.ThinkingBlock).thinking.trim()).toBe(thought);
    expect(msg.content[1]).toMatchObject({ type: "tool_use", name: "get_weather", input: { city: "Paris" } });
    expect(msg.stop_reason).toBe("tool_use");
  }, 120_000);

  test("Ollama chat: message.thinking and tool_calls with object arguments", async () => {
    const client = new Ollama({ host: srv.url });
    const res = await client.chat({ model: MODEL, messages: [{ role: "user", content: question }], tools: weather.tools, think: true, options: { temperature: 0, num_predict: 120 } });
    expect(res.message.thinking?.trim()).toBe(thought);
    expect(res.message.tool_calls?.map((c) => [c.function.name, c.function.arguments])).toEqual([["get_weather", { city: "Paris" }]]);
    expect(res.done).toBe(true);
  }, 120_000);
});
