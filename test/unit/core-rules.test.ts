// The engine-agnostic rules of the inference core, without any engine.
import { describe, expect, test } from "bun:test";
import { Collector } from "../../src/core/collect.ts";
import { checkPromptLength, completionBudget } from "../../src/core/context.ts";
import { choiceSeeds, withSamplingDefaults } from "../../src/core/sampling.ts";
import { checkJsonReply, checkTools, cutShortNote, parseForcedCall, planChat } from "../../src/core/tools.ts";
import { ContextLengthExceededError, InvalidRequestError } from "../../src/errors.ts";

const user = [{ role: "user" as const, content: "hi" }];
const weather = { name: "weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } };
const time = { name: "time" };

function thrown(fn: () => unknown): InvalidRequestError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError);
    return err as InvalidRequestError;
  }
  throw new Error("did not throw");
}

describe("tool rules", () => {
  test("duplicate names, tool_choice without tools and an unknown forced tool are 400s naming the field", () => {
    expect(thrown(() => checkTools({ messages: user, tools: [weather, weather] })).param).toBe("tools[1].function.name");
    expect(thrown(() => checkTools({ messages: user, toolChoice: "required" })).param).toBe("tool_choice");
    expect(thrown(() => checkTools({ messages: user, tools: [weather], toolChoice: { name: "nope" } })).param).toBe("tool_choice.function.name");
    checkTools({ messages: user, toolChoice: "none" });
    checkTools({ messages: user, tools: [weather, time], toolChoice: { name: "time" } });
  });

  test("plans: plain, JSON, auto tools, forced (one tool or a choice), and the response_format conflicts", () => {
    expect(planChat({ messages: user })).toEqual({ mode: "text" });
    expect(planChat({ messages: user, responseFormat: { type: "text" } })).toEqual({ mode: "text" });
    expect(planChat({ messages: user, responseFormat: { type: "json_object" } })).toEqual({ mode: "text", format: { type: "json_object" } });
    expect(planChat({ messages: user, tools: [weather] })).toEqual({ mode: "tools", tools: [weather] });
    expect(planChat({ messages: user, tools: [weather], toolChoice: "none" })).toEqual({ mode: "text" });

    const one = planChat({ messages: user, tools: [weather, time], toolChoice: { name: "weather" } });
    if (one.mode !== "forced") throw new Error("not forced");
    expect(one.tools).toEqual([weather]);
    expect(one.schema.properties).toEqual({ name: { const: "weather" }, arguments: weather.parameters });
    expect(one.preamble).toContain('"name": "weather"');
    const any = planChat({ messages: user, tools: [weather, time], toolChoice: "required" });
    if (any.mode !== "forced") throw new Error("not forced");
    expect((any.schema.oneOf as unknown[]).length).toBe(2);

    expect(thrown(() => planChat({ messages: user, tools: [weather], toolChoice: "required", responseFormat: { type: "json_object" } })).param).toBe("response_format");
    expect(thrown(() => planChat({ messages: user, tools: [weather], responseFormat: { type: "json_object" } })).message).toContain("cannot be combined with tools");
  });

  test("a forced reply is parsed and checked against the tool's schema", () => {
    const ok = parseForcedCall('{"name":"weather","arguments":{"city":"Oslo"}}', [weather], "");
    expect("call" in ok && ok.call.name === "weather" && JSON.parse(ok.call.arguments)).toEqual({ city: "Oslo" });
    expect("call" in ok && ok.call.id).toMatch(/^call_/);
    expect(parseForcedCall('{"name":"weather","argu', [weather], cutShortNote("length", 7))).toEqual({
      problem: `the model's tool call is not complete JSON (generation stopped at max_tokens after 7 tokens): "{\\"name\\":\\"weather\\",\\"argu"`,
    });
    expect(parseForcedCall('{"name":"time","arguments":{}}', [weather], "")).toMatchObject({ problem: expect.stringContaining("not one of the allowed tools (weather)") });
    expect(parseForcedCall('{"name":"weather","arguments":{}}', [weather], "")).toMatchObject({ problem: expect.stringContaining("missing required property 'city'") });
    // No arguments at all is an empty object, which a tool without parameters accepts.
    expect(parseForcedCall('{"name":"time"}', [time], "")).toMatchObject({ call: { name: "time", arguments: "{}" } });
  });

  test("JSON replies are checked for json_object and json_schema", () => {
    expect(checkJsonReply('{"a":1}', { type: "json_object" }, "")).toBeUndefined();
    expect(checkJsonReply("[1]", { type: "json_object" }, "")).toContain("not an object");
    expect(checkJsonReply("{", { type: "json_object" }, cutShortNote("length", 3))).toContain("not valid JSON (generation stopped at max_tokens after 3 tokens)");
    expect(checkJsonReply('{"a":"x"}', { type: "json_schema", schema: { type: "object", properties: { a: { type: "number" } } } }, "")).toContain("$.a: expected number");
  });
});

describe("context contract", () => {
  test("the prompt must leave room; max_tokens beyond the room left is cut to it, not refused", () => {
    expect(completionBudget(10, 20, 100, "messages")).toBe(20);
    expect(completionBudget(10, undefined, 100, "prompt")).toBe(90);
    expect(completionBudget(90, 32000, 100, "messages")).toBe(10);
    const over = (() => { try { completionBudget(100, 20, 100, "messages"); } catch (e) { return e as ContextLengthExceededError; } })()!;
    expect(over).toBeInstanceOf(ContextLengthExceededError);
    expect(over.message).toBe("This model's maximum context length is 100 tokens. However, your messages have 100 tokens, leaving no room for a completion. Shorten the input.");
    expect(() => completionBudget(100, undefined, 100, "prompt")).toThrow("your prompt has 100 tokens, leaving no room for a completion");
  });
});

describe("sampling defaults", () => {
  test("one set for every engine; given values win", () => {
    expect(withSamplingDefaults({})).toMatchObject({ temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 });
    expect(withSamplingDefaults({ temperature: 0, topK: 1, seed: 3 })).toMatchObject({ temperature: 0, topK: 1, topP: 0.95, seed: 3 });
  });

  test("a request without a seed gets a fresh one from the OS, not the clock", () => {
    const seeds = new Set(Array.from({ length: 50 }, () => withSamplingDefaults({}).seed));
    expect(seeds.size).toBe(50);
    for (const s of seeds) expect(Number.isInteger(s) && s >= 0 && s < 2 ** 32).toBe(true);
  });

  test("client seeds map onto unsigned 32 bits; choices of a seeded request get seeds derived from it", () => {
    expect(withSamplingDefaults({ seed: -1 }).seed).toBe(2 ** 32 - 1);
    expect(withSamplingDefaults({ seed: 2 ** 40 + 5 }).seed).toBe(5);
    expect(choiceSeeds(7, 3)).toEqual(choiceSeeds(7, 3));
    expect(choiceSeeds(7, 3)[0]).toBe(7);
    expect(new Set(choiceSeeds(7, 3)).size).toBe(3);
    expect(choiceSeeds(undefined, 2)).toEqual([undefined, undefined]);
  });
});

describe("collector", () => {
  test("folds text, reasoning, tool-call fragments, usage and finish; an error event is thrown", () => {
    const c = new Collector();
    c.add({ type: "progress" });
    c.add({ type: "reasoning", text: "hmm" });
    c.add({ type: "text", text: "Hel" });
    c.add({ type: "text", text: "lo" });
    c.add({ type: "tool_call_start", index: 0, id: "call_1", name: "weather" });
    c.add({ type: "tool_call_delta", index: 0, arguments: '{"city":' });
    c.add({ type: "tool_call_delta", index: 0, arguments: '"Oslo"}' });
    c.add({ type: "tool_call_end", index: 0 });
    c.add({ type: "usage", usage: { promptTokens: 5, completionTokens: 4 }, timings: { prefillMs: 1, decodeMs: 2, prefillTokensPerSecond: 5000, decodeTokensPerSecond: 1500 } });
    c.add({ type: "finish", reason: "tool_calls" });
    expect(c.result()).toMatchObject({
      text: "Hello", reasoning: "hmm", finishReason: "tool_calls", usage: { promptTokens: 5, completionTokens: 4 },
      toolCalls: [{ id: "call_1", name: "weather", arguments: '{"city":"Oslo"}' }],
    });
    const failed = new Collector();
    failed.add({ type: "text", text: "x" });
    failed.add({ type: "error", error: new InvalidRequestError("boom") });
    expect(() => failed.result()).toThrow("boom");
  });
});

describe("checkPromptLength: a prompt that cannot fit is refused without blocking the event loop", () => {
  // One token per space-separated word, as a stand-in for a real tokenizer.
  const words = (text: string) => text.split(" ").filter(Boolean).length;
  const prose = (n: number) => "lorem ".repeat(n);

  test("short prompts are not counted at all; long ones that fit pass", async () => {
    let calls = 0;
    await checkPromptLength([prose(100)], (t) => { calls++; return words(t); }, 10, "messages");
    expect(calls).toBe(0);
    await checkPromptLength([prose(20_000), prose(20_000)], words, 40_000, "messages");
  });

  test("counting stops at the first chunk that proves the prompt too long, with a context_length_exceeded naming the field", async () => {
    let counted = 0;
    const err = await checkPromptLength([prose(2_000_000)], (t) => { counted += t.length; return words(t); }, 10_000, "prompt").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContextLengthExceededError);
    expect((err as ContextLengthExceededError).param).toBe("prompt");
    expect(counted).toBeLessThan(200_000);
  });

  test("other work runs between chunks: a timer due now fires before a long count ends", async () => {
    let fired = false;
    setTimeout(() => { fired = true; }, 0);
    let firedDuringCount = false;
    await checkPromptLength([prose(200_000)], (t) => { if (fired) firedDuringCount = true; return words(t); }, 1_000_000, "messages");
    expect(firedDuringCount).toBe(true);
  });

  test("chunk boundaries never split a surrogate pair nor make a fitting prompt fail", async () => {
    const emoji = "😀".repeat(100_000);
    const seen: string[] = [];
    await checkPromptLength([emoji], (t) => { seen.push(t); return [...t].length; }, 100_000, "messages");
    expect(seen.length).toBeGreaterThan(1);
    for (const piece of seen) expect(piece.isWellFormed()).toBe(true);
    expect(seen.join("")).toBe(emoji);
  });
});
