// The Anthropic Messages API through the official `@anthropic-ai/sdk`, against a real LMX server on
// llama.cpp with the trained agent model (test/fixtures/agent-model.ts), asked for by a Claude
// model name that a route sends to it. At temperature 0 the model writes exactly the replies the
// trainer checked, so thinking, text and tool calls are asserted exactly.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Anthropic, { type APIError } from "@anthropic-ai/sdk";
import { ensureAgentModel } from "./fixtures/agent-model.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const agent = await ensureAgentModel();
const agentCase = agent.case;
const expected = agent.expected;
const tokenCount = agent.countTokens;



const MODEL = "claude-sonnet-4-6";

/** A case's tools as Anthropic custom tools. */
const toolsOf = (name: string): Anthropic.Tool[] =>
  agentCase(name).tools.map((t) => ({ name: t.function.name, description: t.function.description, input_schema: t.function.parameters as Anthropic.Tool.InputSchema }));

/** A case's first user turn (and its system prompt, when it has one) as a Messages request. */
function request(name: string, extra: Partial<Anthropic.MessageCreateParamsNonStreaming> = {}): Anthropic.MessageCreateParamsNonStreaming {
  const c = agentCase(name);
  const system = c.messages.find((m) => m.role === "system")?.content;
  const tools = toolsOf(name);
  // This SDK's types no longer list the sampling fields; the API still takes them.
  const greedy = { temperature: 0 } as object;
  return {
    model: MODEL,
    max_tokens: 120,
    ...greedy,
    ...(system ? { system } : {}),
    messages: c.messages.filter((m) => m.role === "user").slice(0, 1).map((m) => ({ role: "user" as const, content: m.content })),
    ...(tools.length > 0 ? { tools } : {}),
    ...extra,
  };
}

const blockTypes = (m: Anthropic.Message) => m.content.map((b) => b.type);

describe("the Anthropic SDK against LMX (llama.cpp, agent model, routed from a claude-* name)", () => {
  let srv: TestServer;
  let client: Anthropic;
  beforeAll(async () => {
    srv = await startTestServer(["--model", agent.gguf, "--parallel", "2", "--route", "claude-*=agent-qwen3"]);
    client = new Anthropic({ baseURL: srv.url, apiKey: "unused", maxRetries: 0 });
  }, 600_000);
  afterAll(async () => {
    await srv?.[Symbol.asyncDispose]();
  });

  test("plain text: a thinking block with its signature, then the answer; end_turn; usage; the model as asked", async () => {
    const msg = await client.messages.create(request("greeting"));
    expect(msg.id).toMatch(/^msg_/);
    expect(msg.model).toBe(MODEL);
    expect(msg.role).toBe("assistant");
    expect(blockTypes(msg)).toEqual(["thinking", "text"]);
    const [thinking, text] = msg.content as [Anthropic.ThinkingBlock, Anthropic.TextBlock];
    expect(thinking.thinking.trim()).toBe(expected("greeting").thought);
    expect(thinking.signature).toBe("lmx-unsigned");
    expect(text.text).toBe(expected("greeting").rest);
    expect(msg.stop_reason).toBe("end_turn");
    expect(msg.stop_sequence).toBeNull();
    // As Anthropic counts them, tokens read from the prompt cache are not input_tokens: the prompt is their sum.
    expect(msg.usage.input_tokens + msg.usage.cache_read_input_tokens!).toBe(tokenCount(agentCase("greeting").prompt));
    expect(msg.usage.cache_creation_input_tokens).toBe(0);
    expect(msg.usage.output_tokens).toBeGreaterThanOrEqual(tokenCount(agentCase("greeting").reply) - 1);
  });

  test("thinking disabled: no thinking block, the answer at once", async () => {
    const msg = await client.messages.create(request("no_thinking", { thinking: { type: "disabled" } }));
    expect(blockTypes(msg)).toEqual(["text"]);
    expect((msg.content[0] as Anthropic.TextBlock).text).toBe(expected("no_thinking").rest);
  });

  test("thinking enabled with budget_tokens: the thought is closed at the budget, then the answer", async () => {
    const full = await client.messages.create(request("plain_answer"));
    const fullThought = (full.content[0] as Anthropic.ThinkingBlock).thinking.trim();
    const msg = await client.messages.create(request("plain_answer", { thinking: { type: "enabled", budget_tokens: 3 } }));
    expect(blockTypes(msg)[0]).toBe("thinking");
    const thought = (msg.content[0] as Anthropic.ThinkingBlock).thinking.trim();
    // Three tokens of "The user asks for the capital of Japan.": its first words only.
    expect(thought.length).toBeGreaterThan(0);
    expect(fullThought.startsWith(thought)).toBe(true);
    expect(thought.split(/\s+/).length).toBeLessThanOrEqual(3);
    expect(msg.stop_reason).not.toBe("max_tokens");
  });

  test("streaming: the SDK's event sequence, and the message it assembles equals the unstreamed one", async () => {
    const stream = client.messages.stream(request("greeting"));
    const events: string[] = [];
    const deltas: string[] = [];
    stream.on("streamEvent", (e) => {
      events.push(e.type);
      if (e.type === "content_block_delta") deltas.push(e.delta.type);
    });
    const final = await stream.finalMessage();
    const plain = await client.messages.create(request("greeting"));
    expect(final.content as unknown).toEqual(plain.content);
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage.input_tokens + final.usage.cache_read_input_tokens!).toBe(plain.usage.input_tokens + plain.usage.cache_read_input_tokens!);
    // The same prompt again: all of it but its last token came from the cache.
    expect(plain.usage.input_tokens).toBe(1);
    expect(final.usage.output_tokens).toBe(plain.usage.output_tokens);
    const collapsed = events.filter((e, i) => e !== events[i - 1] && e !== "ping");
    expect(collapsed).toEqual(["message_start", "content_block_start", "content_block_delta", "content_block_stop", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]);
    expect(deltas.filter((d, i) => d !== deltas[i - 1])).toEqual(["thinking_delta", "signature_delta", "text_delta"]);
  });

  test("a tool round trip: tool_use with a toolu_ id and its input, then the tool_result, then the answer", async () => {
    const first = await client.messages.create(request("tool_call"));
    expect(blockTypes(first)).toEqual(["thinking", "tool_use"]);
    expect((first.content[0] as Anthropic.ThinkingBlock).thinking.trim()).toBe(expected("tool_call").thought);
    const call = first.content[1] as Anthropic.ToolUseBlock;
    expect(call.id).toMatch(/^toolu_/);
    expect(call.name).toBe("get_weather");
    expect(call.input).toEqual({ city: "Paris" });
    expect(first.stop_reason).toBe("tool_use");

    const c = agentCase("tool_result");
    const second = await client.messages.create(request("tool_result", {
      messages: [
        { role: "user", content: c.messages[0]!.content },
        // The trained conversation gave no thought back, so neither does this one.
        { role: "assistant", content: [call] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: c.messages[2]!.content }] },
      ],
    }));
    expect(blockTypes(second)).toEqual(["thinking", "text"]);
    expect((second.content[1] as Anthropic.TextBlock).text).toBe(expected("tool_result").rest);
    expect(second.stop_reason).toBe("end_turn");
  });

  test("a streamed tool call: input_json_delta fragments that the SDK assembles into the input", async () => {
    const stream = client.messages.stream(request("tool_call"));
    const fragments: string[] = [];
    stream.on("inputJson", (partial) => fragments.push(partial));
    const final = await stream.finalMessage();
    const call = final.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    expect(call?.input).toEqual({ city: "Paris" });
    expect(JSON.parse(fragments.join(""))).toEqual({ city: "Paris" });
    expect(final.stop_reason).toBe("tool_use");
  });

  test("tool_choice forces a call: any, and a named tool", async () => {
    const any = await client.messages.create(request("plain_answer", { tool_choice: { type: "any" } }));
    const anyCall = any.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    expect(anyCall?.name).toBe("get_weather");
    expect(typeof (anyCall?.input as { city?: unknown }).city).toBe("string");
    expect(any.stop_reason).toBe("tool_use");
    const named = await client.messages.create(request("tool_call_tokyo", { tool_choice: { type: "tool", name: "get_time" } }));
    const namedCall = named.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    expect(namedCall?.name).toBe("get_time");
    expect(typeof (namedCall?.input as { city?: unknown }).city).toBe("string");
  });

  test("a thought given back in a later turn is accepted", async () => {
    const first = await client.messages.create(request("greeting"));
    const again = await client.messages.create(request("greeting", {
      messages: [{ role: "user", content: "Hello!" }, { role: "assistant", content: first.content as Anthropic.ContentBlockParam[] }, { role: "user", content: "Hello!" }],
    }));
    expect(again.stop_reason).toBeOneOf(["end_turn", "max_tokens"]);
  });

  test("stop_sequences: the answer stops before it; stop_reason stop_sequence names it, streamed too", async () => {
    const msg = await client.messages.create(request("greeting", { stop_sequences: ["never", "help"] }));
    const text = msg.content.find((b): b is Anthropic.TextBlock => b.type === "text");
    expect(text?.text).toBe(expected("greeting").rest.slice(0, expected("greeting").rest.indexOf("help")));
    expect(msg.stop_reason).toBe("stop_sequence");
    expect(msg.stop_sequence).toBe("help");
    const streamed = await client.messages.stream(request("greeting", { stop_sequences: ["help"] })).finalMessage();
    expect(streamed.stop_reason).toBe("stop_sequence");
    expect(streamed.stop_sequence).toBe("help");
  });

  test("max_tokens: stop_reason max_tokens", async () => {
    const msg = await client.messages.create(request("greeting", { max_tokens: 3 }));
    expect(msg.stop_reason).toBe("max_tokens");
    expect(msg.usage.output_tokens).toBe(3);
  });

  test("count_tokens: the prompt as the model's template renders it, tools included, as a generation counts it", async () => {
    const count = async (name: string) => {
      const { model, messages, tools, system } = request(name);
      return (await client.messages.countTokens({ model, messages, ...(tools ? { tools } : {}), ...(system ? { system } : {}) })).input_tokens;
    };
    expect(await count("greeting")).toBe(tokenCount(agentCase("greeting").prompt));
    const withTools = await count("tool_call");
    const usage = (await client.messages.create(request("tool_call"))).usage;
    expect(usage.input_tokens + usage.cache_read_input_tokens!).toBe(withTools);
    // node-llama-cpp writes the tools' system block itself, within a couple of tokens of the Jinja rendering.
    expect(Math.abs(withTools - tokenCount(agentCase("tool_call").prompt))).toBeLessThanOrEqual(4);
    expect(withTools).toBeGreaterThan(await count("no_tools") + 100);
  });

  test("errors surface as the SDK's typed errors: unknown model 404 not_found_error, invalid body 400 invalid_request_error", async () => {
    const missing = await client.messages.create(request("greeting", { model: "gpt-nope" })).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
    expect((missing as APIError).type).toBe("not_found_error");
    expect((missing as APIError).message).toContain("gpt-nope");

    const image = await client.messages.create(request("greeting", {
      messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } }] }],
    })).catch((e: unknown) => e);
    expect(image).toBeInstanceOf(Anthropic.BadRequestError);
    expect((image as APIError).type).toBe("invalid_request_error");

    const noMessages = await client.messages.create(request("greeting", { messages: [] })).catch((e: unknown) => e);
    expect(noMessages).toBeInstanceOf(Anthropic.BadRequestError);
  });
});

describe("the Anthropic SDK against a server with keys", () => {
  test("a wrong key is 401 authentication_error; the right one works by x-api-key and by Bearer token", async () => {
    await using srv = await startTestServer(["--model", agent.gguf, "--api-key", "sekret", "--route", "claude-*=agent-qwen3"]);
    const wrong = await new Anthropic({ baseURL: srv.url, apiKey: "nope", maxRetries: 0 }).messages.create(request("greeting", { max_tokens: 2 })).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((wrong as APIError).type).toBe("authentication_error");
    const byKey = await new Anthropic({ baseURL: srv.url, apiKey: "sekret", maxRetries: 0 }).messages.create(request("greeting", { max_tokens: 2 }));
    expect(byKey.stop_reason).toBe("max_tokens");
    const byToken = await new Anthropic({ baseURL: srv.url, authToken: "sekret", apiKey: null, maxRetries: 0 }).messages.countTokens({ model: MODEL, messages: [{ role: "user", content: "Hello!" }] });
    expect(byToken.input_tokens).toBeGreaterThan(0);
  }, 120_000);
});
