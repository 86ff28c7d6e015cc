import { describe, expect, test } from "bun:test";
import { ModelRegistry } from "../src/models/registry.ts";
import { ensureFixtures } from "./fixtures/models.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();
type Ps = { memory_budget_bytes: number; memory_in_use_bytes: number; data: { id: string; memory_bytes: number; loaded_context_length: number; active_requests: number; idle_seconds: number | null }[] };
type ErrorBody = { error: { message: string; code: string } };

const post = (srv: TestServer, path: string, json?: unknown, headers?: Record<string, string>) =>
  srv.request(path, { method: "POST", json: json ?? {}, headers });
const ps = async (srv: TestServer) => (await (await srv.request("/admin/v1/ps")).json()) as Ps;

/** Memory estimates of the two fixtures at the settings these tests use, read from a real load. */
async function estimates(qwenContext = 256): Promise<{ stories: number; qwen: number }> {
  await using srv = await startTestServer(["--model", fx.stories260K, "--model", fx.qwen2Tiny, "--memory-budget", "100%"]);
  await post(srv, "/admin/v1/models/stories260K/load", { context_length: 256, parallel: 1 });
  await post(srv, "/admin/v1/models/qwen2-tiny/load", { context_length: qwenContext, parallel: 1 });
  const { data } = await ps(srv);
  return { stories: data.find((m) => m.id === "stories260K")!.memory_bytes, qwen: data.find((m) => m.id === "qwen2-tiny")!.memory_bytes };
}

describe("load, unload, ps", () => {
  test("explicit load with settings, ps shows memory/context/idle, unload empties it", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K]);
    const loaded = await post(srv, "/admin/v1/models/stories260K/load", { context_length: 256, parallel: 2, threads: 1 });
    expect(loaded.status).toBe(200);
    expect(await loaded.json()).toMatchObject({ id: "stories260K", state: "ready", loaded_context_length: 256, parallel: 2, threads: 1 });
    const p = await ps(srv);
    expect(p.data.length).toBe(1);
    expect(p.data[0]!.memory_bytes).toBeGreaterThan(0);
    expect(p.memory_in_use_bytes).toBe(p.data[0]!.memory_bytes);
    expect(p.data[0]!.active_requests).toBe(0);
    expect(p.data[0]!.idle_seconds).toBeGreaterThanOrEqual(0);
    // Loading again with other settings reloads.
    await post(srv, "/admin/v1/models/stories260K/load", { context_length: 512 });
    expect((await ps(srv)).data[0]!.loaded_context_length).toBe(512);
    const un = await post(srv, "/admin/v1/models/stories260K/unload");
    expect(await un.json()).toEqual({ id: "stories260K", unloaded: true });
    expect((await ps(srv)).data).toEqual([]);
    const list = (await (await srv.request("/admin/v1/models")).json()) as { data: { id: string; state: string }[] };
    expect(list.data.find((m) => m.id === "stories260K")!.state).toBe("unloaded");
    const show = (await (await srv.request("/admin/v1/models/stories260K")).json()) as { history: { event: string }[] };
    expect(show.history.map((h) => h.event)).toEqual(["unload", "load", "unload", "load"]);
  });

  test("bad load settings are 400s naming the field; unknown models 404", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K]);
    const bad = await post(srv, "/admin/v1/models/stories260K/load", { context_length: -1 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe("context_length");
    expect((await post(srv, "/admin/v1/models/nope/load")).status).toBe(404);
  });

  test("concurrent load/unload/load of one model stays consistent, no 500s", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K]);
    const ops = ["load", "unload", "load", "unload", "load", "load", "unload", "load"];
    const results = await Promise.all(ops.map((op) => post(srv, `/admin/v1/models/stories260K/${op}`, op === "load" ? { context_length: 256 } : undefined)));
    expect(results.map((r) => r.status)).toEqual(ops.map(() => 200));
    // Whatever order they arrived in, ps and the model list agree on the outcome.
    const p = await ps(srv);
    const list = (await (await srv.request("/admin/v1/models")).json()) as { data: { id: string; state: string }[] };
    const state = list.data.find((m) => m.id === "stories260K")!.state;
    expect(state === "ready" ? ["stories260K"] : []).toEqual(p.data.map((m) => m.id));
    expect(["ready", "unloaded"]).toContain(state);
    const chat = await post(srv, "/v1/chat/completions", { model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 3 });
    expect(chat.status).toBe(200);
  });
});

describe("memory budget", () => {
  test("idle models are evicted least-recently-used first; a model that cannot fit is refused with 'needs X'", async () => {
    const est = await estimates();
    const budget = Math.max(est.stories, est.qwen) + Math.min(est.stories, est.qwen) / 2;
    const jit = ["--ctx", "256", "--parallel", "1"];
    await using srv = await startTestServer(["--model", fx.stories260K, "--model", fx.qwen2Tiny, "--memory-budget", `${budget}B`, ...jit]);
    expect((await post(srv, "/admin/v1/models/stories260K/load", { context_length: 256, parallel: 1 })).status).toBe(200);
    expect((await post(srv, "/admin/v1/models/qwen2-tiny/load", { context_length: 256, parallel: 1 })).status).toBe(200);
    expect((await ps(srv)).data.map((m) => m.id)).toEqual(["qwen2-tiny"]);
    const show = (await (await srv.request("/admin/v1/models/stories260K")).json()) as { history: { event: string }[] };
    expect(show.history[0]!.event).toBe("evict");

    // JIT load through inference evicts too.
    const chat = await post(srv, "/v1/chat/completions", { model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
    expect(chat.status).toBe(200);
    expect((await ps(srv)).data.map((m) => m.id)).toEqual(["stories260K"]);
  });

  test("a model larger than the budget is refused before loading, with what is loaded", async () => {
    const est = await estimates();
    await using srv = await startTestServer(["--model", fx.stories260K, "--model", fx.qwen2Tiny, "--memory-budget", `${est.stories + 1024}B`, "--ctx", "256", "--parallel", "1"]);
    await post(srv, "/admin/v1/models/stories260K/load", { context_length: 256, parallel: 1 });
    const res = await post(srv, "/admin/v1/models/qwen2-tiny/load", { context_length: 256, parallel: 1 });
    expect(res.status).toBe(503);
    const err = (await res.json()) as ErrorBody;
    expect(err.error.code).toBe("insufficient_memory");
    expect(err.error.message).toMatch(/needs [\d.]+ [KMG]iB, budget [\d.]+ [KMG]iB, loaded: nothing/);
    // The refused load evicted stories trying to make room, and nothing crashed.
    const chat = await post(srv, "/v1/chat/completions", { model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
    expect(chat.status).toBe(200);
  });

  test("a busy model is not evicted", async () => {
    const est = await estimates(4096);
    await using srv = await startTestServer(["--model", fx.stories260K, "--model", fx.qwen2Tiny, "--memory-budget", `${est.stories + est.qwen - 1024}B`]);
    expect((await post(srv, "/admin/v1/models/qwen2-tiny/load", { context_length: 4096, parallel: 1 })).status).toBe(200);
    const ac = new AbortController();
    const res = await srv.request("/v1/chat/completions", {
      method: "POST", signal: ac.signal, json: { model: "qwen2-tiny", messages: [{ role: "user", content: "go" }], max_tokens: 3000, stream: true },
    });
    expect(res.status).toBe(200);
    await res.body!.getReader().read();
    const refused = await post(srv, "/admin/v1/models/stories260K/load", { context_length: 256, parallel: 1 });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as ErrorBody).error.message).toContain("qwen2-tiny");
    expect(((await (await srv.request("/admin/v1/ps")).json()) as Ps).data[0]!.active_requests).toBe(1);
    ac.abort();
  });

  test("--memory-budget accepts sizes and percentages, refuses nonsense", async () => {
    await expect(startTestServer(["--memory-budget", "lots"])).rejects.toThrow(/memory-budget/);
    await using srv = await startTestServer(["--memory-budget", "512MB"]);
    expect((await ps(srv)).memory_budget_bytes).toBe(512 * 1024 * 1024);
  });
});

describe("TTL and saved defaults", () => {
  test("an idle model unloads after its ttl", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K]);
    await post(srv, "/admin/v1/models/stories260K/load", { context_length: 256, ttl: 1 });
    expect((await ps(srv)).data.length).toBe(1);
    const deadline = Date.now() + 5000;
    while ((await ps(srv)).data.length > 0 && Date.now() < deadline) await Bun.sleep(100);
    expect((await ps(srv)).data).toEqual([]);
    const show = (await (await srv.request("/admin/v1/models/stories260K")).json()) as { history: { event: string }[] };
    expect(show.history[0]!.event).toBe("expire");
  });

  test("a JIT load uses the model's saved defaults", async () => {
    await using srv = await startTestServer([]);
    new ModelRegistry(srv.server.db).upsert({ id: "tiny-story", format: "gguf", path: fx.stories260K, origin: "import", aliases: ["stories/alias"] });
    const patch = await srv.request("/admin/v1/models/tiny-story", { method: "PATCH", json: { load_defaults: { context_length: 768, parallel: 1 } } });
    expect(patch.status).toBe(200);
    // By alias, through the OpenAI API.
    const chat = await post(srv, "/v1/chat/completions", { model: "stories/alias", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
    expect(chat.status).toBe(200);
    const p = await ps(srv);
    expect(p.data[0]).toMatchObject({ id: "tiny-story", loaded_context_length: 768 });
  });
});

describe("keys and scopes", () => {
  test("admin keys reach /admin; inference keys only the inference API", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K]);
    // No key exists yet, so the first one can be created without one.
    const created = (await (await post(srv, "/admin/v1/keys", { scope: "admin", name: "bot" })).json()) as { key: string; scope: string };
    expect(created.key).toMatch(/^lmx-/);
    expect((await srv.request("/admin/v1/ps")).status).toBe(401);
    const admin = { authorization: `Bearer ${created.key}` };
    const inf = (await (await post(srv, "/admin/v1/keys", { scope: "inference" }, admin)).json()) as { key: string; id: string };
    const inference = { authorization: `Bearer ${inf.key}` };
    expect((await srv.request("/v1/models", { headers: inference })).status).toBe(200);
    const denied = await srv.request("/admin/v1/ps", { headers: inference });
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as ErrorBody).error.code).toBe("insufficient_scope");
    const list = (await (await srv.request("/admin/v1/keys", { headers: admin })).json()) as { data: Record<string, unknown>[] };
    expect(list.data.length).toBe(2);
    expect(JSON.stringify(list)).not.toContain(inf.key);
    expect((await srv.request(`/admin/v1/keys/${inf.id}`, { method: "DELETE", headers: admin })).status).toBe(200);
    expect((await srv.request("/v1/models", { headers: inference })).status).toBe(401);
  });
});

describe("system and events", () => {
  test("GET /admin/v1/system", async () => {
    await using srv = await startTestServer([]);
    const s = (await (await srv.request("/admin/v1/system")).json()) as Record<string, Record<string, unknown>>;
    expect(s.cpu!.performance_cores).toBeGreaterThan(0);
    expect(s.memory!.total_bytes).toBeGreaterThan(0);
    expect(s.engines).toBeArray();
  });

  test("the events stream reports loads and unloads", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K]);
    const ac = new AbortController();
    const res = await srv.request("/admin/v1/events", { signal: ac.signal });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    await reader.read();
    await post(srv, "/admin/v1/models/stories260K/load", { context_length: 256 });
    await post(srv, "/admin/v1/models/stories260K/unload");
    let text = "";
    while (!text.includes("model.unloaded")) text += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    const types = [...text.matchAll(/^event: (.+)$/gm)].map((m) => m[1]);
    expect(types).toEqual(["model.loading", "model.loaded", "model.unloaded"]);
  });
});
