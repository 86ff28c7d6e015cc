// Peers through the real app on the FakeEngine: a second fake app is the peer LMX ("studio"), a
// scripted server the peer that fails ("flaky"). Listing, proxying on every API, fallback chains,
// the fast 503 for a down peer, and /admin/v1/peers.
import { describe, expect, test } from "bun:test";
import { fakeApp, readSse } from "../fakes/fake-app.ts";
import type { FakeModelSpec } from "../fakes/fake-engine.ts";
import { sse } from "../fakes/sse.ts";

type Json = Record<string, any>;

const said = (text: string): Pick<FakeModelSpec, "script"> => ({ script: () => ({ steps: [{ text }] }) });

type Flaky = (path: string, body: Json, signal: AbortSignal) => Promise<Response>;

/** A local app with peers "studio" (another fake LMX) and "flaky" (scripted by `flaky`). */
async function setup(flaky: Flaky, opts: { local?: FakeModelSpec[]; routes?: Record<string, string>; memoryBudget?: number } = {}) {
  const studio = fakeApp([{ id: "big", ...said("from studio") }, { id: "shared", ...said("studio's shared") }]);
  let studioUp = true;
  const seen: { url: string; body: Json; auth: string | null }[] = [];
  const fetch = async (url: string, init: RequestInit): Promise<Response> => {
    const u = new URL(url);
    const body = typeof init.body === "string" ? JSON.parse(init.body) as Json : {};
    seen.push({ url, body, auth: new Headers(init.headers).get("authorization") });
    if (u.host === "studio:1") {
      if (!studioUp) throw new Error("connect ECONNREFUSED");
      const headers = new Headers(init.headers);
      headers.set("host", "127.0.0.1");
      return studio.app.handle(new Request("http://127.0.0.1" + u.pathname, { ...init, headers }));
    }
    if (u.pathname === "/v1/models") return Response.json({ data: [{ id: "m" }] });
    return flaky(u.pathname, body, init.signal!);
  };
  const local = fakeApp(opts.local ?? [{ id: "qwen", ...said("from local") }, { id: "shared", ...said("local shared") }], {
    routes: opts.routes,
    memoryBudget: opts.memoryBudget,
    peers: { specs: [{ name: "studio", url: "http://studio:1/v1", apiKey: "env:STUDIO_KEY" }, { name: "flaky", url: "http://flaky:2" }], fetch, env: { STUDIO_KEY: "sk-studio" }, firstByteMs: 300 },
  });
  await local.peers!.health.pollAll();
  return {
    local, studio, seen,
    setStudio: (up: boolean) => { studioUp = up; },
    async [Symbol.asyncDispose]() {
      await local[Symbol.asyncDispose]();
      await studio[Symbol.asyncDispose]();
    },
  };
}

const chat = (model: string, extra: Json = {}) => ({ model, messages: [{ role: "user", content: "hi" }], ...extra });
const never: Flaky = () => Promise.reject(new Error("not scripted"));

describe("listing", () => {
  test("/v1/models: local models with node local, peer models with their node; a clash is PEER/id", async () => {
    await using s = await setup(never);
    const { data } = (await (await s.local.request("/v1/models")).json()) as Json;
    expect(data.map((m: Json) => [m.id, m.node, m.state])).toEqual([
      ["qwen", "local", "unloaded"], ["shared", "local", "unloaded"],
      ["m", "flaky", "available"], ["big", "studio", "available"], ["studio/shared", "studio", "available"],
    ]);
    expect(((await (await s.local.request("/v1/models/studio/shared")).json()) as Json)).toMatchObject({ id: "studio/shared", node: "studio" });
    // Ollama clients list models with /api/tags: peer models that are up come after the local ones, marked remote.
    const tags = (await (await s.local.request("/api/tags")).json()) as Json;
    expect(tags.models.map((m: Json) => [m.name, m.remote_host ?? null, m.remote_model ?? null])).toEqual([
      ["qwen", null, null], ["shared", null, null], ["m", "flaky", "m"], ["big", "studio", "big"], ["studio/shared", "studio", "shared"],
    ]);
    s.setStudio(false);
    await s.local.post("/v1/chat/completions", chat("big"));
    expect(((await (await s.local.request("/api/tags")).json()) as Json).models.map((m: Json) => m.name)).toEqual(["qwen", "shared", "m"]);
  });
});

describe("proxying", () => {
  test("chat, streamed and not, answers from the peer with x-lmx-node; local answers say local", async () => {
    await using s = await setup(never);
    const res = await s.local.post("/v1/chat/completions", chat("big"));
    expect(res.headers.get("x-lmx-node")).toBe("studio");
    expect(((await res.json()) as Json).choices[0].message.content).toBe("from studio");
    const streamed = await s.local.post("/v1/chat/completions", chat("studio/shared", { stream: true }));
    expect(streamed.headers.get("content-type")).toMatch(/text\/event-stream/);
    const { events, done } = await readSse(streamed);
    expect(done).toBe(true);
    expect(events.map((e: any) => e.choices[0]?.delta?.content ?? "").join("")).toBe("studio's shared");
    // The peer's own id goes upstream, with the peer's key.
    expect(s.seen.at(-1)).toMatchObject({ url: "http://studio:1/v1/chat/completions", body: { model: "shared" }, auth: "Bearer sk-studio" });
    const local = await s.local.post("/v1/chat/completions", chat("shared"));
    expect(local.headers.get("x-lmx-node")).toBe("local");
    expect((await s.local.request("/v1/models")).headers.get("x-lmx-node")).toBe("local");
    const invalid = await s.local.post("/v1/chat/completions", { model: "big" });
    expect([invalid.status, invalid.headers.get("x-lmx-node")]).toEqual([400, "local"]);
    expect(((await local.json()) as Json).choices[0].message.content).toBe("local shared");
  });

  test("the body goes upstream as the client sent it, fields this server does not know included", async () => {
    await using s = await setup(async () => Response.json({ ok: true }));
    await s.local.post("/v1/chat/completions?beta=true", chat("m", { vendor_option: { x: 1 } }));
    expect(s.seen.at(-1)).toMatchObject({ url: "http://flaky:2/v1/chat/completions?beta=true", body: { model: "m", vendor_option: { x: 1 } } });
  });

  test("Completions, Embeddings, Anthropic Messages and Ollama chat answer in their own shapes", async () => {
    await using s = await setup(never);
    const completion = (await (await s.local.post("/v1/completions", { model: "big", prompt: "hi" })).json()) as Json;
    expect(completion.choices[0].text).toBe("from studio");
    const msg = await s.local.post("/v1/messages", { model: "big", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
    expect(msg.headers.get("x-lmx-node")).toBe("studio");
    expect(((await msg.json()) as Json).content).toEqual([{ type: "text", text: "from studio" }]);
    const ollama = await s.local.post("/api/chat", { model: "big", stream: false, messages: [{ role: "user", content: "hi" }] });
    expect(((await ollama.json()) as Json).message.content).toBe("from studio");
    const count = await s.local.post("/v1/messages/count_tokens", { model: "big", messages: [{ role: "user", content: "hi" }] });
    expect(count.headers.get("x-lmx-node")).toBe("studio");
    expect(((await count.json()) as Json).input_tokens).toBeGreaterThan(0);
    const resp = await s.local.post("/v1/responses", { model: "big", input: "hi" });
    expect(resp.headers.get("x-lmx-node")).toBe("studio");
    expect(((await resp.json()) as Json).output[0].content[0].text).toBe("from studio");
    const embed = await s.local.post("/v1/embeddings", { model: "big", input: "hi" });
    expect(embed.headers.get("x-lmx-node")).toBe("studio");
  });

  test("a peer's error answer reaches the client in the shape of the API it called", async () => {
    let answer: Response = new Response();
    await using s = await setup(async () => answer);
    answer = Response.json({ error: { message: "bad thing", type: "invalid_request_error", param: "messages", code: "nope" } }, { status: 400 });
    const openai = await s.local.post("/v1/chat/completions", chat("m"));
    expect([openai.status, openai.headers.get("x-lmx-node")]).toEqual([400, "flaky"]);
    expect(((await openai.json()) as Json).error).toEqual({ message: "peer flaky: bad thing", type: "invalid_request_error", param: "messages", code: "nope" });
    answer = Response.json({ error: { message: "bad thing", type: "invalid_request_error", param: null, code: null } }, { status: 404 });
    const anthropic = await s.local.post("/v1/messages", { model: "m", max_tokens: 5, messages: [{ role: "user", content: "hi" }] });
    expect([anthropic.status, await anthropic.json()]).toEqual([404, { type: "error", error: { type: "not_found_error", message: "peer flaky: bad thing" } }]);
    answer = new Response("<html>upstream exploded</html>", { status: 502 });
    const ollama = await s.local.post("/api/chat", { model: "m", messages: [{ role: "user", content: "hi" }] });
    expect([ollama.status, await ollama.json()]).toEqual([502, { error: "peer flaky: <html>upstream exploded</html>" }]);
    answer = Response.json({ error: "x".repeat(100_000) }, { status: 400 });
    const huge = await s.local.post("/api/chat", { model: "m", messages: [{ role: "user", content: "hi" }] });
    expect(((await huge.json()) as Json).error).toBe("peer flaky: the peer answered 400");
  });

  test("a down peer: its models stay listed as unavailable; a request gets a fast 503 in the API's own shape", async () => {
    await using s = await setup(never);
    s.setStudio(false);
    // The first request finds it down; later ones are refused without trying.
    expect((await s.local.post("/v1/chat/completions", chat("big"))).status).toBe(503);
    expect(s.local.peers!.health.get("studio")!.state).toBe("down");
    const tries = s.seen.length;
    const started = performance.now();
    const openai = await s.local.post("/v1/chat/completions", chat("big"));
    expect(performance.now() - started).toBeLessThan(50);
    expect(s.seen.length).toBe(tries);
    expect(((await openai.json()) as Json).error).toMatchObject({ code: "model_unavailable", message: expect.stringMatching(/peer studio is down/) });
    // The peer is polled again within the poll interval (1 s on the fake app): a client may retry then.
    expect(openai.headers.get("retry-after")).toBe("1");
    const anthropic = await s.local.post("/v1/messages", { model: "big", max_tokens: 5, messages: [{ role: "user", content: "hi" }] });
    expect(anthropic.status).toBe(503);
    expect(((await anthropic.json()) as Json)).toMatchObject({ type: "error", error: { message: expect.stringMatching(/unavailable/) } });
    const ollama = await s.local.post("/api/generate", { model: "big", prompt: "hi" });
    expect(((await ollama.json()) as Json)).toEqual({ error: expect.stringMatching(/unavailable/) });
    const { data } = (await (await s.local.request("/v1/models")).json()) as Json;
    expect(data.find((m: Json) => m.id === "big")).toMatchObject({ node: "studio", state: "unavailable" });
  });

  test("a stream cut by the peer after its first bytes reaches the client as a broken stream, not a fallback", async () => {
    await using s = await setup(async () => sse(['data: {"choices":[{"delta":{"content":"par"}}]}\n\n'], 5, true), { routes: { chain: "flaky/m,big" } });
    const res = await s.local.post("/v1/chat/completions", chat("chain", { stream: true }));
    expect(res.headers.get("x-lmx-node")).toBe("flaky");
    expect(res.text()).rejects.toThrow();
  });

  test("a client that goes away cancels the upstream request", async () => {
    let upstream: AbortSignal | undefined;
    await using s = await setup(async (_p, _b, signal) => {
      upstream = signal;
      return sse(Array.from({ length: 100 }, () => 'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'), 20);
    });
    const client = new AbortController();
    const res = await s.local.request("/v1/chat/completions", { method: "POST", json: chat("m", { stream: true }), signal: client.signal });
    const reader = res.body!.getReader();
    await reader.read();
    client.abort();
    await reader.cancel().catch(() => undefined);
    for (let i = 0; i < 50 && !upstream?.aborted; i++) await Bun.sleep(10);
    expect(upstream?.aborted).toBe(true);
  });
});

describe("fallback chains", () => {
  test("a refusing (503), a down and a slow target are passed over in order; the answer names its node", async () => {
    let answer: "503" | "slow" = "503";
    await using s = await setup(async () => (answer === "503" ? new Response("busy", { status: 503 }) : (await Bun.sleep(1000), Response.json({}))), { routes: { coder: "flaky/m,studio/big" } });
    const first = await s.local.post("/v1/chat/completions", chat("coder"));
    expect(first.headers.get("x-lmx-node")).toBe("studio");
    expect(((await first.json()) as Json).choices[0].message.content).toBe("from studio");
    answer = "slow";
    const started = performance.now();
    const second = await s.local.post("/v1/chat/completions", chat("coder", { stream: true }));
    expect(performance.now() - started).toBeLessThan(900);
    expect(second.headers.get("x-lmx-node")).toBe("studio");
    s.setStudio(false);
    const none = await s.local.post("/v1/chat/completions", chat("coder"));
    expect(none.status).toBe(503);
    expect(((await none.json()) as Json).error.message).toMatch(/flaky no first byte within 0.3 s; peer studio unreachable/);
  });

  test("a local target that cannot load for memory falls over to the next, local or peer", async () => {
    const local = [{ id: "huge", modelBytes: 10_000, ...said("never") }, { id: "small", modelBytes: 10, ...said("from small") }];
    await using s = await setup(never, { local, memoryBudget: 1000, routes: { toPeer: "huge,big", toLocal: "huge,small", nothing: "huge,gone" } });
    const peer = await s.local.post("/v1/chat/completions", chat("toPeer", { stream: true }));
    expect(peer.headers.get("x-lmx-node")).toBe("studio");
    expect((await readSse(peer)).events.length).toBeGreaterThan(0);
    const small = await s.local.post("/v1/chat/completions", chat("toLocal"));
    expect(small.headers.get("x-lmx-node")).toBe("local");
    expect(((await small.json()) as Json)).toMatchObject({ model: "small", choices: [{ message: { content: "from small" } }] });
    const msg = await s.local.post("/v1/messages", { model: "nothing", max_tokens: 5, messages: [{ role: "user", content: "hi" }] });
    expect(msg.status).toBe(503);
    expect(((await msg.json()) as Json).error.message).toMatch(/local model 'huge'.*; no node serves 'gone'/);
  });
});

describe("/admin/v1/peers", () => {
  test("add (polled at once), list without keys, remove; configured peers cannot be removed here", async () => {
    await using s = await setup(never);
    const added = await s.local.post("/admin/v1/peers", { name: "gpu", url: "http://studio:1/v1", api_key: "sk-secret" });
    expect(added.status).toBe(200);
    const body = (await added.json()) as Json;
    expect(body).toMatchObject({ name: "gpu", url: "http://studio:1", source: "admin", state: "up", has_api_key: true, api_key_env: null, models: ["big", "shared"] });
    const listed = await (await s.local.request("/admin/v1/peers")).text();
    expect(listed).not.toContain("sk-secret");
    expect(listed).not.toContain("sk-studio");
    expect(JSON.parse(listed).data.map((p: Json) => [p.name, p.source, p.api_key_env])).toEqual([["flaky", "config", null], ["gpu", "admin", null], ["studio", "config", "STUDIO_KEY"]]);
    expect((await s.local.post("/admin/v1/peers", { name: "bad/name", url: "http://x" })).status).toBe(400);
    expect((await s.local.post("/admin/v1/peers", { name: "x", url: "file:///etc/passwd" })).status).toBe(400);
    expect((await s.local.post("/admin/v1/peers", { name: "x", url: "http://x", api_key: "k", api_key_env: "K" })).status).toBe(400);
    expect((await s.local.post("/admin/v1/peers", { name: "x", url: "http://x", api_key_env: "1-bad" })).status).toBe(400);
    expect((await s.local.request("/admin/v1/peers/gpu", { method: "DELETE" })).status).toBe(200);
    expect((await s.local.request("/admin/v1/peers/studio", { method: "DELETE" })).status).toBe(409);
    expect((await s.local.request("/admin/v1/peers/nope", { method: "DELETE" })).status).toBe(404);
  });

  test("load and unload of a peer's model go to the peer's admin API; a down peer is a 503", async () => {
    await using s = await setup(never);
    const loaded = await s.local.post("/admin/v1/models/studio/big/load", { parallel: 1 });
    expect(loaded.status).toBe(200);
    expect(loaded.headers.get("x-lmx-node")).toBe("studio");
    expect(((await loaded.json()) as Json)).toMatchObject({ id: "big", parallel: 1 });
    expect(s.seen.at(-1)).toMatchObject({ url: "http://studio:1/admin/v1/models/big/load", auth: "Bearer sk-studio" });
    expect(s.studio.engine.loads).toEqual(["big"]);
    expect((await s.local.post("/admin/v1/models/big/unload", {})).status).toBe(200);
    // Local models stay local.
    expect(((await (await s.local.post("/admin/v1/models/qwen/load", {})).json()) as Json).id).toBe("qwen");
    expect(s.local.engine.loads).toEqual(["qwen"]);
    s.setStudio(false);
    await s.local.peers!.health.pollAll();
    const down = await s.local.post("/admin/v1/models/studio/big/load", {});
    expect(down.status).toBe(503);
  });
});
