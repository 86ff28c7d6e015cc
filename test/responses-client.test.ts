// The OpenAI Responses API through the official `openai` SDK (`client.responses.create` and its
// `client.responses.stream` helper) against a real LMX server on llama.cpp: plain text on
// stories260K; reasoning, tool calls, a tool round trip by previous_response_id, a forced call and
// structured output on the trained agent model (test/fixtures/agent-model.ts), whose greedy
// replies are exact, so these assertions are exact too.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import type { FunctionTool, ResponseFunctionToolCall, ResponseReasoningItem } from "openai/resources/responses/responses";
import { ensureAgentModel } from "./fixtures/agent-model.ts";
import { ensureFixtures } from "./fixtures/models.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();
const agent = await ensureAgentModel();
const agentCase = agent.case;
const expected = agent.expected;
let srv: TestServer;
let client: OpenAI;

beforeAll(async () => {
  srv = await startTestServer(["--model", fx.stories260K, "--model", agent.gguf, "--ctx", "2048", "--parallel", "2", "--api-key", "test-key"]);
  client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "test-key", maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await srv?.[Symbol.asyncDispose]();
});



/** A case's tools in the Responses shape (no `function` wrapper). */
const toolsOf = (name: string): FunctionTool[] => agentCase(name).tools.map((t) => ({ type: "function", name: t.function.name, description: t.function.description, parameters: t.function.parameters, strict: false }));
const userText = (name: string) => agentCase(name).messages.find((m) => m.role === "user")!.content;
const AGENT = "agent-qwen3";

describe("Responses API through the openai SDK", () => {
  test("plain text on stories260K: a message item, output_text, usage; max_output_tokens cuts it: incomplete", async () => {
    const r = await client.responses.create({ model: "stories260K", input: "Once upon a time", max_output_tokens: 12, temperature: 0 });
    expect(r.id).toMatch(/^resp_/);
    expect(r.object).toBe("response");
    expect(r.status).toBe("incomplete");
    expect(r.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(r.output).toHaveLength(1);
    expect(r.output[0]!.type).toBe("message");
    expect(r.output_text.length).toBeGreaterThan(0);
    expect(r.usage!.output_tokens).toBe(12);
    expect(r.usage!.total_tokens).toBe(r.usage!.input_tokens + 12);
  }, 60_000);

  test("a thought becomes a reasoning item, the call a function_call item", async () => {
    const r = await client.responses.create({ model: AGENT, input: userText("tool_call"), tools: toolsOf("tool_call"), temperature: 0 });
    expect(r.status).toBe("completed");
    expect(r.output.map((o) => o.type)).toEqual(["reasoning", "function_call"]);
    const reasoning = r.output[0] as ResponseReasoningItem;
    expect(reasoning.content![0]!.text.trim()).toBe(expected("tool_call").thought);
    expect(reasoning.summary).toEqual([]);
    const call = r.output[1] as ResponseFunctionToolCall;
    expect(call.name).toBe("get_weather");
    expect(call.call_id).toMatch(/^call_/);
    expect(call.id).toMatch(/^fc_/);
    expect(JSON.parse(call.arguments)).toEqual({ city: "Paris" });
    expect(r.usage!.output_tokens_details.reasoning_tokens).toBeGreaterThan(10);
  }, 60_000);

  test("a tool round trip: previous_response_id and a function_call_output; the answer uses the result", async () => {
    const first = await client.responses.create({ model: AGENT, input: userText("tool_result"), tools: toolsOf("tool_result"), temperature: 0 });
    const call = first.output.find((o): o is ResponseFunctionToolCall => o.type === "function_call")!;
    const toolOutput = agentCase("tool_result").messages.find((m) => m.role === "tool")!.content;
    const second = await client.responses.create({
      model: AGENT, previous_response_id: first.id, tools: toolsOf("tool_result"), temperature: 0,
      input: [{ type: "function_call_output", call_id: call.call_id, output: toolOutput }],
    });
    expect(second.status).toBe("completed");
    expect(second.previous_response_id).toBe(first.id);
    expect(second.output_text).toBe(expected("tool_result").rest);
    const items = await client.responses.inputItems.list(second.id, { order: "asc" });
    expect(items.data.map((i) => i.type as string)).toEqual(["message", "reasoning", "function_call", "function_call_output"]);
  }, 60_000);

  test("tool_choice forces a named call, even where the model would answer", async () => {
    const r = await client.responses.create({ model: AGENT, input: userText("plain_answer"), tools: toolsOf("plain_answer"), tool_choice: { type: "function", name: "get_weather" }, temperature: 0 });
    const calls = r.output.filter((o): o is ResponseFunctionToolCall => o.type === "function_call");
    expect(calls).toHaveLength(1);
    expect(calls[0]!.name).toBe("get_weather");
    expect(typeof JSON.parse(calls[0]!.arguments).city).toBe("string");
  }, 60_000);

  test("structured output: text.format json_schema gives JSON that matches it", async () => {
    const schema = { type: "object", properties: { city: { type: "string", enum: ["Tokyo", "Paris"] }, sunny: { type: "boolean" } }, required: ["city", "sunny"], additionalProperties: false };
    const r = await client.responses.create({
      model: AGENT, input: userText("plain_answer"), temperature: 0, max_output_tokens: 200, reasoning: { effort: "none" },
      text: { format: { type: "json_schema", name: "answer", schema, strict: true } },
    });
    expect(r.status).toBe("completed");
    const parsed = JSON.parse(r.output_text) as { city: string; sunny: boolean };
    expect(["Tokyo", "Paris"]).toContain(parsed.city);
    expect(typeof parsed.sunny).toBe("boolean");
  }, 60_000);

  test("streaming through the SDK's helper: events in order, growing sequence numbers, the final response", async () => {
    const stream = client.responses.stream({ model: AGENT, input: userText("plain_answer"), tools: toolsOf("plain_answer"), temperature: 0 });
    const types: string[] = [];
    const sequence: number[] = [];
    let text = "";
    for await (const e of stream) {
      types.push(e.type);
      sequence.push(e.sequence_number);
      if (e.type === "response.output_text.delta") text += e.delta;
    }
    const final = await stream.finalResponse();
    expect(sequence).toEqual(sequence.map((_, i) => i));
    const collapsed = types.filter((t, i) => t !== types[i - 1]);
    expect(collapsed).toEqual([
      "response.created", "response.in_progress",
      "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.completed",
    ]);
    expect(text).toBe(expected("plain_answer").rest);
    // The helper's final response is the response.completed event's (output_text is the SDK's, not on the wire).
    const message = final.output[1] as OpenAI.Responses.ResponseOutputMessage;
    expect(message.content[0]).toMatchObject({ type: "output_text", text: expected("plain_answer").rest });
    expect((final.output[0] as ResponseReasoningItem).content![0]!.text.trim()).toBe(expected("plain_answer").thought);
  }, 60_000);

  test("streamed function call: arguments arrive in fragments; response.completed carries the call", async () => {
    const stream = await client.responses.create({ model: AGENT, input: userText("tool_call"), tools: toolsOf("tool_call"), temperature: 0, stream: true });
    let fragments = 0;
    let args = "";
    let last: OpenAI.Responses.ResponseStreamEvent | undefined;
    for await (const e of stream) {
      if (e.type === "response.function_call_arguments.delta") {
        fragments++;
        args += e.delta;
      }
      last = e;
    }
    expect(fragments).toBeGreaterThan(1);
    expect(JSON.parse(args)).toEqual({ city: "Paris" });
    expect(last!.type).toBe("response.completed");
  }, 60_000);

  test("store false keeps nothing: retrieving it is the SDK's NotFoundError; stored ones are retrieved and deleted", async () => {
    const unstored = await client.responses.create({ model: "stories260K", input: "Once", max_output_tokens: 4, store: false });
    expect((unstored as { store?: boolean }).store).toBe(false);
    expect(await client.responses.retrieve(unstored.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
    const stored = await client.responses.create({ model: "stories260K", input: "Once", max_output_tokens: 4 });
    expect((await client.responses.retrieve(stored.id)).output_text).toBe(stored.output_text);
    await client.responses.delete(stored.id);
    expect(await client.responses.retrieve(stored.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
  }, 60_000);

  test("errors are the SDK's typed errors", async () => {
    const unknownModel = await client.responses.create({ model: "no-such-model", input: "x" }).catch((e: unknown) => e);
    expect(unknownModel).toBeInstanceOf(OpenAI.NotFoundError);
    const badPrevious = await client.responses.create({ model: "stories260K", input: "x", previous_response_id: "resp_missing" }).catch((e: unknown) => e);
    expect(badPrevious).toBeInstanceOf(OpenAI.NotFoundError);
    expect((badPrevious as InstanceType<typeof OpenAI.NotFoundError>).param).toBe("previous_response_id");
    const image = await client.responses.create({ model: "stories260K", input: [{ role: "user", content: [{ type: "input_image", image_url: "https://example.com/a.png", detail: "auto" }] }] }).catch((e: unknown) => e);
    expect(image).toBeInstanceOf(OpenAI.BadRequestError);
    const tooLong = await client.responses.create({ model: "stories260K", input: "Once upon a time ".repeat(2000) }).catch((e: unknown) => e);
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tooLong as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("context_length_exceeded");
    const stream = await client.responses.create({ model: "no-such-model", input: "x", stream: true }).catch((e: unknown) => e);
    expect(stream).toBeInstanceOf(OpenAI.NotFoundError);
  }, 60_000);
});
