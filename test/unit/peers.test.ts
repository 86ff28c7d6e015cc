// Peers (src/peers/): name resolution and listing, the registry's rules, and the health poller's
// state transitions and bounds, on a scripted fetch.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFlags, readConfigFile, resolveSettings } from "../../src/config/resolve.ts";
import { serveSettings } from "../../src/config/settings.ts";
import type { LmxEvent } from "../../src/events/bus.ts";
import { MAX_MODELS_BYTES, MAX_PEER_MODELS, modelIdsOf, PeerHealth } from "../../src/peers/health.ts";
import { listPeerModels, type Naming, planTargets, resolveName } from "../../src/peers/naming.ts";
import { proxy, type ProxyCall } from "../../src/peers/proxy.ts";
import { baseUrl, peerKey, peerProblem, PeerRegistry } from "../../src/peers/registry.ts";
import { configureLog } from "../../src/log.ts";
import { openDb } from "../../src/store/db.ts";

configureLog({ level: process.env.LMX_TEST_LOG_LEVEL ?? "error" });

const naming = (over: Partial<Naming> = {}): Naming => ({
  isLocal: (n) => n === "qwen" || n === "shared",
  route: () => undefined,
  peers: [
    { name: "studio", available: true, models: ["big", "shared"] },
    { name: "gpu", available: false, models: ["big", "vllm-model"] },
  ],
  ...over,
});

describe("naming", () => {
  test("listing: clashes with local ids and earlier peers are listed as PEER/id; down peers' models are unavailable", () => {
    expect(listPeerModels(new Set(["qwen", "shared"]), naming().peers)).toEqual([
      { id: "big", peer: "studio", model: "big", available: true },
      { id: "studio/shared", peer: "studio", model: "shared", available: true },
      { id: "gpu/big", peer: "gpu", model: "big", available: false },
      { id: "vllm-model", peer: "gpu", model: "vllm-model", available: false },
    ]);
  });

  test("every listed id resolves to the model it lists", () => {
    const n = naming();
    for (const m of listPeerModels(new Set(["qwen", "shared"]), n.peers)) {
      expect(resolveName(m.id, n)).toEqual({ kind: "peer", peer: m.peer, model: m.model });
    }
  });

  test("local first; PEER/id addresses any model of a peer, listed or not; unknown names are nobody's", () => {
    const n = naming();
    expect(resolveName("shared", n)).toEqual({ kind: "local", model: "shared" });
    expect(resolveName("gpu/anything", n)).toEqual({ kind: "peer", peer: "gpu", model: "anything" });
    expect(resolveName("org/repo", n)).toBeUndefined();
    expect(resolveName("studio/", n)).toBeUndefined();
    expect(planTargets("qwen", n)).toBeUndefined();
    expect(planTargets("nope", n)).toBeUndefined();
    expect(planTargets("big", n)).toEqual([{ kind: "peer", peer: "studio", model: "big" }]);
  });

  test("routes: a chain lists its targets in order; one local target is left to the local route", () => {
    const routes: Record<string, string[]> = { coder: ["qwen", "gpu/big", "missing-model"], solo: ["qwen"], remote: ["vllm-model"] };
    const n = naming({ route: (name) => routes[name] });
    expect(planTargets("coder", n)).toEqual([
      { kind: "local", model: "qwen" },
      { kind: "peer", peer: "gpu", model: "big" },
      { kind: "missing", name: "missing-model" },
    ]);
    expect(planTargets("solo", n)).toBeUndefined();
    expect(planTargets("remote", n)).toEqual([{ kind: "peer", peer: "gpu", model: "vllm-model" }]);
  });
});

describe("registry", () => {
  test("names, URLs and keys are checked; /v1 and trailing slashes are dropped", () => {
    expect(peerProblem({ name: "studio", url: "http://10.0.0.2:1234/v1" })).toBeUndefined();
    expect(peerProblem({ name: "a/b", url: "http://h" })).toMatch(/no slash/);
    expect(peerProblem({ name: "local", url: "http://h" })).toMatch(/'local'/);
    expect(peerProblem({ name: "x", url: "ftp://h" })).toMatch(/http or https/);
    expect(peerProblem({ name: "x", url: "http://u:p@h" })).toMatch(/not in the URL/);
    expect(peerProblem({ name: "x", url: "not a url" })).toMatch(/not a URL/);
    expect(peerProblem({ name: "x", url: "http://h", apiKey: "env:1BAD" })).toMatch(/environment variable/);
    expect(peerProblem({ name: "x", url: "http://h", apiKey: "a\nb" })).toMatch(/line breaks/);
    expect(baseUrl("http://h:1/v1/")).toBe("http://h:1");
    expect(baseUrl("https://api.example.com/v1")).toBe("https://api.example.com");
    expect(baseUrl("http://h:1/")).toBe("http://h:1");
  });

  test("env:VAR keys are read from the environment", () => {
    expect(peerKey({ name: "x", url: "http://h", apiKey: "env:STUDIO_KEY", source: "config" }, { STUDIO_KEY: "sk-1" })).toBe("sk-1");
    expect(peerKey({ name: "x", url: "http://h", apiKey: "env:STUDIO_KEY", source: "config" }, {})).toBeUndefined();
    expect(peerKey({ name: "x", url: "http://h", apiKey: "literal", source: "config" }, {})).toBe("literal");
  });

  test("admin peers persist and shadow configured ones; configured ones cannot be removed", () => {
    const db = openDb(":memory:");
    const r = new PeerRegistry([{ name: "studio", url: "http://a:1/v1" }], db);
    r.add({ name: "studio", url: "http://b:2", apiKey: "env:K" });
    r.add({ name: "gpu", url: "http://c:3" });
    expect(new PeerRegistry([{ name: "studio", url: "http://a:1/v1" }], db).list().map((p) => [p.name, p.url, p.source])).toEqual([["gpu", "http://c:3", "admin"], ["studio", "http://b:2", "admin"]]);
    r.remove("studio");
    expect(r.get("studio")).toMatchObject({ url: "http://a:1", source: "config" });
    expect(() => r.remove("studio")).toThrow(/configuration/);
    expect(() => r.remove("nope")).toThrow(/no peer/);
  });
});

describe("settings", () => {
  test("--peer repeats; LMX_PEERS is a comma list; a route chain comes as a list in config.json", () => {
    const flags = parseFlags(["--peer", "studio=http://a:1", "--peer", "gpu=http://b:2/v1", "--route", "coder=qwen,studio/big"], serveSettings);
    const fromFlags = resolveSettings(serveSettings, flags, {}, { values: {}, models: {} });
    expect(fromFlags.peers).toEqual({ studio: "http://a:1", gpu: "http://b:2/v1" });
    expect(fromFlags.routes).toEqual({ coder: "qwen,studio/big" });
    expect(fromFlags.peerPoll).toBe(10);
    expect(fromFlags.peerFirstByteTimeout).toBe(60);
    const fromEnv = resolveSettings(serveSettings, parseFlags([], serveSettings), { LMX_PEERS: "studio=http://a:1, gpu=http://b:2", LMX_PEER_POLL: "3" }, { values: {}, models: {} });
    expect(fromEnv.peers).toEqual({ studio: "http://a:1", gpu: "http://b:2" });
    expect(fromEnv.peerPoll).toBe(3);
    const fromFile = resolveSettings(serveSettings, parseFlags([], serveSettings), {}, { values: { routes: { coder: ["qwen", "studio/big"] } }, models: {} });
    expect(fromFile.routes).toEqual({ coder: "qwen,studio/big" });
  });

  test("config.json peers carry their keys apart from the --peer setting; a bad entry names its field", () => {
    const home = mkdtempSync(join(tmpdir(), "lmx-peers-config-"));
    try {
      const peers = [{ name: "studio", url: "http://a:1", apiKey: "env:STUDIO_KEY" }, { name: "gpu", url: "http://b:2" }];
      writeFileSync(join(home, "config.json"), JSON.stringify({ peers, port: 9 }));
      const file = readConfigFile(home);
      expect(file.peers).toEqual(peers);
      expect(resolveSettings(serveSettings, parseFlags([], serveSettings), {}, file).peers).toEqual({});
      writeFileSync(join(home, "config.json"), JSON.stringify({ peers: [{ name: "x" }] }));
      expect(() => readConfigFile(home)).toThrow(/peers\.0\.url/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

interface Reply { status?: number; body?: unknown; raw?: string; delayMs?: number; error?: string }

/** A scripted peer: each poll takes the next reply (the last repeats). */
function scripted(replies: Reply[]) {
  const seen: { url: string; auth: string | null }[] = [];
  const fetch = async (url: string, init: RequestInit): Promise<Response> => {
    seen.push({ url, auth: new Headers(init.headers).get("authorization") });
    const r = replies.length > 1 ? replies.shift()! : replies[0]!;
    if (r.delayMs) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, r.delayMs);
        init.signal?.addEventListener("abort", () => { clearTimeout(t); reject(init.signal!.reason); }, { once: true });
      });
    }
    if (r.error) throw new Error(r.error);
    return new Response(r.raw ?? JSON.stringify(r.body ?? {}), { status: r.status ?? 200 });
  };
  return { fetch, seen };
}

const models = (...ids: string[]) => ({ object: "list", data: ids.map((id) => ({ id, object: "model" })) });

function health(replies: Reply[], env: NodeJS.ProcessEnv = {}, apiKey?: string) {
  const registry = new PeerRegistry([{ name: "studio", url: "http://studio:1234/v1", ...(apiKey ? { apiKey } : {}) }], openDb(":memory:"));
  const events: LmxEvent[] = [];
  const s = scripted(replies);
  const h = new PeerHealth(registry, { intervalMs: 200, env, events: { publish: (e) => events.push(e) }, fetch: s.fetch });
  return { h, events, seen: s.seen, registry };
}

describe("health", () => {
  test("down until polled; one good poll up, one failure down, back up: each change is an event", async () => {
    const { h, events, seen } = health([{ body: models("a", "b") }, { error: "ECONNREFUSED" }, { error: "ECONNREFUSED" }, { body: models("a") }]);
    expect(h.get("studio")).toMatchObject({ state: "down", lastError: "not polled yet", models: [] });
    await h.pollAll();
    expect(h.get("studio")).toMatchObject({ state: "up", lastError: null, models: ["a", "b"] });
    expect(h.get("studio")!.latencyMs).toBeGreaterThanOrEqual(0);
    await h.pollAll();
    // The models stay known while the peer is down, to be listed as unavailable.
    expect(h.get("studio")).toMatchObject({ state: "down", lastError: "ECONNREFUSED", models: ["a", "b"] });
    await h.pollAll();
    await h.pollAll();
    expect(h.get("studio")).toMatchObject({ state: "up", models: ["a"] });
    expect(events.map((e) => e.type)).toEqual(["peer.up", "peer.down", "peer.up"]);
    expect(seen[0]).toEqual({ url: "http://studio:1234/v1/models", auth: null });
  });

  test("401/403 is auth_error; the key sent is read from the environment", async () => {
    const { h, events, seen } = health([{ status: 401 }], { STUDIO_KEY: "sk-studio" }, "env:STUDIO_KEY");
    await h.pollAll();
    expect(h.get("studio")).toMatchObject({ state: "auth_error", lastError: expect.stringContaining("401") });
    expect(events).toEqual([{ type: "peer.down", peer: "studio", state: "auth_error", error: expect.any(String) }]);
    expect(seen[0]!.auth).toBe("Bearer sk-studio");
  });

  test("an env:VAR key whose variable is not set says so", async () => {
    const { h, seen } = health([{ status: 401 }], {}, "env:STUDIO_KEY");
    await h.pollAll();
    expect(h.get("studio")!.lastError).toMatch(/without an API key \(401\) \(STUDIO_KEY is not set in this server's environment\)/);
    expect(seen[0]!.auth).toBeNull();
  });

  test("a 500, a non-JSON answer, an answer without data: down, with the reason", async () => {
    for (const [reply, reason] of [[{ status: 500 }, /answered 500/], [{ raw: "<html>" }, /did not answer JSON/], [{ body: { models: [] } }, /no model list/]] as const) {
      const { h } = health([reply]);
      await h.pollAll();
      expect(h.get("studio")).toMatchObject({ state: "down", lastError: expect.stringMatching(reason) });
    }
  });

  test("a peer that does not answer is down after the poll's time bound", async () => {
    const { h } = health([{ delayMs: 5000, body: models("a") }]);
    const started = Date.now();
    await h.pollAll();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(h.get("studio")).toMatchObject({ state: "down", lastError: expect.stringMatching(/no answer within 200 ms/) });
  });

  test("hostile answers are bounded: size, model count, id length and characters; entries of its own peers are skipped", async () => {
    const { h } = health([{ raw: JSON.stringify(models("x".repeat(MAX_MODELS_BYTES))) }]);
    await h.pollAll();
    expect(h.get("studio")).toMatchObject({ state: "down", lastError: expect.stringMatching(/more than/) });
    const many = modelIdsOf(models(...Array.from({ length: MAX_PEER_MODELS + 50 }, (_, i) => `m${i}`)))!;
    expect(many.length).toBe(MAX_PEER_MODELS);
    expect(modelIdsOf({ data: [{ id: "ok" }, { id: "x".repeat(201) }, { id: "a b" }, { id: "nl\n" }, { id: 5 }, null, "str", { id: "ok" }, { id: "remote", node: "other" }, { id: "mine", node: "local" }] })).toEqual(["ok", "mine"]);
  });

  test("added peers are polled at once; removed ones are forgotten", async () => {
    const { h, registry } = health([{ body: models("a") }]);
    h.start();
    try {
      registry.add({ name: "gpu", url: "http://gpu:8000" });
      await h.pollAll();
      expect(h.list().map((s) => [s.name, s.state])).toEqual([["gpu", "up"], ["studio", "up"]]);
      registry.remove("gpu");
      expect(h.get("gpu")).toBeUndefined();
    } finally {
      h.stop();
    }
  });
});

describe("proxy", () => {
  const call = (respond: (signal: AbortSignal) => Promise<Response>, over: Partial<ProxyCall> = {}): ProxyCall => ({
    url: "http://peer/v1/chat/completions", headers: {}, body: "{}", signal: new AbortController().signal, firstByteMs: 100,
    fetch: (_url, init) => respond(init.signal!), ...over,
  });
  const dribble = (chunks: number, gapMs: number, size = 10) => new Response(new ReadableStream<Uint8Array>({
    async pull(c) {
      if (chunks-- <= 0) return c.close();
      await Bun.sleep(gapMs);
      c.enqueue(new Uint8Array(size));
    },
  }));

  test("429, 503, 401 and a failed connection are skips; other statuses are answers", async () => {
    expect(await proxy(call(async () => new Response("", { status: 429 })))).toMatchObject({ kind: "skip", reason: "answered 429" });
    expect(await proxy(call(async () => new Response("", { status: 503 })))).toMatchObject({ kind: "skip", reason: "answered 503" });
    expect(await proxy(call(async () => new Response("", { status: 401 })))).toMatchObject({ kind: "skip", auth: true });
    expect(await proxy(call(async () => { throw new Error("ECONNREFUSED"); }))).toMatchObject({ kind: "skip", down: true, reason: "unreachable: ECONNREFUSED" });
    expect(await proxy(call(async () => new Response("no", { status: 404, headers: { "content-type": "text/plain", "set-cookie": "x=1" } })))).toMatchObject({ kind: "answer", status: 404, headers: { "content-type": "text/plain" } });
  });

  test("no first byte in time is a skip, even from a fetch that ignores its signal; the upstream request is aborted", async () => {
    let upstream: AbortSignal | undefined;
    const started = performance.now();
    const outcome = await proxy(call(async (signal) => {
      upstream = signal;
      return dribble(1, 1000);
    }));
    expect(outcome).toMatchObject({ kind: "skip", timedOut: true, reason: "no first byte within 0.1 s" });
    expect(performance.now() - started).toBeLessThan(500);
    expect(upstream!.aborted).toBe(true);
    expect(await proxy(call(() => new Promise<Response>(() => undefined)))).toMatchObject({ kind: "skip", timedOut: true });
  });

  test("after the first byte: a silence longer than the bound, or an answer past the size bound, breaks the stream", async () => {
    const silent = await proxy(call(async () => new Response(new ReadableStream<Uint8Array>({
      async start(c) {
        c.enqueue(new Uint8Array(1));
        await Bun.sleep(1000);
        c.close();
      },
    }))));
    expect(silent.kind).toBe("answer");
    const started = performance.now();
    await expect(new Response((silent as { body: ReadableStream<Uint8Array> }).body).arrayBuffer()).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(500);
    const big = await proxy(call(async () => dribble(10, 1, 100), { maxBytes: 350 }));
    await expect(new Response((big as { body: ReadableStream<Uint8Array> }).body).arrayBuffer()).rejects.toThrow(/passed 350 bytes/);
    const fine = await proxy(call(async () => dribble(3, 60)));
    expect((await new Response((fine as { body: ReadableStream<Uint8Array> }).body).arrayBuffer()).byteLength).toBe(30);
  });

  test("a client that is gone before or while the answer starts aborts with client_closed", async () => {
    const gone = new AbortController();
    gone.abort();
    await expect(proxy(call(async () => new Response("x"), { signal: gone.signal }))).rejects.toMatchObject({ code: "client_closed" });
    const leaving = new AbortController();
    const pending = proxy(call(async () => dribble(1, 300), { signal: leaving.signal, firstByteMs: 5000 }));
    setTimeout(() => leaving.abort(), 20);
    await expect(pending).rejects.toMatchObject({ code: "client_closed" });
  });
});
