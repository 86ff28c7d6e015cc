// Streaming a model's tool calls and thinking as they are written: the JSON call streamer (core),
// the MLX engine's reading of its worker's split output, and the llama.cpp engine's reading of
// node-llama-cpp's callbacks. Scripted output, no model.
import { describe, expect, test } from "bun:test";
import type { LlamaChatResponseChunk, Token } from "node-llama-cpp";
import type { GenerationEvent } from "../../src/core/events.ts";
import { trimAnswerWhitespace } from "../../src/core/answer-text.ts";
import { JsonCallStream } from "../../src/core/json-call-stream.ts";
import { withReasoningFormat } from "../../src/core/reasoning.ts";
import { ChatOutput } from "../../src/engines/llama/chat-output.ts";
import { MlxChatOutput } from "../../src/engines/mlx/chat-output.ts";
import type { WorkerReply } from "../../src/engines/mlx/protocol.ts";

function streamed(text: string, chunk: number) {
  const out: { name?: string; args: string[] } = { args: [] };
  const s = new JsonCallStream({ start: (name) => { out.name = name; }, args: (a) => out.args.push(a) });
  for (let i = 0; i < text.length; i += chunk) s.feed(text.slice(i, i + chunk));
  return { ...out, complete: s.complete, ok: s.ok };
}

describe("JSON tool calls stream while written", () => {
  const call = '\n{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2], "note": "a \\"}\\" b"}}\n';

  test("at any chunking the call starts with its name and the fragments concatenate to the arguments exactly", () => {
    for (const size of [1, 2, 3, 7, 1000]) {
      const r = streamed(call, size);
      expect(r.name).toBe("get_weather");
      expect(r.args.join("")).toBe('{"city": "Paris", "days": [1, 2], "note": "a \\"}\\" b"}');
      expect(JSON.parse(r.args.join(""))).toEqual({ city: "Paris", days: [1, 2], note: 'a "}" b' });
      expect(r.complete).toBe(true);
    }
    // One character at a time, arguments really go out in pieces as they arrive.
    expect(streamed(call, 1).args.length).toBeGreaterThan(10);
  });

  test("Llama 3's 'parameters', arguments as a JSON string, no arguments, and a call cut short", () => {
    const llama3 = streamed('{"name": "f", "parameters": {"x": 1}}', 4);
    expect(llama3).toMatchObject({ name: "f", complete: true });
    expect(llama3.args.join("")).toBe('{"x": 1}');
    expect(streamed('{"name": "f", "arguments": "{\\"x\\": 1}"}', 5)).toMatchObject({ name: "f", args: ['{"x": 1}'], complete: true });
    expect(streamed('{"name": "f"}', 2)).toMatchObject({ name: "f", args: [], complete: true });
    const cut = streamed('{"name": "f", "arguments": {"city": "Par', 3);
    expect(cut).toMatchObject({ name: "f", complete: false });
    expect(cut.args.join("")).toBe('{"city": "Par');
  });

  test("text that is not a JSON call is refused at once, and nothing starts", () => {
    const r = streamed("get_weather(city='Paris')", 3);
    expect(r.name).toBeUndefined();
    expect(r).toMatchObject({ args: [], ok: false, complete: false });
  });
});

const collect = () => {
  const events: GenerationEvent[] = [];
  return { events, emit: (e: GenerationEvent) => events.push(e) };
};
const deltas = (events: GenerationEvent[], index: number) =>
  events.filter((e): e is Extract<GenerationEvent, { type: "tool_call_delta" }> => e.type === "tool_call_delta" && e.index === index).map((e) => e.arguments).join("");

describe("MLX: the worker's split output as events", () => {
  const id = "g1";
  const json = { parser: "json_tools" };

  test("thinking, text and two JSON calls: each call starts named, arguments stream, ends; indexes count calls", () => {
    const { events, emit } = collect();
    const out = new MlxChatOutput(emit, json, { parallel: true, onExtraCall: () => { throw new Error("not expected"); } });
    const replies: WorkerReply[] = [
      { type: "reasoning", id, text: "The user wants weather." },
      { type: "tool_text", id, call: 0, text: '\n{"name": "get_weather", "argu' },
      { type: "tool_text", id, call: 0, text: 'ments": {"city": "Par' },
      { type: "tool_text", id, call: 0, text: 'is"}}\n' },
      { type: "tool_end", id, call: 0, cut: false, calls: [{ name: "get_weather", arguments: '{"city": "Paris"}' }], raw: "" },
      { type: "text", id, text: "\n" },
      { type: "tool_text", id, call: 1, text: '{"name": "get_time", "arguments": {}}' },
      { type: "tool_end", id, call: 1, cut: false, calls: [{ name: "get_time", arguments: "{}" }], raw: "" },
    ];
    replies.forEach(out.on);
    expect(events[0]).toEqual({ type: "reasoning", text: "The user wants weather." });
    expect(events.filter((e) => e.type === "tool_call_start").map((e) => [e.type === "tool_call_start" && e.index, e.type === "tool_call_start" && e.name])).toEqual([[0, "get_weather"], [1, "get_time"]]);
    expect(deltas(events, 0)).toBe('{"city": "Paris"}');
    expect(events.filter((e) => e.type === "tool_call_delta" && e.index === 0).length).toBeGreaterThan(1);
    expect(deltas(events, 1)).toBe("{}");
    expect(events.filter((e) => e.type === "tool_call_end").length).toBe(2);
    expect(out.toolCalls).toBe(2);
  });

  test("other families arrive whole from mlx-lm's parser when their block closes", () => {
    const { events, emit } = collect();
    const out = new MlxChatOutput(emit, { parser: "glm47" }, { parallel: true, onExtraCall: () => undefined });
    out.on({ type: "tool_text", id, call: 0, text: "get_weather\n<arg_key>city</arg_key><arg_value>Oslo</arg_value>" });
    expect(events).toEqual([]);
    out.on({ type: "tool_end", id, call: 0, cut: false, calls: [{ name: "get_weather", arguments: '{"city": "Oslo"}' }], raw: "" });
    expect(events.map((e) => e.type)).toEqual(["tool_call_start", "tool_call_delta", "tool_call_end"]);
    expect(deltas(events, 0)).toBe('{"city": "Oslo"}');
  });

  test("a block nobody can read comes back as the model's text, markers and all; parallel_tool_calls false ends generation at a second call", () => {
    const bad = collect();
    const out = new MlxChatOutput(bad.emit, { parser: "glm47" }, { parallel: true, onExtraCall: () => undefined });
    out.on({ type: "tool_text", id, call: 0, text: "oops" });
    out.on({ type: "tool_end", id, call: 0, cut: false, calls: null, raw: "<tool_call>oops</tool_call>" });
    expect(bad.events).toEqual([{ type: "text", text: "<tool_call>oops</tool_call>" }]);
    expect(out.toolCalls).toBe(0);

    const single = collect();
    let ended = 0;
    const one = new MlxChatOutput(single.emit, json, { parallel: false, onExtraCall: () => ended++ });
    one.on({ type: "tool_text", id, call: 0, text: '{"name": "a", "arguments": {}}' });
    one.on({ type: "tool_end", id, call: 0, cut: false, calls: [{ name: "a", arguments: "{}" }], raw: "" });
    one.on({ type: "tool_text", id, call: 1, text: '{"name": "b", "arguments": {"x": 1' });
    one.on({ type: "tool_end", id, call: 1, cut: true, calls: null, raw: '<tool_call>{"name": "b", "arguments": {"x": 1' });
    expect(ended).toBe(1);
    expect(single.events.filter((e) => e.type === "tool_call_start").length).toBe(1);
    expect(single.events.some((e) => e.type === "text")).toBe(false);
  });
});

describe("llama.cpp: node-llama-cpp's callbacks as events", () => {
  const chunk = (text: string, segment?: "thought"): LlamaChatResponseChunk => (segment
    ? { type: "segment", segmentType: segment, text, tokens: [1 as Token, 2 as Token], segmentStartTime: undefined, segmentEndTime: undefined }
    : { type: undefined, segmentType: undefined, text, tokens: [1 as Token] }) as LlamaChatResponseChunk;

  test("thought segments are reasoning, their markers counted; params chunks stream the call", () => {
    const { events, emit } = collect();
    const out = new ChatOutput(emit, { forced: false, thoughtMarkers: { start: 2, end: 3 } });
    out.onResponseChunk({ ...chunk("", "thought"), tokens: [], segmentStartTime: new Date() } as LlamaChatResponseChunk);
    out.onResponseChunk(chunk("hmm", "thought"));
    out.onResponseChunk({ ...chunk("", "thought"), tokens: [], segmentEndTime: new Date() } as LlamaChatResponseChunk);
    out.onResponseChunk(chunk("Sure."));
    out.onFunctionCallParamsChunk({ callIndex: 0, functionName: "f", paramsChunk: '{"a":', done: false });
    out.onFunctionCallParamsChunk({ callIndex: 0, functionName: "f", paramsChunk: "1}", done: true });
    expect(out.finishCalls([{ functionName: "f", params: { a: 1 } }])).toBe(1);
    expect(events.map((e) => e.type)).toEqual(["reasoning", "text", "tool_call_start", "tool_call_delta", "tool_call_delta", "tool_call_end"]);
    expect(deltas(events, 0)).toBe('{"a":1}');
    // 2 thought tokens, and the markers around them (node-llama-cpp reports those in no chunk).
    expect(out.reasoningTokens).toBe(2 + 2 + 3);
  });

  test("a call without streamed parameters goes out whole; a call cut short ends as it stands", () => {
    const { events, emit } = collect();
    const out = new ChatOutput(emit, { forced: false });
    out.onFunctionCallParamsChunk({ callIndex: 1, functionName: "g", paramsChunk: '{"x": "ab', done: false });
    expect(out.finishCalls([{ functionName: "now", params: undefined }])).toBe(2);
    expect(events.map((e) => e.type)).toEqual(["tool_call_start", "tool_call_delta", "tool_call_start", "tool_call_delta", "tool_call_end", "tool_call_end"]);
    expect(deltas(events, 0)).toBe("{}");
    expect(deltas(events, 1)).toBe('{"x": "ab');
  });

  test("a forced call (grammar-constrained JSON) streams as a call, not as text", () => {
    const { events, emit } = collect();
    const out = new ChatOutput(emit, { forced: true });
    out.onResponseChunk(chunk('{"name": "f", "argum'));
    out.onResponseChunk(chunk('ents": {"a": '));
    out.onResponseChunk(chunk("1}}"));
    expect(out.endForced()).toBe(true);
    expect(events.map((e) => e.type)).toEqual(["tool_call_start", "tool_call_delta", "tool_call_delta", "tool_call_end"]);
    expect(deltas(events, 0)).toBe('{"a": 1}');
  });
});

describe("reasoning format", () => {
  test("inline wraps each thought once, closing it before whatever follows; none drops thoughts only", () => {
    const { events, emit } = collect();
    const inline = withReasoningFormat("inline", emit);
    for (const e of [{ type: "reasoning", text: "a" }, { type: "reasoning", text: "b" }, { type: "progress" }, { type: "text", text: "c" }] as GenerationEvent[]) inline(e);
    expect(events).toEqual([{ type: "text", text: "<think>a" }, { type: "text", text: "b" }, { type: "progress" }, { type: "text", text: "</think>" }, { type: "text", text: "c" }]);
    const dropped = collect();
    const none = withReasoningFormat("none", dropped.emit);
    none({ type: "reasoning", text: "a" });
    none({ type: "text", text: "c" });
    expect(dropped.events).toEqual([{ type: "text", text: "c" }]);
  });
});

describe("chat answer whitespace", () => {
  const run = (events: GenerationEvent[]) => {
    const { events: out, emit } = collect();
    const trim = trimAnswerWhitespace(emit);
    events.forEach(trim);
    return out;
  };
  const usage: GenerationEvent = { type: "usage", usage: { promptTokens: 1, completionTokens: 1 }, timings: { prefillMs: 0, decodeMs: 0, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0 } };

  test("the blank lines a template puts after a thought and between calls never become content", () => {
    const out = run([
      { type: "reasoning", text: "hmm" }, { type: "text", text: "\n\n" },
      { type: "tool_call_start", index: 0, id: "a", name: "f" }, { type: "tool_call_end", index: 0 },
      { type: "text", text: "\n" }, { type: "tool_call_start", index: 1, id: "b", name: "g" }, { type: "tool_call_end", index: 1 },
      { type: "text", text: "\n" }, usage, { type: "finish", reason: "tool_calls" },
    ]);
    expect(out.filter((e) => e.type === "text")).toEqual([]);
  });

  const texts = (out: GenerationEvent[]) => out.filter((e) => e.type === "text").map((e) => (e as { text: string }).text);

  test("an answer after a thought loses its leading blank lines only; inner and trailing whitespace stay, held until text follows", () => {
    const out = run([{ type: "reasoning", text: "hmm" }, { type: "text", text: "\n\nIt is" }, { type: "text", text: " " }, { type: "text", text: "\n" }, { type: "text", text: "sunny " }, usage]);
    expect(texts(out)).toEqual(["It is", " \nsunny", " "]);
  });

  test("an answer that did not follow a thought is the model's text exactly, leading whitespace included", () => {
    const out = run([{ type: "text", text: "\tfound" }, { type: "text", text: "\t" }, { type: "text", text: "found\t" }, usage]);
    expect(texts(out).join("")).toBe("\tfound\tfound\t");
  });
});
