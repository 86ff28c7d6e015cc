// Model-name routes (src/models/routes.ts): how a requested name resolves, on every API through the
// real app on the FakeEngine, the admin routes that change them, and the --route / LMX_ROUTES /
// config.json setting.
import { describe, expect, test } from "bun:test";
import { parseFlags, resolveSettings } from "../../src/config/resolve.ts";
import { serveSettings } from "../../src/config/settings.ts";
import { settingsHelp } from "../../src/cli/help.ts";
import { RouteTable } from "../../src/models/routes.ts";
import { openDb } from "../../src/store/db.ts";
import { fakeApp } from "../fakes/fake-app.ts";

type Json = Record<string, any>;

const table = (configured: Record<string, string>) => new RouteTable(configured, openDb(":memory:"));

describe("route resolution", () => {
  test("exact names win over wildcards; the longest pattern wins among wildcards; no match is undefined", () => {
    const r = table({ "claude-*": "big", "claude-3-5-haiku-*": "small", "*-haiku-*": "tiny", "claude-opus-4": "opus", "*": "fallback" });
    expect(r.resolve("claude-opus-4")).toBe("opus");
    expect(r.resolve("claude-3-5-haiku-20241022")).toBe("small");
    expect(r.resolve("claude-sonnet-4-5")).toBe("big");
    // "*-haiku-*" is longer than "claude-*".
    expect(r.resolve("claude-haiku-4-5")).toBe("tiny");
    expect(r.resolve("x-haiku-y")).toBe("tiny");
    expect(r.resolve("gpt-4o")).toBe("fallback");
    expect(table({ "claude-*": "big" }).resolve("gpt-4o")).toBeUndefined();
  });

  test("a wildcard matches any run of characters, even none; other characters are literal", () => {
    const r = table({ "a.b*": "m1", "x*y*z": "m2" });
    expect(r.resolve("a.b")).toBe("m1");
    expect(r.resolve("a.bcd/e")).toBe("m1");
    expect(r.resolve("aXb")).toBeUndefined();
    expect(r.resolve("xyz")).toBe("m2");
    expect(r.resolve("x-1-y-2-z")).toBe("m2");
    expect(r.resolve("x-1-y-2-z!")).toBeUndefined();
  });

  test("equally long wildcards: fewer wildcards first, then by name, whatever the order given", () => {
    expect(table({ "ab**": "two", "abc*": "one" }).resolve("abcd")).toBe("one");
    expect(table({ "abc*": "one", "ab**": "two" }).resolve("abcd")).toBe("one");
    expect(table({ "b*x": "b", "*ax": "a" }).resolve("bax")).toBe("a");
  });

  test("bad names and targets are refused", () => {
    expect(() => table({ "bad name": "m" })).toThrow(/route name/);
    expect(() => table({ "claude-*": "m*" })).toThrow(/route target/);
  });
});

describe("routes on every API", () => {
  const models = [{ id: "qwen", script: () => ({ steps: [{ text: "from qwen" }] }) }, { id: "llama", script: () => ({ steps: [{ text: "from llama" }] }) }];

  test("Anthropic and OpenAI requests for a routed name run on its model and answer with the name asked for", async () => {
    await using f = fakeApp(models, { routes: { "claude-*": "qwen", "gpt-4o": "llama" } });
    const msg = (await (await f.post("/v1/messages", { model: "claude-sonnet-4-5", max_tokens: 10, messages: [{ role: "user", content: "hi" }] })).json()) as Json;
    expect(msg).toMatchObject({ model: "claude-sonnet-4-5", content: [{ type: "text", text: "from qwen" }] });
    const chat = (await (await f.post("/v1/chat/completions", { model: "gpt-4o", messages: [{ role: "user", content: "hi" }] })).json()) as Json;
    expect(chat).toMatchObject({ model: "gpt-4o", choices: [{ message: { content: "from llama" } }] });
    const count = (await (await f.post("/v1/messages/count_tokens", { model: "claude-haiku-4-5", messages: [{ role: "user", content: "hi" }] })).json()) as Json;
    expect(count).toEqual({ input_tokens: 4 });
    expect(f.engine.loads).toEqual(["qwen", "llama"]);
  });

  test("a model's own id is served as itself even when a route's pattern matches it", async () => {
    await using f = fakeApp(models, { routes: { "*": "qwen" } });
    const chat = (await (await f.post("/v1/chat/completions", { model: "llama", messages: [{ role: "user", content: "hi" }] })).json()) as Json;
    expect(chat.choices[0].message.content).toBe("from llama");
  });

  test("a route to a model that does not exist: 404 naming both", async () => {
    await using f = fakeApp(models, { routes: { "claude-*": "gone" } });
    const res = await f.post("/v1/messages", { model: "claude-x", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
    expect(res.status).toBe(404);
    expect(((await res.json()) as Json).error).toEqual({ type: "not_found_error", message: expect.stringMatching(/'claude-x' is routed to 'gone', which does not exist/) });
  });
});

describe("/admin/v1/routes", () => {
  test("list, set (persisted), replace, delete; configured routes are listed and cannot be deleted here", async () => {
    await using f = fakeApp([{ id: "qwen" }, { id: "llama" }], { routes: { "claude-*": "qwen" } });
    const list = async () => ((await (await f.request("/admin/v1/routes")).json()) as Json).data;
    expect(await list()).toEqual([{ name: "claude-*", model: "qwen", source: "config" }]);

    const put = await f.request("/admin/v1/routes/claude-3-5-haiku-*", { method: "PUT", json: { model: "llama" } });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ name: "claude-3-5-haiku-*", model: "llama", source: "admin" });
    expect((await f.request("/admin/v1/routes/org%2Fname", { method: "PUT", json: { model: "qwen" } })).status).toBe(200);
    expect(await list()).toEqual([
      { name: "org/name", model: "qwen", source: "admin" },
      { name: "claude-3-5-haiku-*", model: "llama", source: "admin" },
      { name: "claude-*", model: "qwen", source: "config" },
    ]);
    expect(f.routes.resolve("claude-3-5-haiku-latest")).toBe("llama");
    // An admin route of a configured name takes precedence; deleting it uncovers the configured one.
    await f.request("/admin/v1/routes/claude-*", { method: "PUT", json: { model: "llama" } });
    expect(f.routes.resolve("claude-opus")).toBe("llama");
    expect((await f.request("/admin/v1/routes/claude-*", { method: "DELETE" })).status).toBe(200);
    expect(f.routes.resolve("claude-opus")).toBe("qwen");

    const configured = await f.request("/admin/v1/routes/claude-*", { method: "DELETE" });
    expect(configured.status).toBe(409);
    expect(((await configured.json()) as Json).error.code).toBe("route_configured");
    expect((await f.request("/admin/v1/routes/nothing", { method: "DELETE" })).status).toBe(404);
    const bad = await f.request("/admin/v1/routes/bad%20name", { method: "PUT", json: { model: "qwen" } });
    expect(bad.status).toBe(400);
    expect((await f.request("/admin/v1/routes/x", { method: "PUT", json: {} })).status).toBe(400);
  });

  test("routes set through the API outlive the table (they are in the database)", () => {
    const db = openDb(":memory:");
    new RouteTable({}, db).set("claude-*", "qwen");
    expect(new RouteTable({}, db).list()).toEqual([{ name: "claude-*", model: "qwen", source: "admin" }]);
  });

  test("an inference key cannot change routes", async () => {
    await using f = fakeApp([{ id: "qwen" }]);
    const created = (await (await f.post("/admin/v1/keys", { scope: "inference" })).json()) as Json;
    const res = await f.request("/admin/v1/routes/x", { method: "PUT", json: { model: "qwen" }, headers: { authorization: `Bearer ${created.key}` } });
    expect(res.status).toBe(403);
  });
});

describe("the routes setting", () => {
  const resolve = (argv: string[], env: Record<string, string> = {}, file: Record<string, unknown> = {}) =>
    resolveSettings(serveSettings, parseFlags(argv, serveSettings), env, { values: file, models: {} }).routes;

  test("--route NAME=MODEL repeats; LMX_ROUTES is ;-separated; config.json takes an object; flags > env > file; none by default", () => {
    expect(resolve([])).toEqual({});
    expect(resolve(["--route", "claude-*=qwen", "--route=gpt-4o=llama"])).toEqual({ "claude-*": "qwen", "gpt-4o": "llama" });
    expect(resolve([], { LMX_ROUTES: "claude-*=qwen; gpt-4o=llama;" })).toEqual({ "claude-*": "qwen", "gpt-4o": "llama" });
    expect(resolve([], {}, { routes: { "claude-*": "qwen" } })).toEqual({ "claude-*": "qwen" });
    expect(resolve(["--route", "a=b"], { LMX_ROUTES: "c=d" }, { routes: { e: "f" } })).toEqual({ a: "b" });
    expect(resolve([], { LMX_ROUTES: "c=d" }, { routes: { e: "f" } })).toEqual({ c: "d" });
  });

  test("malformed values are usage errors naming the source", () => {
    expect(() => resolve(["--route", "claude-*"])).toThrow(/--route.*not NAME=VALUE/);
    expect(() => resolve([], { LMX_ROUTES: "=qwen" })).toThrow(/LMX_ROUTES/);
    expect(() => resolve([], {}, { routes: { a: 1 } })).toThrow(/config.json routes/);
  });

  test("--help shows it with its env variable and config key", () => {
    const help = settingsHelp(serveSettings);
    expect(help).toContain("--route NAME=MODEL");
    expect(help).toContain('env LMX_ROUTES, config.json "routes"');
  });
});
