import { describe, expect, test } from "bun:test";
import { UsageError } from "../src/errors.ts";
import { fixtures } from "./fixtures/models.ts";
import { startTestServer } from "./helpers/server.ts";

const model = ["--model", fixtures.stories260K, "--ctx", "256"];

describe("API keys", () => {
  test("every route but /health needs the key when one is configured", async () => {
    await using srv = await startTestServer([...model, "--api-key", "sekrit-1", "--api-key", "sekrit-2"]);
    expect((await srv.request("/health")).status).toBe(200);
    const none = await srv.request("/v1/models");
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe("invalid_api_key");
    expect((await srv.request("/v1/models", { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await srv.request("/v1/models", { headers: { authorization: "Bearer sekrit-1" } })).status).toBe(200);
    expect((await srv.request("/v1/models", { headers: { authorization: "Bearer sekrit-2" } })).status).toBe(200);
    // The reference page is opened by a browser navigation, which cannot send the key.
    expect((await srv.request("/docs/json")).status).toBe(200);
    const chat = await srv.request("/v1/chat/completions", {
      method: "POST", headers: { authorization: "Bearer sekrit-2" },
      json: { model: "stories260K", messages: [{ role: "user", content: "hi" }], max_tokens: 2 },
    });
    expect(chat.status).toBe(200);
  });

  test("keys from LMX_API_KEYS (comma-separated)", async () => {
    await using srv = await startTestServer(model, { env: { LMX_API_KEYS: "k1,k2" } });
    expect((await srv.request("/v1/models")).status).toBe(401);
    expect((await srv.request("/v1/models", { headers: { authorization: "Bearer k2" } })).status).toBe(200);
  });

  test("binding a non-loopback address without a key is refused unless --insecure-no-auth", async () => {
    await expect(startTestServer([...model, "--host", "0.0.0.0"])).rejects.toBeInstanceOf(UsageError);
    await using open = await startTestServer([...model, "--host", "0.0.0.0", "--insecure-no-auth"]);
    expect((await fetch(`http://127.0.0.1:${open.server.port}/health`)).status).toBe(200);
    await using keyed = await startTestServer([...model, "--host", "0.0.0.0", "--api-key", "k"]);
    expect((await fetch(`http://127.0.0.1:${keyed.server.port}/v1/models`)).status).toBe(401);
  });
});

describe("Host header (DNS rebinding)", () => {
  // fetch() refuses to set Host, so speak HTTP/1.1 over a raw socket.
  async function rawGet(port: number, host: string, path = "/v1/models"): Promise<number> {
    const response = await new Promise<string>((resolve, reject) => {
      let data = "";
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open(s) { s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`); },
          data(_s, chunk) { data += chunk.toString(); },
          close() { resolve(data); },
          error(_s, err) { reject(err); },
        },
      }).catch(reject);
    });
    return Number(response.split(" ")[1]);
  }

  test("foreign names are refused; loopback names, IPs and --allowed-host pass", async () => {
    await using srv = await startTestServer([...model, "--allowed-host", "lmx.home.arpa"]);
    const port = srv.server.port;
    expect(await rawGet(port, "evil.example")).toBe(403);
    expect(await rawGet(port, `evil.example:${port}`)).toBe(403);
    expect(await rawGet(port, `localhost:${port}`)).toBe(200);
    expect(await rawGet(port, `127.0.0.1:${port}`)).toBe(200);
    expect(await rawGet(port, `[::1]:${port}`)).toBe(200);
    expect(await rawGet(port, `lmx.home.arpa:${port}`)).toBe(200);
  });
});

describe("CORS", () => {
  test("off by default", async () => {
    await using srv = await startTestServer(model);
    // A page on another origin is refused outright (CSRF defence), not just denied CORS headers.
    const res = await srv.request("/v1/models", { headers: { origin: "http://app.example" } });
    expect(res.status).toBe(403);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    const pre = await srv.request("/v1/models", { method: "OPTIONS", headers: { origin: "http://app.example", "access-control-request-method": "GET" } });
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("allow-listed origins only", async () => {
    await using srv = await startTestServer([...model, "--cors-origin", "http://app.example"]);
    const ok = await srv.request("/v1/models", { headers: { origin: "http://app.example" } });
    expect(ok.headers.get("access-control-allow-origin")).toBe("http://app.example");
    const other = await srv.request("/v1/models", { headers: { origin: "http://other.example" } });
    expect(other.status).toBe(403);
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    const pre = await srv.request("/v1/chat/completions", {
      method: "OPTIONS",
      headers: { origin: "http://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-headers")).toContain("authorization");
    const err = await srv.request("/v1/nothing", { headers: { origin: "http://app.example" } });
    expect(err.status).toBe(404);
    expect(err.headers.get("access-control-allow-origin")).toBe("http://app.example");
  });
});

describe("docs", () => {
  test("the page and its embedded script are served by LMX without a key", async () => {
    await using srv = await startTestServer([...model, "--api-key", "k"]);
    const page = await srv.request("/docs");
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('src="/docs/scalar.js"');
    const script = await srv.request("/docs/scalar.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toContain("application/javascript");
    expect((await script.arrayBuffer()).byteLength).toBeGreaterThan(1_000_000);
    expect((await srv.request("/admin/v1/models")).status).toBe(401);
  });

  test("OpenAPI JSON is generated from the valibot schemas", async () => {
    await using srv = await startTestServer(model);
    const doc = (await (await srv.request("/docs/json")).json()) as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown> } }> } }>> };
    const chat = doc.paths["/v1/chat/completions"]!.post!.requestBody!.content["application/json"]!.schema;
    expect(Object.keys(chat.properties)).toEqual(expect.arrayContaining(["model", "messages", "tools", "response_format", "max_tokens", "logit_bias", "chat_template_kwargs"]));
    // Every JSON route documents its body: one rule JSON Schema cannot express once dropped them all.
    for (const [path, method] of [["/v1/completions", "post"], ["/v1/embeddings", "post"]] as const) {
      const body = doc.paths[path]![method]!.requestBody?.content["application/json"]?.schema;
      expect(Object.keys(body?.properties ?? {})).toContain("model");
    }
    expect(JSON.stringify(chat.properties.logit_bias)).toContain('"maxProperties":1024');
  });
});
