// Peers beyond generation, through the real app on the FakeEngine: proxied requests in /metrics,
// stored responses a peer holds (GET, input items, DELETE, previous_response_id go to it), and
// Ollama's /api/show and /api/ps for peers' models. "studio" is another fake LMX app, "flaky" a
// scripted OpenAI-compatible server (not LMX).
import { describe, expect, test } from "bun:test";
import { fakeApp, readSse } from "../fakes/fake-app.ts";
import type { FakeModelSpec } from "../fakes/fake-engine.ts";
import { sse } from "../fakes/sse.ts";
import { parseExposition } from "../helpers/exposition.ts";
import { HeldResponses } from "../../src/peers/held-responses.ts";
import { watchResponseId } from "../../src/peers/response-id.ts";
import { openDb } from "../../src/store/db.ts";

type Json = Record<string, any>;
type Flaky = (path: string, body: Json, signal: AbortSignal) => Promise<Response>;

const said = (text: string): Pick<FakeModelSpec, "script"> => ({ script: () => ({ steps: [{ text }] }) });
const never: Flaky = () => Promise.reject(new Error("not scripted"));
const chat = (model: string, extra: Json = {}) => ({ model, messages: [{ role: "user", content: "hi" }], ...extra });

async function setup(flaky: Flaky, opts: { local?: FakeModelSpec[]; routes?: Record<string, string>; memoryBudget?: number } = {}) {
  const studio = fakeApp([{ id: "big", ...said("from studio") }, { id: "shared", ...said("studio's shared") }]);
  let studioUp = true;
  const seen: { method: string; url: string; body: Json }[] = [];
  const fetch = async (url: string, init: RequestInit): Promise<Response> => {
    const u = new URL(url);
    const body = typeof init.body === "string" ? JSON.parse(init.body) as Json : {};
    seen.push({ method: init.method ?? "GET", url, body });
    if (u.host === "studio:1") {
      if (!studioUp) throw new Error("connect ECONNREFUSED");
      const headers = new Headers(init.headers);
      headers.set("host", "127.0.0.1");
      return studio.app.handle(new Request("http://127.0.0.1" + u.pathname + u.search, { ...init, headers }));
    }
    if (u.pathname === "/v1/models") return Response.json({ data: [{ id: "m" }] });
    return flaky(u.pathname, body, init.signal!);
  };
  const local = fakeApp(opts.local ?? [{ id: "qwen", ...said("from local") }, { id: "shared", ...said("local shared") }], {
    routes: opts.routes,
    memoryBudget: opts.memoryBudget,
    peers: { specs: [{ name: "studio", url: "http://studio:1" }, { name: "flaky", url: "http://flaky:2" }], fetch, firstByteMs: 300 },
  });
  await local.peers!.health.pollAll();
  return {
    local, studio, seen,
    setStudio: (up: boolean) => { studioUp = up; },
    scrape: async () => parseExposition(await (await local.request("/metrics")).text()),
    async [Symbol.asyncDispose]() {
      await local[Symbol.asyncDispose]();
      await studio[Symbol.asyncDispose]();
    },
  };
}


describe("/metrics for proxied requests", () => {
  test("count, time to first byte and duration per node; local requests are not counted there", async () => {
    await using s = await setup(never);
    // An answer's duration ends when its body has been passed on: each is read to its end.
    expect(((await (await s.local.post("/v1/chat/completions", chat("big"))).json()) as Json).choices[0].message.content).toBe("from studio");
    const streamed = await s.local.post("/v1/chat/completions", chat("big", { stream: true }));
    expect((await readSse(streamed)).done).toBe(true);
    expect(((await (await s.local.post("/api/chat", chat("big", { stream: false }))).json()) as Json).done).toBe(true);
    expect(((await (await s.local.post("/v1/chat/completions", chat("qwen"))).json()) as Json).model).toBe("qwen");
    const m = await s.scrape();
    const chatLabels = { node: "studio", api: "openai.chat" };
    expect(m.value("lmx_peer_requests_total", { ...chatLabels, status: "ok" })).toBe(2);
    expect(m.value("lmx_peer_time_to_first_byte_seconds_count", chatLabels)).toBe(2);
    expect(m.value("lmx_peer_request_duration_seconds_count", chatLabels)).toBe(2);
    expect(m.value("lmx_peer_requests_total", { node: "studio", api: "ollama.chat", status: "ok" })).toBe(1);
    expect(m.samples.filter((x) => x.name === "lmx_peer_requests_total").map((x) => x.labels.node)).not.toContain("local");
    // The peer's own counters saw the same requests (it is an LMX too).
    const studioSide = parseExposition(await (await s.studio.request("/metrics")).text());
    expect(studioSide.value("lmx_requests_total", { model: "big", api: "openai.chat", status: "ok" })).toBe(2);
  });

  test("an error answer counts under the peer's status, a cut stream as cut, a client gone as aborted", async () => {
    let mode: "400" | "cut" | "drip" = "400";
    await using s = await setup(async () => {
      if (mode === "400") return Response.json({ error: { message: "bad", type: "invalid_request_error", param: null, code: null } }, { status: 400 });
      if (mode === "cut") return sse(['data: {"choices":[{"delta":{"content":"par"}}]}\n\n'], 5, true);
      return sse(Array.from({ length: 100 }, () => 'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'), 20);
    });
    expect((await s.local.post("/v1/chat/completions", chat("m"))).status).toBe(400);
    mode = "cut";
    expect((await s.local.post("/v1/chat/completions", chat("m", { stream: true }))).text()).rejects.toThrow();
    mode = "drip";
    const client = new AbortController();
    const res = await s.local.request("/v1/chat/completions", { method: "POST", json: chat("m", { stream: true }), signal: client.signal });
    const reader = res.body!.getReader();
    await reader.read();
    client.abort();
    await reader.cancel().catch(() => undefined);
    const labels = (status: string) => ({ node: "flaky", api: "openai.chat", status });
    for (let i = 0; i < 100 && (await s.scrape()).value("lmx_peer_requests_total", labels("aborted")) === undefined; i++) await Bun.sleep(10);
    const m = await s.scrape();
    expect([m.value("lmx_peer_requests_total", labels("400")), m.value("lmx_peer_requests_total", labels("cut")), m.value("lmx_peer_requests_total", labels("aborted"))]).toEqual([1, 1, 1]);
    expect(m.value("lmx_peer_requests_total", labels("ok"))).toBeUndefined();
  });

  test("fallbacks by node and reason: refused (429/503), first-byte timeout, down, and a local model that cannot load", async () => {
    let answer: "503" | "429" | "slow" = "503";
    const local = [{ id: "huge", modelBytes: 10_000, ...said("never") }, { id: "small", modelBytes: 10, ...said("from small") }];
    await using s = await setup(async () => {
      if (answer === "slow") await Bun.sleep(1000);
      return new Response("busy", { status: answer === "429" ? 429 : 503 });
    }, { local, memoryBudget: 1000, routes: { coder: "flaky/m,studio/big", toPeer: "huge,big" } });
    const node = async (model: string) => {
      const res = await s.local.post("/v1/chat/completions", chat(model));
      await res.text();
      return res.headers.get("x-lmx-node");
    };
    for (const a of ["503", "429", "slow"] as const) {
      answer = a;
      expect(await node("coder")).toBe("studio");
    }
    expect(await node("toPeer")).toBe("studio");
    s.setStudio(false);
    answer = "503";
    expect((await s.local.post("/v1/chat/completions", chat("coder"))).status).toBe(503);
    expect((await s.local.post("/v1/chat/completions", chat("coder"))).status).toBe(503);
    const m = await s.scrape();
    const fell = (node: string, reason: string) => m.value("lmx_peer_fallbacks_total", { node, reason });
    // Two refusals before studio was down, two more after; then studio unreachable once, known down once.
    expect([fell("flaky", "refused"), fell("flaky", "first_byte_timeout"), fell("studio", "down"), fell("local", "refused")]).toEqual([4, 1, 2, 1]);
    expect(m.value("lmx_peer_requests_total", { node: "studio", api: "openai.chat", status: "ok" })).toBe(4);
  });
});

describe("stored responses a peer holds", () => {
  test("GET, input items and DELETE go to the peer that stored the response; then it is gone here too", async () => {
    await using s = await setup(never);
    const created = await s.local.post("/v1/responses", { model: "big", input: "hi" });
    expect(created.headers.get("x-lmx-node")).toBe("studio");
    const response = (await created.json()) as Json;
    expect(s.studio.responses.ids()).toEqual([response.id]);
    expect(s.local.responses.ids()).toEqual([]);
    const got = await s.local.request(`/v1/responses/${response.id}`);
    expect([got.status, got.headers.get("x-lmx-node")]).toEqual([200, "studio"]);
    expect(((await got.json()) as Json)).toEqual(response);
    const items = await s.local.request(`/v1/responses/${response.id}/input_items?order=asc&limit=1`);
    expect(((await items.json()) as Json)).toMatchObject({ object: "list", data: [{ type: "message", role: "user" }], has_more: false });
    expect(s.seen.at(-1)).toMatchObject({ method: "GET", url: `http://studio:1/v1/responses/${response.id}/input_items?order=asc&limit=1` });
    const deleted = await s.local.request(`/v1/responses/${response.id}`, { method: "DELETE" });
    expect([deleted.status, await deleted.json()]).toEqual([200, { id: response.id, object: "response", deleted: true }]);
    expect(s.studio.responses.ids()).toEqual([]);
    const tries = s.seen.length;
    const gone = await s.local.request(`/v1/responses/${response.id}`);
    expect([gone.status, gone.headers.get("x-lmx-node")]).toEqual([404, "local"]);
    expect(s.seen.length).toBe(tries);
    // Deleted on the peer itself: the peer's 404 says so once, then it is forgotten here.
    const other = (await (await s.local.post("/v1/responses", { model: "big", input: "hi" })).json()) as Json;
    expect((await s.studio.request(`/v1/responses/${other.id}`, { method: "DELETE" })).status).toBe(200);
    const peer404 = await s.local.request(`/v1/responses/${other.id}`);
    expect([peer404.status, peer404.headers.get("x-lmx-node")]).toEqual([404, "studio"]);
    expect(((await peer404.json()) as Json).error.message).toMatch(/^peer studio: No response found/);
    const asked = s.seen.length;
    expect((await s.local.request(`/v1/responses/${other.id}`)).headers.get("x-lmx-node")).toBe("local");
    expect(s.seen.length).toBe(asked);
  });

  test("a streamed response is remembered too; store: false is not; a down holder is a 503", async () => {
    await using s = await setup(never);
    const streamed = await s.local.post("/v1/responses", { model: "big", input: "hi", stream: true });
    const id = /"id":"(resp_\w+)"/.exec(await streamed.text())![1]!;
    expect((await s.local.request(`/v1/responses/${id}`)).headers.get("x-lmx-node")).toBe("studio");
    const unstored = (await (await s.local.post("/v1/responses", { model: "big", input: "hi", store: false })).json()) as Json;
    expect((await s.local.request(`/v1/responses/${unstored.id}`)).status).toBe(404);
    s.setStudio(false);
    await s.local.peers!.health.pollAll();
    const down = await s.local.request(`/v1/responses/${id}`);
    expect([down.status, down.headers.get("x-lmx-node")]).toEqual([503, "local"]);
    expect(((await down.json()) as Json).error).toMatchObject({ code: "peer_unavailable", message: expect.stringMatching(/response 'resp_\w+' is unavailable now: peer studio is down/) });
  });

  test("previous_response_id goes to the peer that holds it, past a chain's earlier targets; a model it lacks is a 400", async () => {
    await using s = await setup(async () => new Response("busy", { status: 503 }), { routes: { coder: "flaky/m,big" } });
    const first = (await (await s.local.post("/v1/responses", { model: "coder", input: "hi" })).json()) as Json;
    const tried = s.seen.length;
    const next = await s.local.post("/v1/responses", { model: "coder", input: "and then?", previous_response_id: first.id });
    expect(next.headers.get("x-lmx-node")).toBe("studio");
    const continued = (await next.json()) as Json;
    expect(continued.previous_response_id).toBe(first.id);
    // Straight to studio: flaky was not asked.
    expect(s.seen.slice(tried).map((x) => x.url)).toEqual(["http://studio:1/v1/responses"]);
    // Studio's input items hold both turns: it continued its own response.
    const items = (await (await s.local.request(`/v1/responses/${continued.id}/input_items?order=asc`)).json()) as Json;
    expect(items.data.map((i: Json) => i.role)).toEqual(["user", "assistant", "user"]);
    const wrong = await s.local.post("/v1/responses", { model: "qwen", input: "x", previous_response_id: first.id });
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as Json).error).toMatchObject({ param: "previous_response_id", message: expect.stringMatching(/stored on peer studio/) });
  });
});

describe("Ollama /api/show and /api/ps for peers' models", () => {
  test("/api/show of an LMX peer's model is the peer's answer; a non-LMX peer's is a 501 in Ollama's shape", async () => {
    await using s = await setup(never);
    const direct = (await (await s.studio.post("/api/show", { model: "shared" })).json()) as Json;
    const shown = await s.local.post("/api/show", { name: "studio/shared" });
    expect([shown.status, shown.headers.get("x-lmx-node")]).toEqual([200, "studio"]);
    expect(((await shown.json()) as Json)).toEqual(direct);
    expect(s.seen.at(-1)).toMatchObject({ url: "http://studio:1/api/show", body: { model: "shared" } });
    // Local first: "shared" is this server's own.
    expect((await s.local.post("/api/show", { model: "shared" })).headers.get("x-lmx-node")).toBe("local");
    const notLmx = await s.local.post("/api/show", { model: "m" });
    expect(notLmx.status).toBe(501);
    expect(((await notLmx.json()) as Json)).toEqual({ error: expect.stringMatching(/peer flaky, which is not an LMX server/) });
    const missing = await s.local.post("/api/show", { model: "studio/nope" });
    expect([missing.status, ((await missing.json()) as Json).error]).toEqual([404, expect.stringMatching(/peer studio: model "nope" not found/)]);
    s.setStudio(false);
    await s.local.peers!.health.pollAll();
    expect((await s.local.post("/api/show", { model: "big" })).status).toBe(503);
  });

  test("/api/ps lists models loaded on LMX peers with their node, under the ids that address them here", async () => {
    await using s = await setup(never);
    expect((await s.local.post("/admin/v1/models/qwen/load", {})).status).toBe(200);
    expect((await s.studio.post("/admin/v1/models/shared/load", {})).status).toBe(200);
    expect((await s.studio.post("/admin/v1/models/big/load", {})).status).toBe(200);
    const ps = (await (await s.local.request("/api/ps")).json()) as Json;
    // In the peer's own order (its most recently loaded first).
    expect(ps.models.map((m: Json) => [m.name, m.node, m.remote_model ?? null])).toEqual([
      ["qwen", "local", null], ["studio/shared", "studio", "shared"], ["big", "studio", "big"],
    ]);
    expect(ps.models[2]).toMatchObject({ context_length: 1024, details: { format: "gguf" } });
    // Each LMX peer is asked for its own loaded models only; the non-LMX peer is not asked.
    expect(s.seen.filter((x) => x.url.includes("/api/ps")).map((x) => x.url)).toEqual(["http://studio:1/api/ps?node=local"]);
    const own = (await (await s.local.request("/api/ps?node=local")).json()) as Json;
    expect(own.models.map((m: Json) => m.name)).toEqual(["qwen"]);
    expect((await s.local.request("/api/ps?node=elsewhere")).status).toBe(400);
    s.setStudio(false);
    await s.local.peers!.health.pollAll();
    expect(((await (await s.local.request("/api/ps")).json()) as Json).models.map((m: Json) => m.name)).toEqual(["qwen"]);
  });
});

describe("which peer holds a response", () => {
  test("bounded by count and age, oldest first; ids that are no response id are not kept", () => {
    let now = 1000;
    const held = new HeldResponses(openDb(":memory:"), { count: 2, ageMs: 100 }, () => now);
    held.remember("resp_a", "studio");
    now += 1;
    held.remember("resp_b", "gpu");
    now += 1;
    held.remember("resp_c", "studio");
    expect([held.holder("resp_a"), held.holder("resp_b"), held.holder("resp_c")]).toEqual([undefined, "gpu", "studio"]);
    held.remember("../x", "studio");
    held.remember("x".repeat(300), "studio");
    expect([held.holder("../x"), held.holder("x".repeat(300))]).toEqual([undefined, undefined]);
    now += 101;
    expect(held.holder("resp_c")).toBeUndefined();
    held.remember("resp_d", "gpu");
    held.forget("resp_d");
    expect(held.holder("resp_d")).toBeUndefined();
    const none = new HeldResponses(openDb(":memory:"), { count: 0, ageMs: 100 });
    none.remember("resp_e", "studio");
    expect(none.holder("resp_e")).toBeUndefined();
  });

  test("the id is read from an answer passing through, split across chunks, only near its start", async () => {
    const pieces = (chunks: string[]) => new ReadableStream<Uint8Array>({
      start(c) {
        for (const chunk of chunks) c.enqueue(new TextEncoder().encode(chunk));
        c.close();
      },
    });
    const found: string[] = [];
    const split = watchResponseId(pieces(['event: response.created\ndata: {"type":"response.created","response":{"i', 'd":"resp_1', '23","object":"response"}}\n\n', '{"id":"resp_later"}']), (id) => found.push(id));
    expect(await new Response(split).text()).toContain("resp_later");
    expect(found).toEqual(["resp_123"]);
    const late = watchResponseId(pieces(["x".repeat(70 * 1024), '{"id":"resp_far"}']), (id) => found.push(id));
    expect((await new Response(late).text()).length).toBe(70 * 1024 + 17);
    expect(found).toEqual(["resp_123"]);
  });
});
