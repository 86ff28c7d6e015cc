// Reasoning, streamed tool calls and usage through the official `openai` SDK, on both engines,
// with the trained agent model (test/fixtures/agent-model.ts): real <think> and <tool_call> text
// comes out of llama.cpp (node-llama-cpp's Qwen chat wrapper reads it) and mlx-lm (the worker's
// splitter and mlx-lm's json_tools parser read it). At temperature 0 the model writes exactly the
// replies the trainer checked, so every assertion here is exact.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import type { ChatCompletionChunk, ChatCompletionCreateParamsNonStreaming } from "openai/resources/chat/completions";
import { ensureAgentModel } from "./fixtures/agent-model.ts";
import { mlxTestEnv } from "./helpers/mlx.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const agent = await ensureAgentModel();
const agentCase = agent.case;
const expected = agent.expected;
const tokenCount = agent.countTokens;
/** Tokens of a case's whole reply, thought and calls included, without the end token (which no engine counts). */
const replyTokens = (name: string) => tokenCount(agentCase(name).reply.replace(/<\|im_end\|>$/, ""));



/** The case as an OpenAI request: its messages (tool-call arguments as JSON text) and tools. */
function request(name: string, extra: Partial<ChatCompletionCreateParamsNonStreaming> = {}): ChatCompletionCreateParamsNonStreaming {
  const c = agentCase(name);
  const messages = c.messages.map((m) => {
    if (m.role === "assistant") {
      return {
        role: "assistant" as const,
        content: m.content,
        ...(m.reasoning_content ? { reasoning_content: m.reasoning_content } : {}),
        ...(m.tool_calls ? { tool_calls: m.tool_calls.map((t, i) => ({ id: `call_${i}`, type: "function" as const, function: { name: t.function.name, arguments: JSON.stringify(t.function.arguments) } })) } : {}),
      };
    }
    if (m.role === "tool") return { role: "tool" as const, content: m.content, tool_call_id: "call_0" };
    return { role: m.role, content: m.content };
  });
  return {
    model: "",
    messages: messages as ChatCompletionCreateParamsNonStreaming["messages"],
    ...(c.tools.length > 0 ? { tools: c.tools } : {}),
    ...(c.enable_thinking ? {} : { chat_template_kwargs: { enable_thinking: false } }),
    temperature: 0,
    max_tokens: 120,
    ...extra,
  } as ChatCompletionCreateParamsNonStreaming;
}

interface Streamed {
  reasoning: string;
  content: string;
  calls: { id?: string; name?: string; arguments: string; fragments: number }[];
  finish: string | null;
  usage: OpenAI.CompletionUsage | undefined;
  /** Order of what arrived: "r" reasoning, "c" content, "t<i>" a tool-call delta. */
  order: string[];
}

async function stream(client: OpenAI, body: ChatCompletionCreateParamsNonStreaming): Promise<Streamed> {
  const s = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  const out: Streamed = { reasoning: "", content: "", calls: [], finish: null, usage: undefined, order: [] };
  for await (const chunk of s as AsyncIterable<ChatCompletionChunk & { choices: { delta: { reasoning_content?: string } }[] }>) {
    if (chunk.usage) out.usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    const d = choice.delta as ChatCompletionChunk.Choice.Delta & { reasoning_content?: string };
    if (d.reasoning_content) { out.reasoning += d.reasoning_content; out.order.push("r"); }
    if (d.content) { out.content += d.content; out.order.push("c"); }
    for (const t of d.tool_calls ?? []) {
      if (t.id) out.calls[t.index] = { id: t.id, name: t.function?.name, arguments: t.function?.arguments ?? "", fragments: 0 };
      else {
        out.calls[t.index]!.arguments += t.function?.arguments ?? "";
        out.calls[t.index]!.fragments++;
      }
      out.order.push(`t${t.index}`);
    }
    out.finish = choice.finish_reason ?? out.finish;
  }
  return out;
}

const engines = [
  { name: "llama.cpp (GGUF)", model: "agent-qwen3" },
  { name: "MLX", model: "agent-qwen3-mlx" },
] as const;

describe.each(engines)("reasoning and tool calls on $name", ({ name, model }) => {
  let srv: TestServer;
  let client: OpenAI;
  beforeAll(async () => {
    if (name === "MLX") {
      const env = await mlxTestEnv();
      srv = await startTestServer(["--python", env.python, "--parallel", "2"]);
      const imported = await srv.request("/admin/v1/import", { method: "POST", json: { paths: [agent.mlxDir] } });
      expect(imported.status).toBe(200);
    } else {
      srv = await startTestServer(["--model", agent.gguf, "--parallel", "2"]);
    }
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "unused", maxRetries: 0 });
  }, 600_000);
  afterAll(async () => {
    await srv?.[Symbol.asyncDispose]();
  });
  const body = (n: string, extra: Partial<ChatCompletionCreateParamsNonStreaming> = {}) => request(n, { model, ...extra });

  test("a thought goes to reasoning_content, the call to tool_calls; usage counts every token", async () => {
    const res = await client.chat.completions.create(body("tool_call"));
    const msg = res.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
    expect(msg.reasoning_content?.trim()).toBe(expected("tool_call").thought);
    expect(msg.content ?? "").toBe("");
    expect(msg.tool_calls).toHaveLength(1);
    const call = msg.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.id).toMatch(/^call_/);
    expect(call.function.name).toBe("get_weather");
    expect(JSON.parse(call.function.arguments)).toEqual({ city: "Paris" });
    expect(res.choices[0]!.finish_reason).toBe("tool_calls");
    // The whole reply, thought and call included, minus the end token: all generated tokens count.
    // (llama.cpp writes the call's frame itself and tokenizes it in pieces: one token more there.)
    const usage = res.usage as OpenAI.CompletionUsage;
    expect(usage.completion_tokens).toBeGreaterThanOrEqual(replyTokens("tool_call"));
    expect(usage.completion_tokens).toBeLessThanOrEqual(replyTokens("tool_call") + 1);
    // The thought block, its <think> and </think> markers included. One token may straddle the
    // closing marker (this tokenizer has ".\n" before "</think>"): engines may count it either way.
    const thought = tokenCount(/^<think>[^]*<\/think>/.exec(agentCase("tool_call").reply)![0]);
    expect(Math.abs(usage.completion_tokens_details!.reasoning_tokens! - thought)).toBeLessThanOrEqual(1);
  }, 60_000);

  test("streamed: reasoning deltas first, then the call: its first delta names it, arguments follow in fragments", async () => {
    const s = await stream(client, body("tool_call"));
    expect(s.reasoning.trim()).toBe(expected("tool_call").thought);
    expect(s.content.trim()).toBe("");
    expect(s.calls).toHaveLength(1);
    expect(s.calls[0]).toMatchObject({ name: "get_weather" });
    expect(s.calls[0]!.id).toMatch(/^call_/);
    expect(JSON.parse(s.calls[0]!.arguments)).toEqual({ city: "Paris" });
    // Arguments arrive as they are generated: more than one fragment after the naming delta.
    expect(s.calls[0]!.fragments).toBeGreaterThan(1);
    expect(s.order.indexOf("t0")).toBeGreaterThan(s.order.lastIndexOf("r"));
    expect(s.finish).toBe("tool_calls");
    expect(s.usage!.completion_tokens_details!.reasoning_tokens).toBeGreaterThan(10);
  }, 60_000);

  test("two calls in one turn get indexes 0 and 1; parallel_tool_calls false allows one", async () => {
    const both = await stream(client, body("parallel_calls"));
    expect(both.calls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([["get_weather", { city: "Rome" }], ["get_time", { city: "Rome" }]]);
    expect(new Set(both.calls.map((c) => c.id)).size).toBe(2);
    const one = await client.chat.completions.create(body("parallel_calls", { parallel_tool_calls: false }));
    expect(one.choices[0]!.message.tool_calls).toHaveLength(1);
    expect((one.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.name).toBe("get_weather");
    expect(one.choices[0]!.finish_reason).toBe("tool_calls");
  }, 60_000);

  test("an answer: reasoning apart, content exactly the answer; inline and none formats", async () => {
    const res = await client.chat.completions.create(body("plain_answer"));
    const msg = res.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
    expect(msg.content).toBe(expected("plain_answer").rest);
    expect(msg.reasoning_content?.trim()).toBe(expected("plain_answer").thought);
    expect(res.choices[0]!.finish_reason).toBe("stop");
    expect(res.usage!.completion_tokens).toBe(replyTokens("plain_answer"));
    const inline = await client.chat.completions.create(body("plain_answer", { reasoning_format: "inline" } as object));
    expect(inline.choices[0]!.message.content).toMatch(/^<think>[^]*The user asks for the capital of Japan\.[^]*<\/think>[^]*The capital of Japan is Tokyo\.$/);
    const none = await client.chat.completions.create(body("plain_answer", { reasoning_format: "none" } as object));
    expect(none.choices[0]!.message).not.toHaveProperty("reasoning_content");
    expect(none.choices[0]!.message.content).toBe(expected("plain_answer").rest);
    expect(none.usage!.completion_tokens_details!.reasoning_tokens).toBe(res.usage!.completion_tokens_details!.reasoning_tokens);
  }, 60_000);

  test("a thought cut by max_tokens: 200, finish length, every token counted as reasoning, no content", async () => {
    const res = await client.chat.completions.create(body("plain_answer", { max_tokens: 6 }));
    const msg = res.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
    expect(res.choices[0]!.finish_reason).toBe("length");
    expect(msg.content ?? "").toBe("");
    expect(expected("plain_answer").thought.startsWith((msg.reasoning_content ?? "").trim())).toBe(true);
    expect(res.usage!.completion_tokens).toBe(6);
    expect(res.usage!.completion_tokens_details!.reasoning_tokens).toBe(6);
  }, 60_000);

  test("a call cut by max_tokens: 200 with finish_reason length, never a 500", async () => {
    const full = await client.chat.completions.create(body("tool_call"));
    const cut = full.usage!.completion_tokens - 4;
    const res = await client.chat.completions.create(body("tool_call", { max_tokens: cut }));
    expect(res.choices[0]!.finish_reason).toBe("length");
    expect(res.usage!.completion_tokens).toBe(cut);
    const s = await stream(client, body("tool_call", { max_tokens: cut }));
    expect(s.finish).toBe("length");
  }, 60_000);

  test("a tool result and the earlier turn's reasoning go back through the template; the answer uses the result", async () => {
    const res = await client.chat.completions.create(body("tool_result"));
    const msg = res.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
    expect(msg.content).toBe(expected("tool_result").rest);
    expect(msg.reasoning_content?.trim()).toBe(expected("tool_result").thought);
  }, 60_000);

  test("thinking off: reasoning_effort none (and chat_template_kwargs enable_thinking false) — no reasoning, the answer at once", async () => {
    for (const extra of [{ reasoning_effort: "none" }, { chat_template_kwargs: { enable_thinking: false } }] as object[]) {
      const res = await client.chat.completions.create({ ...body("no_thinking"), chat_template_kwargs: undefined, ...extra } as ChatCompletionCreateParamsNonStreaming);
      const msg = res.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
      expect(msg.reasoning_content ?? "").toBe("");
      expect(res.usage!.completion_tokens_details!.reasoning_tokens).toBe(0);
      expect(msg.content).toBe(expected("no_thinking").rest);
      expect(res.usage!.completion_tokens).toBe(replyTokens("no_thinking"));
    }
    // With thinking on (the default), the same model thinks first.
    const thinking = await client.chat.completions.create({ ...body("no_thinking"), chat_template_kwargs: undefined } as ChatCompletionCreateParamsNonStreaming);
    expect((thinking.choices[0]!.message as { reasoning_content?: string }).reasoning_content ?? "").toContain("capital of Italy");
  }, 60_000);
});
