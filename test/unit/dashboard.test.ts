// The dashboard's server side on the fake app: `/` negotiated between the page (browsers) and
// Ollama's liveness answer (everyone else), the page and script open without a key while every
// API keeps its auth and its own 404s, and /admin/v1/activity.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Security } from "../../src/api/security.ts";
import { buildDashboardBundle } from "../../src/dashboard/bundle.ts";
import { fakeApp } from "../fakes/fake-app.ts";

const BROWSER = { accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" };
type Json = Record<string, any>;

describe("GET /", () => {
  test("a browser navigation gets the dashboard page", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const res = await f.request("/", { headers: BROWSER });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
    const html = await res.text();
    expect(html).toContain('<script type="module" src="/dashboard/app.js">');
    // Nothing on the page points at another host.
    expect(html).not.toMatch(/https?:\/\//);
  });

  test("every other client keeps getting Ollama's answer", async () => {
    await using f = fakeApp([{ id: "m" }]);
    for (const accept of [undefined, "*/*", "application/json", "text/plain"]) {
      const res = await f.request("/", accept ? { headers: { accept } } : {});
      expect({ accept, text: await res.text() }).toEqual({ accept, text: "Ollama is running" });
    }
    expect(await (await f.request("/", { method: "HEAD", headers: BROWSER })).text()).toBe("");
  });

  test("the --ollama-port listener answers Ollama's text even to a browser", async () => {
    await using f = fakeApp([{ id: "m" }], { ollamaListener: () => true });
    expect(await (await f.request("/", { headers: BROWSER })).text()).toBe("Ollama is running");
  });

  test("unknown paths stay 404s in their API's shape, for browsers too", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const ollama = await f.request("/api/nothing", { headers: BROWSER });
    expect(ollama.status).toBe(404);
    expect(await ollama.json()).toEqual({ error: "no such route" });
    const openai = await f.request("/v1/nothing", { headers: BROWSER });
    expect(openai.status).toBe(404);
    expect(((await openai.json()) as Json).error.code).toBe("unknown_route");
    expect((await f.request("/models", { headers: BROWSER })).status).toBe(404);
    expect((await f.request("/dashboard/other.js")).status).toBe(404);
  });
});

describe("keys", () => {
  test("the page and its script load without a key; the APIs it calls still need one", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const { key } = f.keys.create("admin");
    expect((await f.request("/", { headers: BROWSER })).status).toBe(200);
    const script = await f.request("/dashboard/app.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toBe("application/javascript; charset=utf-8");
    expect((await script.text()).length).toBeGreaterThan(10_000);
    // Ollama's answer is an API answer: it keeps needing the key.
    expect((await f.request("/")).status).toBe(401);
    for (const path of ["/admin/v1/models", "/admin/v1/activity", "/admin/v1/system", "/admin/v1/keys", "/v1/models"]) {
      expect({ path, status: (await f.request(path)).status }).toEqual({ path, status: 401 });
    }
    const ok = await f.request("/admin/v1/activity", { headers: { authorization: `Bearer ${key}` } });
    expect(ok.status).toBe(200);
  });

  test("/admin/v1/activity needs an admin key", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const { key } = f.keys.create("inference");
    expect((await f.request("/admin/v1/activity", { headers: { authorization: `Bearer ${key}` } })).status).toBe(403);
  });
});

describe("/admin/v1/activity", () => {
  test("per model: active and queued requests, request and token totals; failed requests in recent_errors", async () => {
    await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "a" }, { text: "b" }, { text: "c" }] }) }]);
    const before = (await (await f.request("/admin/v1/activity")).json()) as Json;
    expect(before.models).toEqual([expect.objectContaining({ id: "m", loaded: false, active_requests: 0, queued_requests: 0, requests_total: 0, generated_tokens_total: 0 })]);
    expect(before.recent_errors).toEqual([]);
    expect(Date.parse(before.time)).toBeGreaterThan(0);
    expect((await f.post("/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "hi" }] })).status).toBe(200);
    expect((await f.post("/v1/chat/completions", { model: "nope", messages: [{ role: "user", content: "hi" }] })).status).toBe(404);
    const after = (await (await f.request("/admin/v1/activity")).json()) as Json;
    const m = after.models.find((x: Json) => x.id === "m");
    expect(m).toMatchObject({ loaded: true, requests_total: 1, generated_tokens_total: 3 });
    expect(m.memory_bytes).toBeGreaterThan(0);
    expect(after.recent_errors).toEqual([expect.objectContaining({ source: "request", model: "nope", status: 404 })]);
  });

  test("failures published on the event bus are listed, newest first and bounded", async () => {
    await using f = fakeApp([{ id: "m" }]);
    for (let i = 0; i < 60; i++) f.events.publish({ type: "download.failed", id: `dl_${i}`, spec: "org/repo", error: `boom ${i}` });
    f.events.publish({ type: "model.load_failed", model: "m", error: "out of memory" });
    const body = (await (await f.request("/admin/v1/activity")).json()) as Json;
    expect(body.recent_errors).toHaveLength(50);
    expect(body.recent_errors[0]).toMatchObject({ source: "model", model: "m", message: "out of memory", status: null });
    expect(body.recent_errors[1]).toMatchObject({ source: "download", message: "boom 59" });
  });
});

describe("/admin/v1/system", () => {
  test("says how the server is exposed", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const body = (await (await f.request("/admin/v1/system")).json()) as Json;
    expect(body.server).toEqual({ bound_host: "127.0.0.1", loopback_only: true, cors_origins: [], allowed_hosts: [], auth_required: false });
  });
});

describe("Security.exposure", () => {
  test("says when the server listens beyond this machine, and whether keys guard it", () => {
    const keys = { hasKeys: () => true, verify: () => undefined };
    expect(new Security({ boundHost: "0.0.0.0", keys, corsOrigins: ["https://app.example"], allowedHosts: ["box.lan"] }).exposure())
      .toEqual({ bound_host: "0.0.0.0", loopback_only: false, cors_origins: ["https://app.example"], allowed_hosts: ["box.lan"], auth_required: true });
    expect(new Security({ boundHost: "::1", keys, corsOrigins: [], allowedHosts: [] }).exposure().loopback_only).toBe(true);
  });
});

describe("the bundle", () => {
  test("builds from source with Preact inside and no other host named", async () => {
    const js = await buildDashboardBundle();
    expect(js).toContain("/admin/v1/events");
    expect(js).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
  });

  test("the browser code typechecks with the DOM typings", async () => {
    const tsc = Bun.spawn([process.execPath, join(import.meta.dir, "../../node_modules/typescript/bin/tsc"), "--noEmit", "-p", "src/dashboard/app"], {
      cwd: join(import.meta.dir, "../.."), stdout: "pipe", stderr: "pipe",
    });
    const [out, code] = await Promise.all([new Response(tsc.stdout).text(), tsc.exited]);
    expect({ code, out }).toEqual({ code: 0, out: "" });
  }, 60_000);
});
