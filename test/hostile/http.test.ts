// Hostile HTTP against a real server: what a web page, a LAN client or a raw socket can send.
// Each case is bounded in time and memory and ends by checking the server still serves a chat.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fixtures } from "../fixtures/models.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";

const MODEL = ["--model", fixtures.qwen2Tiny, "--ctx", "512"];
const REPO_ROOT = resolve(import.meta.dir, "../..");

// One server for the cases that need no flags of their own and change nothing: loading the model
// takes seconds, and every case ends by checking the server still chats, which is the point.
let sharedServer: Promise<TestServer> | undefined;
function shared(): Promise<TestServer> {
  sharedServer ??= startTestServer(MODEL);
  return sharedServer;
}
afterAll(async () => {
  await (await sharedServer)?.[Symbol.asyncDispose]();
});

/** Speaks raw HTTP/1.1 (fetch always adds a Host and a well-formed path); resolves with what came back when the server closes. */
function raw(port: number, text: string | Uint8Array, opts: { keepOpenMs?: number } = {}): Promise<string> {
  return new Promise((done, fail) => {
    let data = "";
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          s.write(text);
          if (opts.keepOpenMs !== undefined) setTimeout(() => s.end(), opts.keepOpenMs);
        },
        data(_s, chunk) { data += chunk.toString(); },
        close() { done(data); },
        error(_s, err) { fail(err); },
      },
    }).catch(fail);
  });
}

const statusOf = (response: string) => Number(response.split(" ")[1]);
const bodyOf = (response: string) => JSON.parse(response.slice(response.indexOf("\r\n\r\n") + 4)) as { error: { code: string; param: string | null } };

/** Runs one hostile case with a wall-clock and an RSS-growth bound (the server runs in this process). */
async function bounded<T>(limits: { ms: number; rssMb: number }, run: () => Promise<T>): Promise<T> {
  Bun.gc(true);
  const rss0 = process.memoryUsage.rss();
  const t0 = performance.now();
  const out = await run();
  const ms = performance.now() - t0;
  const grew = (process.memoryUsage.rss() - rss0) / 2 ** 20;
  expect(ms).toBeLessThan(limits.ms);
  expect(grew).toBeLessThan(limits.rssMb);
  return out;
}

/** The last assertion of every case: a normal chat still works. */
async function stillChats(srv: TestServer): Promise<void> {
  const res = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "qwen2-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 } });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { object: string }).object).toBe("chat.completion");
}

/** /health answers within a second while `work` is in flight. */
async function healthWhile(srv: TestServer, work: Promise<unknown>): Promise<void> {
  await Bun.sleep(20);
  const t0 = performance.now();
  const res = await fetch(srv.url + "/health");
  expect(res.status).toBe(200);
  expect(performance.now() - t0).toBeLessThan(1000);
  await work;
}

describe("CSRF: a web page cannot act on the server", () => {
  const foreign = "http://evil.example";
  const attempts: [string, string][] = [
    ["/admin/v1/keys", "scope=admin"],
    ["/admin/v1/downloads", "model=org/repo"],
    ["/admin/v1/models/qwen2-tiny/load", "threads=1"],
    ["/admin/v1/import", "lmstudio=true"],
  ];

  test("form-encoded and text/plain POSTs with a foreign Origin are refused and change nothing", async () => {
    const srv = await shared();
    await bounded({ ms: 10_000, rssMb: 200 }, async () => {
      for (const [path, form] of attempts) {
        for (const [type, body] of [["application/x-www-form-urlencoded", form], ["text/plain", JSON.stringify(Object.fromEntries(new URLSearchParams(form)))], ["multipart/form-data; boundary=x", `--x\r\nContent-Disposition: form-data; name="scope"\r\n\r\nadmin\r\n--x--\r\n`]] as const) {
          const res = await fetch(srv.url + path, { method: "POST", headers: { "content-type": type, origin: foreign }, body });
          expect(res.status).toBe(403);
          expect(((await res.json()) as { error: { code: string } }).error.code).toBe("origin_forbidden");
        }
        // Even a JSON body from a foreign page (possible only after a preflight this server refuses).
        const json = await fetch(srv.url + path, { method: "POST", headers: { "content-type": "application/json", origin: foreign }, body: "{}" });
        expect(json.status).toBe(403);
        // No Origin but the browser's Sec-Fetch-Site says cross-site (a no-cors request).
        const fetchMeta = await fetch(srv.url + path, { method: "POST", headers: { "content-type": "text/plain", "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" }, body: "{}" });
        expect(fetchMeta.status).toBe(403);
        // An old browser that sends neither: the body type alone is refused before parsing.
        const bare = await fetch(srv.url + path, { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify({ scope: "admin" }) });
        expect(bare.status).toBe(415);
        expect(((await bare.json()) as { error: { code: string } }).error.code).toBe("unsupported_media_type");
      }
    });
    // Nothing happened: no key (auth still off), no download, model not loaded.
    expect(((await (await srv.request("/admin/v1/keys")).json()) as { data: unknown[] }).data).toEqual([]);
    expect(((await (await srv.request("/admin/v1/downloads")).json()) as { data: unknown[] }).data).toEqual([]);
    const models = (await (await srv.request("/v1/models")).json()) as { data: { id: string; state: string }[] };
    expect(models.data.find((m) => m.id === "qwen2-tiny")?.state).toBe("unloaded");
    await stillChats(srv);
  });

  test("foreign pages cannot read admin data; /health, the server's own pages and CLI clients can", async () => {
    // It creates a key, after which every request needs one: a server of its own.
    await using srv = await startTestServer(MODEL);
    expect((await fetch(srv.url + "/admin/v1/keys", { headers: { origin: foreign } })).status).toBe(403);
    expect((await fetch(srv.url + "/admin/v1/keys", { headers: { "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" } })).status).toBe(403);
    // A link the user follows from another site shows the page to the user, not to the site.
    expect((await fetch(srv.url + "/v1/models", { headers: { "sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate" } })).status).toBe(200);
    expect((await fetch(srv.url + "/health", { headers: { origin: foreign } })).status).toBe(200);
    expect((await fetch(srv.url + "/admin/v1/keys", { headers: { origin: srv.url } })).status).toBe(200);
    const created = await srv.request("/admin/v1/keys", { method: "POST", json: { scope: "admin" } });
    expect(created.status).toBe(200);
    const { key } = (await created.json()) as { key: string };
    const res = await srv.request("/v1/chat/completions", { method: "POST", headers: { authorization: `Bearer ${key}` }, json: { model: "qwen2-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 } });
    expect(res.status).toBe(200);
  });

  test("--cors-origin allows that page", async () => {
    await using srv = await startTestServer([...MODEL, "--cors-origin", "http://app.example"]);
    const res = await srv.request("/admin/v1/keys", { headers: { origin: "http://app.example" } });
    expect(res.status).toBe(200);
    expect((await srv.request("/admin/v1/keys", { headers: { origin: "http://other.example" } })).status).toBe(403);
    await stillChats(srv);
  });
});

describe("malformed requests get a 4xx in the API's shape", () => {
  test("no Host header, and bad %-encoding in the path", async () => {
    const srv = await shared();
    const port = srv.server.port;
    await bounded({ ms: 5_000, rssMb: 100 }, async () => {
      for (const request of ["GET /v1/models HTTP/1.0\r\n\r\n", "GET /v1/models HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n"]) {
        const res = await raw(port, request);
        expect(statusOf(res)).toBe(400);
        expect(bodyOf(res).error.code).toBe("missing_host");
      }
      // The APIs with an error shape of their own answer in it, even before a route runs.
      const ollama = await raw(port, "GET /api/tags HTTP/1.0\r\n\r\n");
      expect(statusOf(ollama)).toBe(400);
      expect(typeof (bodyOf(ollama) as unknown as { error: unknown }).error).toBe("string");
      const anthropic = await raw(port, "POST /v1/messages?beta=true HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
      expect(statusOf(anthropic)).toBe(400);
      expect(bodyOf(anthropic) as unknown).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
      for (const path of ["/v1/models/%E0%A4%A", "/admin/v1/models/%ZZ/load", "/v1/models/%"]) {
        const res = await raw(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
        expect(statusOf(res)).toBe(400);
        expect(bodyOf(res).error.code).toBe("invalid_path");
      }
    });
    await stillChats(srv);
  });

  test("an invalid response_format schema names the field", async () => {
    const srv = await shared();
    const res = await srv.request("/v1/chat/completions", {
      method: "POST",
      json: { model: "qwen2-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 4, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "strng" } } } } } },
    });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; param: string } };
    expect(error.code).toBe("invalid_schema");
    expect(error.param).toBe("response_format.json_schema.schema.properties.a.type");
    await stillChats(srv);
  });

  test("a load with absurd threads or a context beyond the declared one, a deleted model file, a revision with '..'", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lmx-hostile-"));
    try {
      copyFileSync(fixtures.qwen2Tiny, join(dir, "doomed.gguf"));
      await using srv = await startTestServer([...MODEL, "--models-dir", dir]);
      const threads = await srv.request("/admin/v1/models/qwen2-tiny/load", { method: "POST", json: { threads: 1024 } });
      expect(threads.status).toBe(400);
      expect(((await threads.json()) as { error: { code: string } }).error.code).toBe("threads_too_high");
      const ctx = await srv.request("/admin/v1/models/qwen2-tiny/load", { method: "POST", json: { context_length: 65536 } });
      expect(ctx.status).toBe(400);
      expect(((await ctx.json()) as { error: { code: string } }).error.code).toBe("context_too_large");
      rmSync(join(dir, "doomed.gguf"));
      const gone = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "doomed", messages: [{ role: "user", content: "hi" }], max_tokens: 2 } });
      expect(gone.status).toBe(404);
      expect(((await gone.json()) as { error: { code: string } }).error.code).toBe("model_file_missing");
      for (const revision of ["../../etc", "main/../x", "a//b", "."]) {
        const pull = await srv.request("/admin/v1/downloads", { method: "POST", json: { model: "org/repo", revision } });
        expect(pull.status).toBe(400);
      }
      expect(((await (await srv.request("/admin/v1/downloads")).json()) as { data: unknown[] }).data).toEqual([]);
      await stillChats(srv);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("resource limits", () => {
  test("a huge declared Content-Length is refused with 413 before reading it", async () => {
    const srv = await shared();
    const res = await bounded({ ms: 3_000, rssMb: 50 }, () =>
      raw(srv.server.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{\"model\":", { keepOpenMs: 2_000 }));
    expect(statusOf(res)).toBe(413);
    expect(bodyOf(res).error.code).toBe("request_too_large");
    await stillChats(srv);
  });

  test("a chunked body is cut off at --max-body-size", async () => {
    await using srv = await startTestServer([...MODEL, "--max-body-size", "1MB"]);
    const chunk = "x".repeat(64 * 1024);
    const chunks = Array.from({ length: 40 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join("");
    const res = await bounded({ ms: 5_000, rssMb: 100 }, () =>
      raw(srv.server.port, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`, { keepOpenMs: 3_000 }));
    expect(statusOf(res)).toBe(413);
    await stillChats(srv);
  });

  test("a 45 MB prompt is refused at once, and /health answers meanwhile", async () => {
    const srv = await shared();
    const body = JSON.stringify({ model: "qwen2-tiny", messages: [{ role: "user", content: "word ".repeat(9_000_000) }] });
    await bounded({ ms: 5_000, rssMb: 400 }, async () => {
      const work = srv.request("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body });
      await healthWhile(srv, work);
      expect((await work).status).toBe(413);
    });
    await stillChats(srv);
  });

  test("a 15 MB prompt that cannot fit the context is refused before tokenizing, and /health answers meanwhile", async () => {
    const srv = await shared();
    expect((await srv.request("/admin/v1/models/qwen2-tiny/load", { method: "POST", json: {} })).status).toBe(200);
    for (const [path, payload] of [
      ["/v1/chat/completions", { messages: [{ role: "user", content: "word ".repeat(3_000_000) }] }],
      ["/v1/completions", { prompt: "word ".repeat(3_000_000) }],
    ] as const) {
      const body = JSON.stringify({ model: "qwen2-tiny", ...payload });
      await bounded({ ms: 5_000, rssMb: 400 }, async () => {
        const work = srv.request(path, { method: "POST", headers: { "content-type": "application/json" }, body });
        await healthWhile(srv, work);
        const res = await work;
        expect(res.status).toBe(400);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe("context_length_exceeded");
      });
    }
    await stillChats(srv);
  });

  test("JSON nested 100,000 deep is refused before parsing", async () => {
    const srv = await shared();
    await bounded({ ms: 3_000, rssMb: 100 }, async () => {
      const deep = `{"model":"qwen2-tiny","messages":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
      const work = srv.request("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: deep });
      await healthWhile(srv, work);
      const res = await work;
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("json_too_deep");
      // Ordinary nesting is only a validation error.
      const ok = `{"model":"qwen2-tiny","messages":[],"x":${"[".repeat(30)}${"]".repeat(30)}}`;
      const shallow = await srv.request("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: ok });
      expect(((await shallow.json()) as { error: { code: string } }).error.code).not.toBe("json_too_deep");
    });
    await stillChats(srv);
  });

  test("a 50,000-value enum or a deep schema is refused at once; a tool schema too", async () => {
    const srv = await shared();
    const ask = (extra: object) => srv.request("/v1/chat/completions", { method: "POST", json: { model: "qwen2-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 4, ...extra } });
    const hugeEnum = { type: "string", enum: Array.from({ length: 50_000 }, (_, i) => `v${i}`) };
    let deep: object = { type: "string" };
    for (let i = 0; i < 40; i++) deep = { type: "object", properties: { a: deep } };
    await bounded({ ms: 5_000, rssMb: 200 }, async () => {
      const work = ask({ response_format: { type: "json_schema", json_schema: { name: "x", schema: hugeEnum } } });
      await healthWhile(srv, work);
      const res = await work;
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string; param: string } }).error).toMatchObject({ code: "schema_too_large" });
      const deepRes = await ask({ response_format: { type: "json_schema", json_schema: { name: "x", schema: deep } } });
      expect(deepRes.status).toBe(400);
      const tool = await ask({ tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { p: hugeEnum } } } }] });
      expect(tool.status).toBe(400);
      expect(((await tool.json()) as { error: { param: string } }).error.param).toBe("tools[0].function.parameters");
      // Small in bytes, but more values than a grammar should hold.
      const manyValues = { type: "object", properties: { p: { enum: Array.from({ length: 1000 }, (_, i) => i) } } };
      const count = await ask({ tools: [{ type: "function", function: { name: "f", parameters: manyValues } }] });
      expect(((await count.json()) as { error: { param: string } }).error.param).toBe("tools[0].function.parameters.properties.p.enum");
    });
    await stillChats(srv);
  });

  test("idle keep-alive connections are closed; a long silent generation or a quiet stream is not", async () => {
    await using srv = await startTestServer([...MODEL, "--idle-timeout", "1"]);
    const port = srv.server.port;
    // Loaded first: the bound is on what the connections cost, not on loading the model (its
    // KV cache and buffers alone came to 733 MB of growth once).
    await stillChats(srv);
    // The runtime's idle timer ticks in 4 s steps, so "1 s" closes within ~8 s.
    await bounded({ ms: 60_000, rssMb: 600 }, async () => {
      const t0 = performance.now();
      const res = await raw(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      expect(statusOf(res)).toBe(200);
      expect(performance.now() - t0).toBeLessThan(10_000);
      // A non-streamed generation sends nothing until it is done; it must outlive the idle timeout.
      const body = JSON.stringify({ model: "qwen2-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 400, ignore_eos: true, temperature: 0 });
      const slow = raw(port, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      // Queue it behind busy slots so that it waits silently for longer than the timeout.
      const busy = Array.from({ length: 4 }, () => srv.request("/v1/chat/completions", { method: "POST", json: { model: "qwen2-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 1500, ignore_eos: true } }));
      const answer = await slow;
      expect(statusOf(answer)).toBe(200);
      expect(answer).toContain("chat.completion");
      await Promise.all(busy);
      // A finished stream gives its keep-alive connection back to the idle timeout: it is closed.
      const streamed = JSON.stringify({ model: "qwen2-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 8, stream: true });
      const t1 = performance.now();
      const events = await raw(port, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${streamed.length}\r\n\r\n${streamed}`);
      expect(events).toContain("data: [DONE]");
      expect(performance.now() - t1).toBeLessThan(15_000);
      // A quiet stream (the event feed pings every 15 s) outlives the idle timeout too.
      let feed = "";
      let closed = false;
      const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data(_s, d) { feed += d.toString(); }, close() { closed = true; } } });
      socket.write("GET /admin/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      await Bun.sleep(10_000);
      expect(closed).toBe(false);
      expect((await srv.request("/admin/v1/models/qwen2-tiny/unload", { method: "POST" })).status).toBe(200);
      await Bun.sleep(200);
      expect(feed).toContain("model.unloaded");
      socket.end();
    });
    await stillChats(srv);
  }, 120_000);

  test("many open connections: new requests get 503 with a clear error until they go", async () => {
    await using srv = await startTestServer([...MODEL, "--max-connections", "16"]);
    const sockets = await Promise.all(Array.from({ length: 40 }, () => Bun.connect({ hostname: "127.0.0.1", port: srv.server.port, socket: { data() {} } })));
    await Bun.sleep(1_200);
    const res = await fetch(srv.url + "/v1/models");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("--max-connections");
    for (const s of sockets) s.end();
    await Bun.sleep(1_200);
    await stillChats(srv);
  });
});

describe("port clash", () => {
  test("a second lmx serve on the same port exits non-zero naming the first", async () => {
    const srv = await shared();
    const home = mkdtempSync(join(tmpdir(), "lmx-second-"));
    try {
      const second = Bun.spawn([process.execPath, join(REPO_ROOT, "src/cli/main.ts"), "serve", "--port", String(srv.server.port), "--model", fixtures.qwen2Tiny], {
        env: { ...process.env, LMX_HOME: home }, stdout: "pipe", stderr: "pipe",
      });
      const timer = setTimeout(() => second.kill(), 30_000);
      const code = await second.exited;
      clearTimeout(timer);
      const err = await new Response(second.stderr).text();
      expect(code).not.toBe(0);
      expect(err).toContain("another lmx (version");
      // Every request still lands on the first server.
      for (let i = 0; i < 5; i++) expect((await fetch(srv.url + "/health")).status).toBe(200);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
    await stillChats(srv);
  }, 60_000);
});

describe("the first API key", () => {
  test("an inference key on a keyless server comes with an admin key, and the last admin key cannot be revoked", async () => {
    await using srv = await startTestServer(MODEL);
    const res = await srv.request("/admin/v1/keys", { method: "POST", json: { scope: "inference" } });
    expect(res.status).toBe(200);
    const first = (await res.json()) as { key: string; scope: string; admin_key: { key: string; scope: string; id: string } };
    expect(first.scope).toBe("inference");
    expect(first.admin_key.scope).toBe("admin");
    const admin = { authorization: `Bearer ${first.admin_key.key}` };
    expect((await srv.request("/admin/v1/keys")).status).toBe(401);
    expect((await srv.request("/admin/v1/keys", { headers: { authorization: `Bearer ${first.key}` } })).status).toBe(403);
    expect((await srv.request("/admin/v1/keys", { headers: admin })).status).toBe(200);
    const revoke = await srv.request(`/admin/v1/keys/${first.admin_key.id}`, { method: "DELETE", headers: admin });
    expect(revoke.status).toBe(409);
    // A second inference key is just that.
    const second = (await (await srv.request("/admin/v1/keys", { method: "POST", headers: admin, json: { scope: "inference" } })).json()) as { admin_key?: unknown };
    expect(second.admin_key).toBeUndefined();
    const chat = await srv.request("/v1/chat/completions", { method: "POST", headers: { authorization: `Bearer ${first.key}` }, json: { model: "qwen2-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 } });
    expect(chat.status).toBe(200);
  });
});
