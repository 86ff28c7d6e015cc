// Stored responses of the Responses adapter on the FakeEngine: previous_response_id, GET, DELETE,
// input_items, store false, the count/size/age bounds; and the HTTP contract it shares with chat
// (cancellation, OpenAPI docs).
import { describe, expect, test } from "bun:test";
import type { ChatGeneration } from "../../src/core/request.ts";
import { fakeApp } from "../fakes/fake-app.ts";
import type { Script, Step } from "../fakes/fake-engine.ts";
import { events, expectError, json, lastChat, type Json } from "../helpers/responses.ts";

const steps = (...s: Step[]): Script => ({ steps: s });
const weather = { type: "function", name: "get_weather", description: "Weather of a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } };

describe("the HTTP contract shared with chat", () => {
  test("a streamed response aborted by its client stops the engine and frees the slot; nothing is stored", async () => {
    await using f = fakeApp([{ id: "m", stepMs: 5, script: () => steps(...Array.from({ length: 1000 }, () => ({ text: "t" }))) }], { parallel: 1 });
    const leave = new AbortController();
    const res = await f.post("/v1/responses", { model: "m", input: "go", stream: true }, { signal: leave.signal });
    const reader = res.body!.getReader();
    await reader.read();
    expect(f.engine.model("m").running).toBe(1);
    leave.abort();
    await reader.cancel().catch(() => undefined);
    const until = async (what: () => Promise<boolean> | boolean) => {
      const deadline = Date.now() + 1000;
      while (!(await what())) {
        if (Date.now() > deadline) throw new Error("timed out");
        await Bun.sleep(5);
      }
    };
    await until(() => f.engine.model("m").running === 0);
    await until(async () => (await f.scheduler.get("m")).running === 0);
    expect(f.responses.ids()).toEqual([]);
  });

  test("the routes and the request body are in the OpenAPI docs", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const doc = await json(await f.request("/docs/json"));
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/responses", "/v1/responses/{id}", "/v1/responses/{id}/input_items"]));
    const body = doc.paths["/v1/responses"].post.requestBody.content["application/json"].schema;
    expect(Object.keys(body.properties)).toEqual(expect.arrayContaining(["model", "input", "instructions", "tools", "tool_choice", "text", "reasoning", "store", "previous_response_id"]));
  });
});

describe("stored responses", () => {
  test("previous_response_id continues: its input and output come first; instructions do not carry over", async () => {
    await using f = fakeApp([{ id: "m", script: (r) => ((r as ChatGeneration).messages.at(-1)!.role === "tool" ? steps({ text: "rainy" }) : steps({ reasoning: "call" }, { toolCall: { name: "get_weather", arguments: '{"city":"Paris"}', id: "call_w" } })) }]);
    const first = await json(await f.post("/v1/responses", { model: "m", instructions: "first rules", input: "weather in Paris?", tools: [weather] }));
    const second = await json(await f.post("/v1/responses", { model: "m", previous_response_id: first.id, tools: [weather], input: [{ type: "function_call_output", call_id: "call_w", output: '{"c":"rainy"}' }] }));
    expect(second).toMatchObject({ status: "completed", previous_response_id: first.id, output: [{ type: "message", content: [{ text: "rainy" }] }] });
    expect(lastChat(f).messages).toEqual([
      { role: "user", content: "weather in Paris?" },
      { role: "assistant", content: "", reasoning: "call", toolCalls: [{ id: "call_w", name: "get_weather", arguments: '{"city":"Paris"}' }] },
      { role: "tool", content: '{"c":"rainy"}', toolCallId: "call_w" },
    ]);
    // The chain goes on: the third turn sees all of it.
    await f.post("/v1/responses", { model: "m", previous_response_id: second.id, input: "thanks" });
    expect(lastChat(f).messages.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant", "user"]);
  });

  test("GET returns the stored response; input_items lists the conversation with ids, paged; DELETE removes it", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const first = await json(await f.post("/v1/responses", { model: "m", input: [{ role: "user", content: "a" }, { role: "user", content: "b", id: "msg_given" }, { role: "user", content: "c" }] }));
    expect(await json(await f.request(`/v1/responses/${first.id}`))).toEqual(first);
    const desc = await json(await f.request(`/v1/responses/${first.id}/input_items`));
    expect(desc).toMatchObject({ object: "list", has_more: false });
    expect(desc.data.map((i: Json) => i.content)).toEqual(["c", "b", "a"]);
    expect(desc.data[1].id).toBe("msg_given");
    expect(desc.data.every((i: Json) => /^msg_/.test(i.id))).toBe(true);
    expect(desc.first_id).toBe(desc.data[0].id);
    expect(desc.last_id).toBe(desc.data[2].id);
    const page = await json(await f.request(`/v1/responses/${first.id}/input_items?order=asc&limit=1&after=${desc.data[2].id}`));
    expect(page).toMatchObject({ data: [{ content: "b" }], has_more: true });
    await expectError(await f.request(`/v1/responses/${first.id}/input_items?limit=0`), 400, { param: "limit" });
    await expectError(await f.request(`/v1/responses/${first.id}/input_items?after=msg_nope`), 400, { param: "after" });
    const second = await json(await f.post("/v1/responses", { model: "m", previous_response_id: first.id, input: "d" }));
    const all = await json(await f.request(`/v1/responses/${second.id}/input_items?order=asc`));
    expect(all.data.map((i: Json) => i.type)).toEqual(["message", "message", "message", "message", "message"]);
    expect(all.data[3]).toEqual(first.output[0]);
    expect(await json(await f.request(`/v1/responses/${first.id}`, { method: "DELETE" }))).toEqual({ id: first.id, object: "response", deleted: true });
    await expectError(await f.request(`/v1/responses/${first.id}`), 404, { type: "invalid_request_error" });
    await expectError(await f.request(`/v1/responses/${first.id}`, { method: "DELETE" }), 404, {});
    await expectError(await f.request(`/v1/responses/${first.id}/input_items`), 404, {});
  });

  test("store false keeps nothing; an unknown previous_response_id is a 404 in OpenAI's shape", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const body = await json(await f.post("/v1/responses", { model: "m", input: "x", store: false }));
    expect(body.store).toBe(false);
    expect(f.responses.ids()).toEqual([]);
    await expectError(await f.request(`/v1/responses/${body.id}`), 404, {});
    await expectError(await f.post("/v1/responses", { model: "m", input: "x", previous_response_id: body.id }), 404, { param: "previous_response_id", code: "previous_response_not_found" });
    const streamed = await events(await f.post("/v1/responses", { model: "m", input: "x", store: false, stream: true }));
    expect(streamed.at(-1)!.response.store).toBe(false);
    expect(f.responses.ids()).toEqual([]);
  });

  test("a streamed response is stored whole once it completes", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const ev = await events(await f.post("/v1/responses", { model: "m", input: "x", stream: true }));
    const done = ev.at(-1)!.response;
    expect(await json(await f.request(`/v1/responses/${done.id}`))).toEqual(done);
  });

  test("bounds: the oldest go first past the count, the size, and the age", async () => {
    let now = 1_000_000;
    await using f = fakeApp([{ id: "m" }], { now: () => now, storedResponses: { count: 3, bytes: 1_000_000, ageMs: 10_000 } });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      now += 1;
      ids.push((await json(await f.post("/v1/responses", { model: "m", input: `turn ${i}` }))).id);
    }
    expect(f.responses.ids()).toEqual(ids.slice(2).reverse());
    now += 10_001;
    expect((await f.request(`/v1/responses/${ids[4]}`)).status).toBe(404);
  });

  test("bounds: past the byte budget the oldest go; one response larger than the budget is not kept", async () => {
    // Each of these responses takes a little under 1000 bytes: three fit in 3000, a fourth does not.
    await using f = fakeApp([{ id: "m" }], { storedResponses: { count: 100, bytes: 3_000 } });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await json(await f.post("/v1/responses", { model: "m", input: `turn ${i}` }))).id);
    expect(f.responses.ids()).toEqual(ids.slice(3).reverse());
    const big = await json(await f.post("/v1/responses", { model: "m", input: "y".repeat(10_000) }));
    expect(big.status).toBe("completed");
    expect(f.responses.ids()).not.toContain(big.id);
  });
});

