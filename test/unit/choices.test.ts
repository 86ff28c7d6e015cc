// n choices in the core (parallel lanes, one error) and the OpenAI logprobs shapes, on the FakeEngine.
import { describe, expect, test } from "bun:test";
import type { GenerationEvent, TokenLogprob } from "../../src/core/events.ts";
import type { GenerationRequest } from "../../src/core/request.ts";
import { completionLogprobs, keptLogprobs } from "../../src/api/openai/format.ts";
import { fakeApp } from "../fakes/fake-app.ts";

const chat = (content: string): GenerationRequest => ({ kind: "chat", messages: [{ role: "user", content }] });

describe("generateParallel", () => {
  test("runs the lanes side by side, each on its own sequence", async () => {
    await using f = fakeApp([{ id: "m", stepMs: 20, script: () => ({ steps: [{ text: "a" }, { text: "b" }, { text: "c" }] }) }], { parallel: 3 });
    const events: [GenerationEvent, number][] = [];
    const started = performance.now();
    await f.core.generateParallel("m", [chat("x"), chat("x"), chat("x")], 3, (e, i) => events.push([e, i]));
    // One after another would take three times as long.
    expect(performance.now() - started).toBeLessThan(3 * 3 * 20);
    for (const i of [0, 1, 2]) expect(events.filter(([e, j]) => j === i && e.type === "finish")).toHaveLength(1);
  });

  test("the first failure aborts the other lanes and is the only error", async () => {
    await using f = fakeApp([{
      id: "m", stepMs: 5,
      script: (r) => ({ steps: r.kind === "chat" && r.messages[0]!.content === "bad" ? [{ fail: "boom" }] : Array.from({ length: 200 }, () => ({ text: "t" })) }),
    }], { parallel: 2 });
    const events: [GenerationEvent, number][] = [];
    const started = performance.now();
    await f.core.generateParallel("m", [chat("good"), chat("bad")], 2, (e, i) => events.push([e, i]));
    const errors = events.filter(([e]) => e.type === "error");
    expect(errors).toHaveLength(1);
    expect(errors[0]![1]).toBe(1);
    expect(performance.now() - started).toBeLessThan(500);
    expect(f.engine.model("m").running).toBe(0);
  });
});

const lp = (token: string, logprob: number | null, top: [string, number][] = []): TokenLogprob => ({ token, logprob, top: top.map(([t, l]) => ({ token: t, logprob: l })) });

describe("logprobs shapes", () => {
  test("a stop string's cut drops the tokens past the text; tokens that do not spell the text are left alone", () => {
    const tokens = [lp(" a", -1), lp(" b", -1), lp("STOP", -1), lp(" c", -1)];
    expect(keptLogprobs(tokens, " a b").map((t) => t.token)).toEqual([" a", " b"]);
    expect(keptLogprobs(tokens, " a b").length).toBe(2);
    expect(keptLogprobs(tokens, "something else")).toBe(tokens);
  });

  test("legacy completions: dict by text (likeliest wins a tie of texts, odd keys are plain keys), offsets, echo's null", () => {
    const out = completionLogprobs([lp("Hi", null), lp(" there", -0.5, [[" there", -0.5], ["__proto__", -1], [" there", -2]])]);
    expect(out.tokens).toEqual(["Hi", " there"]);
    expect(out.token_logprobs).toEqual([null, -0.5]);
    expect(out.text_offset).toEqual([0, 2]);
    expect(out.top_logprobs[0]).toBeNull();
    expect(JSON.stringify(out.top_logprobs[1])).toBe('{" there":-0.5,"__proto__":-1}');
  });
});
