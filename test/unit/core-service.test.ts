// The core service on the FakeEngine: cancellation (queued, streaming, by unload) and the
// generation watchdog.
import { describe, expect, test } from "bun:test";
import { Collector } from "../../src/core/collect.ts";
import { MAX_STOP_LENGTH } from "../../src/core/stop.ts";
import type { GenerationEvent } from "../../src/core/events.ts";
import type { GenerationRequest } from "../../src/core/request.ts";
import { GenerationAbortedError, GenerationStalledError, LmxError, OverloadedError } from "../../src/errors.ts";
import { fakeApp, readSse } from "../fakes/fake-app.ts";
import type { Step } from "../fakes/fake-engine.ts";

const chat = (content: string, maxTokens?: number): GenerationRequest => ({ kind: "chat", messages: [{ role: "user", content }], maxTokens });
/** Steps chosen by the request's text, so one model serves several scripted cases. */
const byText = (scripts: Record<string, Step[]>) => (r: GenerationRequest) => ({ steps: scripts[r.kind === "chat" ? r.messages[0]!.content : r.prompt] ?? [{ text: "ok" }] });

/** Fails the test with a clear message instead of hanging until the runner's timeout. */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  return Promise.race([p, Bun.sleep(ms).then(() => { throw new Error(`${what}: still pending after ${ms} ms`); })]);
}

async function run(f: ReturnType<typeof fakeApp>, request: GenerationRequest, signal?: AbortSignal, onEvent?: (e: GenerationEvent) => void): Promise<{ events: GenerationEvent[]; error?: Error }> {
  const events: GenerationEvent[] = [];
  await f.core.generate("m", [request], (e) => { events.push(e); onEvent?.(e); }, signal);
  const last = events.at(-1);
  return { events, error: last?.type === "error" ? last.error : undefined };
}

describe("cancellation", () => {
  test("a request whose client leaves while queued never reaches the engine", async () => {
    await using f = fakeApp([{ id: "m", script: byText({ slow: [{ sleep: 100 }, { text: "x" }] }) }], { parallel: 1 });
    const first = run(f, chat("slow"));
    await Bun.sleep(10);
    const leave = new AbortController();
    const queued = run(f, chat("queued"), leave.signal);
    await Bun.sleep(10);
    expect((await f.scheduler.get("m")).queued).toBe(1);
    leave.abort();
    expect((await queued).error?.name).toBe("AbortedWhileQueuedError");
    expect((await f.scheduler.get("m")).queued).toBe(0);
    expect((await first).error).toBeUndefined();
    expect(f.engine.model("m").requests.map((r) => r.kind === "chat" && r.messages[0]!.content)).toEqual(["slow"]);
  });

  test("a client that leaves mid-stream stops the engine and frees the slot at once", async () => {
    await using f = fakeApp([{ id: "m", stepMs: 5, script: () => ({ steps: Array.from({ length: 1000 }, () => ({ text: "t" })) }) }], { parallel: 1 });
    const leave = new AbortController();
    const started = performance.now();
    const r = await run(f, chat("go"), leave.signal, (e) => { if (e.type === "text") leave.abort(); });
    expect(r.error).toBeInstanceOf(GenerationAbortedError);
    expect((r.error as LmxError).status).toBe(499);
    expect(performance.now() - started).toBeLessThan(500);
    expect(f.engine.model("m").running).toBe(0);
    expect((await f.scheduler.get("m")).running).toBe(0);
  });

  test("through HTTP: a streamed request aborted by its client ends its generation", async () => {
    await using f = fakeApp([{ id: "m", stepMs: 5, script: () => ({ steps: Array.from({ length: 1000 }, () => ({ text: "t" })) }) }], { parallel: 1 });
    const leave = new AbortController();
    const res = await f.post("/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "go" }], stream: true }, { signal: leave.signal });
    const reader = res.body!.getReader();
    await reader.read();
    expect(f.engine.model("m").running).toBe(1);
    leave.abort();
    await reader.cancel().catch(() => undefined);
    await within(1000, "engine to stop", (async () => { while (f.engine.model("m").running > 0) await Bun.sleep(5); })());
    await within(1000, "slot to free", (async () => { while ((await f.scheduler.get("m")).running > 0) await Bun.sleep(5); })());
  });

  test("unloading a model ends its running generations with a 503 that says to retry", async () => {
    await using f = fakeApp([{ id: "m", stepMs: 5, script: () => ({ steps: Array.from({ length: 1000 }, () => ({ text: "t" })) }) }]);
    let unloading: Promise<boolean> | undefined;
    const r = await run(f, chat("go"), undefined, (e) => { if (e.type === "text") unloading ??= f.scheduler.unload("m"); });
    expect(r.error).toBeInstanceOf(OverloadedError);
    expect(r.error!.message).toBe("model 'm' was unloaded while generating; retry");
    expect(await unloading!).toBe(true);
    expect(f.engine.unloads).toEqual(["m"]);
  });
});

describe("generation watchdog", () => {
  test("a generation that stalls fails with 504 generation_stalled naming the model and the bound, and frees its slot", async () => {
    await using f = fakeApp([{ id: "m", script: byText({ stall: [{ text: "a" }, { stall: true }] }) }], { parallel: 1, stallTimeoutMs: 50 });
    const r = await within(2000, "the stalled generation", run(f, chat("stall")));
    expect(r.events.map((e) => e.type)).toEqual(["text", "error"]);
    expect(r.error).toBeInstanceOf(GenerationStalledError);
    expect(r.error).toMatchObject({ status: 504, code: "generation_stalled", type: "server_error" });
    expect(r.error!.message).toContain("model 'm' made no progress for 0.05 s");
    // The engine was told to stop and the one slot is free for the next request.
    expect(f.engine.model("m").running).toBe(0);
    const next = new Collector();
    await within(2000, "the next request", f.core.generate("m", [chat("fine")], next.add));
    expect(next.result().text).toBe("ok");
  });

  test("over HTTP: 504 in OpenAI's shape when nothing was sent; an error event after streamed output", async () => {
    await using f = fakeApp([{ id: "m", script: byText({ quiet: [{ stall: true }], late: [{ text: "a" }, { stall: true }] }) }], { stallTimeoutMs: 50 });
    const res = await within(2000, "the request", f.post("/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "quiet" }] }));
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: object }).error).toMatchObject({ type: "server_error", code: "generation_stalled", param: null });
    const streamed = await within(2000, "the stream", f.post("/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "late" }], stream: true }).then(readSse));
    expect(streamed.done).toBe(true);
    expect(streamed.events.at(-1)).toMatchObject({ error: { code: "generation_stalled" } });
  });

  test("a long prefill that reports its batches is never stopped, however long it takes in total", async () => {
    const prefill: Step[] = Array.from({ length: 8 }, () => [{ sleep: 20 }, { progress: true }] as Step[]).flat();
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [...prefill, { text: "done" }] }) }], { stallTimeoutMs: 60 });
    const r = await run(f, chat("long prompt"));
    expect(r.error).toBeUndefined();
    expect(r.events.filter((e) => e.type === "progress").length).toBe(8);
    expect(r.events.at(-1)).toEqual({ type: "finish", reason: "stop" });
  });

  test("a wedged engine that ignores the abort: the client gets the error at once, the slot returns after a grace period", async () => {
    await using f = fakeApp([{ id: "m", script: byText({ wedge: [{ wedge: true }] }) }], { parallel: 1, stallTimeoutMs: 50 });
    const r = await within(2000, "the wedged generation", run(f, chat("wedge")));
    expect(r.error).toBeInstanceOf(GenerationStalledError);
    // Held for the grace period (the bound, here), in case the engine stops after all.
    expect((await f.scheduler.get("m")).running).toBe(1);
    await within(1000, "slot to free", (async () => { while ((await f.scheduler.get("m")).running > 0) await Bun.sleep(5); })());
    expect(f.engine.model("m").running).toBe(1);
    const next = new Collector();
    await within(2000, "the next request", f.core.generate("m", [chat("fine")], next.add));
    expect(next.result().text).toBe("ok");
    f.engine.model("m").release();
  });
});

describe("stop strings", () => {
  // An engine that would go on well past the stop string, which arrives split over three tokens.
  const words = ["Once", " upon", " a", " ti", "me", " <", "EN", "D>", " and", " then", " more", " text"];
  const longScript = () => ({ steps: [...words, ...Array.from({ length: 200 }, () => " more")].map((text) => ({ text })) });
  const spec = { id: "m", stepMs: 1, script: longScript };

  test("the reply ends before the stop, the engine is stopped early and finishes normally", async () => {
    await using f = fakeApp([spec]);
    const r = await run(f, { ...chat("go"), stop: ["never-there", " <END>"] });
    expect(r.error).toBeUndefined();
    const c = new Collector();
    for (const e of r.events) c.add(e);
    const res = c.result();
    expect(res.text).toBe("Once upon a time");
    expect(res.finishReason).toBe("stop");
    // Usage counts what the engine generated, the stop string's tokens included.
    expect(res.usage.completionTokens).toBeGreaterThanOrEqual(8);
    expect(res.usage.completionTokens).toBeLessThan(20);
    expect(f.engine.model("m").stoppedEarly).toBe(1);
    expect(r.events.filter((e) => e.type === "text").map((e) => e.type === "text" && e.text).join("")).not.toContain("<");
    expect(r.events.slice(-2).map((e) => e.type)).toEqual(["usage", "finish"]);
  });

  test("a stop the model never writes changes nothing: held text is flushed at the end", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "a <E" }, { text: "N" }] }) }]);
    const r = await run(f, { ...chat("go"), stop: [" <END>"] });
    const c = new Collector();
    for (const e of r.events) c.add(e);
    expect(c.result()).toMatchObject({ text: "a <EN", finishReason: "stop", usage: { completionTokens: 2 } });
    expect(f.engine.model("m").stoppedEarly).toBe(0);
  });

  test("a stop matched on the last token allowed finishes with 'stop', not 'length'", async () => {
    await using f = fakeApp([spec]);
    const r = await run(f, { ...chat("go", 8), stop: ["<END>"] });
    const c = new Collector();
    for (const e of r.events) c.add(e);
    expect(c.result()).toMatchObject({ text: "Once upon a time ", finishReason: "stop", usage: { completionTokens: 8 } });
  });

  test("through HTTP, streamed and not: only the text before the stop, finish_reason stop", async () => {
    await using f = fakeApp([spec]);
    const body = { model: "m", messages: [{ role: "user", content: "go" }], stop: "<END>" };
    const whole = (await (await f.post("/v1/chat/completions", body)).json()) as { choices: { message: { content: string }; finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(whole.choices[0]!.message.content).toBe("Once upon a time ");
    expect(whole.choices[0]!.finish_reason).toBe("stop");
    expect(whole.usage.completion_tokens).toBeLessThan(20);
    const { events, done } = await readSse(await f.post("/v1/chat/completions", { ...body, stream: true }));
    const chunks = events as { choices: { delta: { content?: string }; finish_reason: string | null }[] }[];
    expect(done).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("Once upon a time ");
    expect(chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean)).toEqual(["stop"]);
    expect(f.engine.model("m").stoppedEarly).toBe(2);

    const completion = (await (await f.post("/v1/completions", { model: "m", prompt: "go", stop: ["me <"] })).json()) as { choices: { text: string; finish_reason: string }[] };
    expect(completion.choices[0]).toMatchObject({ text: "Once upon a ti", finish_reason: "stop" });
  });

  test("stops apply to answer text, not to tool-call arguments; held text goes out before a call", async () => {
    const call = { name: "f", arguments: '{"q":"a <END> b"}', pieces: 4 };
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "see <E" }, { toolCall: call }] }) }]);
    const r = await run(f, { kind: "chat", messages: [{ role: "user", content: "go" }], tools: [{ name: "f" }], toolChoice: { name: "f" }, stop: ["<END>"] });
    const types = r.events.map((e) => e.type);
    expect(types.lastIndexOf("text")).toBeLessThan(types.indexOf("tool_call_start"));
    const c = new Collector();
    for (const e of r.events) c.add(e);
    expect(c.result()).toMatchObject({ text: "see <E", finishReason: "tool_calls", toolCalls: [{ name: "f", arguments: call.arguments }] });
    expect(f.engine.model("m").stoppedEarly).toBe(0);
  });

  test("an overlong stop string is a 400 naming the parameter, before any engine work", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const res = await f.post("/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "go" }], stop: ["ok", "x".repeat(MAX_STOP_LENGTH + 1)] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string; message: string } }).error).toMatchObject({ param: "stop", message: expect.stringContaining("stop[1]") });
    expect(f.engine.loads).toEqual([]);
    const ok = await f.post("/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "go" }], stop: ["x".repeat(MAX_STOP_LENGTH)] });
    expect(ok.status).toBe(200);
  });

  test("without stop strings, events pass untouched and the engine gets no stop signal", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const r = await run(f, chat("go"));
    expect(r.events.filter((e) => e.type === "text").map((e) => e.type === "text" && e.text)).toEqual(["Hello", " world"]);
    await run(f, { ...chat("go"), stop: ["zz"] });
    expect(f.engine.model("m").stopSignals.map((s) => s !== undefined)).toEqual([false, true]);
  });
});
