// Peers end to end: three real `lmx serve` processes on 127.0.0.1 ("laptop" with peers "studio",
// which wants an API key, and "gpu"), and a small OpenAI-compatible stub ("stub") only for the
// failures a real server does not make on demand: a slow first byte, 503, a stream cut midway.
// Clients are the official OpenAI and Anthropic SDKs. Peers are listed by name ("stub" < "studio").
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Anthropic from "@anthropic-ai/sdk";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import OpenAI from "openai";
import { serveProcess, type ServeProcess } from "./helpers/serve-process.ts";
import { until } from "./helpers/until.ts";

const MODEL = resolve(import.meta.dir, "..", "../shared/models/stories260K.gguf");
const MAIN = join(import.meta.dir, "..", "src", "cli", "main.ts");
const STUDIO_KEY = "sk-studio-admin";
const homes: string[] = [];
const home = () => {
  const dir = mkdtempSync(join(tmpdir(), "lmx-peers-"));
  homes.push(dir);
  return dir;
};

type StubMode = "ok" | "503" | "slow" | "drip";
let stubMode: StubMode = "ok";
const stubAborts: string[] = [];

/** OpenAI-compatible enough for the failures under test: /v1/models and streamed chat. */
const stub = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  idleTimeout: 30,
  async fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/v1/models") return Response.json({ object: "list", data: [{ id: "stub-model", object: "model" }] });
    if (stubMode === "503") return Response.json({ error: { message: "busy", type: "server_error", param: null, code: null } }, { status: 503 });
    const chunk = (content: string) => new TextEncoder().encode(`data: ${JSON.stringify({ id: "s", object: "chat.completion.chunk", created: 0, model: "stub-model", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`);
    const mode = stubMode;
    req.signal.addEventListener("abort", () => stubAborts.push(mode), { once: true });
    return new Response(new ReadableStream<Uint8Array>({
      async start(c) {
        if (mode === "slow") await Bun.sleep(10_000);
        c.enqueue(chunk("from stub"));
        for (let i = 0; mode === "drip" && i < 100 && !req.signal.aborted; i++) {
          await Bun.sleep(50);
          c.enqueue(chunk("."));
        }
        c.enqueue(new TextEncoder().encode("data: [DONE]\n\n"));
        c.close();
      },
    }), { headers: { "content-type": "text/event-stream" } });
  },
});

/**
 * A peer whose connection breaks midway through a streamed answer: raw HTTP over TCP, as an HTTP
 * server always ends a response it started properly.
 */
const cutter = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data(socket, data) {
      const request = data.toString();
      if (!request.includes("\r\n\r\n")) return;
      if (request.startsWith("GET /v1/models")) {
        const body = JSON.stringify({ object: "list", data: [{ id: "cut-model", object: "model" }] });
        socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
        return;
      }
      const event = `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 0, model: "cut-model", choices: [{ index: 0, delta: { content: "from cutter" }, finish_reason: null }] })}\n\n`;
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n${event.length.toString(16)}\r\n${event}\r\n`);
      setTimeout(() => socket.terminate(), 50);
    },
  },
});

let studio: ServeProcess;
let studioPort: number;
let studioHome: string;
let gpu: ServeProcess;
let laptop: ServeProcess;
let client: OpenAI;

const startStudio = async (port = 0) => serveProcess(studioHome, ["--model", `b=${MODEL}`, "--api-key", STUDIO_KEY, "--port", String(port)]);


const peerState = async (name: string) => {
  const { data } = (await (await laptop.request("/admin/v1/peers")).json()) as { data: { name: string; state: string }[] };
  return data.find((p) => p.name === name)?.state;
};

beforeAll(async () => {
  studioHome = home();
  [studio, gpu] = await Promise.all([startStudio(), serveProcess(home(), ["--model", `c=${MODEL}`])]);
  studioPort = Number(new URL(studio.url).port);
  const laptopHome = home();
  // studio's key comes from the laptop's environment, named in config.json; gpu from the flag.
  writeFileSync(join(laptopHome, "config.json"), JSON.stringify({
    peers: [{ name: "studio", url: `${studio.url}/v1`, apiKey: "env:STUDIO_KEY" }],
    routes: { coder: ["stub/stub-model", "studio/b", "gpu/c"], cut: ["cutter/cut-model", "studio/b"] },
  }));
  laptop = await serveProcess(laptopHome, [
    "--model", `a=${MODEL}`, "--peer", `gpu=${gpu.url}`, "--peer", `stub=http://127.0.0.1:${stub.port}`, "--peer", `cutter=http://127.0.0.1:${cutter.port}`,
    "--peer-poll", "1", "--peer-first-byte-timeout", "4",
  ], { STUDIO_KEY, WRONG_KEY: "sk-wrong" });
  client = new OpenAI({ baseURL: laptop.url + "/v1", apiKey: "unused", maxRetries: 0 });
  await until("every peer up", async () => (await peerState("studio")) === "up" && (await peerState("gpu")) === "up" && (await peerState("stub")) === "up" && (await peerState("cutter")) === "up");
}, 60_000);

afterAll(async () => {
  for (const p of [laptop, studio, gpu]) p?.proc.kill("SIGKILL");
  await stub.stop(true);
  cutter.stop(true);
  for (const dir of homes) rmSync(dir, { recursive: true, force: true });
});

const ask = { messages: [{ role: "user" as const, content: "Once upon a time" }], max_tokens: 24, temperature: 0, seed: 7 };

describe("peers", () => {
  test("/v1/models lists each node's models; the admin API shows health, never a key", async () => {
    const models: { id: string; node?: string; state?: string }[] = [];
    for await (const m of client.models.list()) models.push(m as { id: string; node?: string });
    expect(models.map((m) => [m.id, m.node])).toEqual([["a", "local"], ["cut-model", "cutter"], ["c", "gpu"], ["stub-model", "stub"], ["b", "studio"]]);
    const text = await (await laptop.request("/admin/v1/peers")).text();
    expect(text).not.toContain(STUDIO_KEY);
    expect(JSON.parse(text).data.find((p: { name: string }) => p.name === "studio")).toMatchObject({ state: "up", models: ["b"], has_api_key: true, api_key_env: "STUDIO_KEY" });
  });

  test("a stream through the peer is the stream the peer sends directly (same seed, temperature 0)", async () => {
    const direct = new OpenAI({ baseURL: studio.url + "/v1", apiKey: STUDIO_KEY, maxRetries: 0 });
    const collect = async (c: OpenAI, model: string) => {
      const { data: stream, response } = await c.chat.completions.create({ ...ask, model, stream: true }).withResponse();
      let text = "";
      let answeredBy = "";
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? "";
        answeredBy = chunk.model;
      }
      return { text, node: response.headers.get("x-lmx-node"), answeredBy };
    };
    const [viaPeer, straight] = [await collect(client, "b"), await collect(direct, "b")];
    expect(viaPeer.text.length).toBeGreaterThan(10);
    expect(viaPeer).toEqual({ ...straight, node: "studio" });
    expect(straight.node).toBe("local");
    const { response } = await client.chat.completions.create({ ...ask, model: "a" }).withResponse();
    expect(response.headers.get("x-lmx-node")).toBe("local");
    const completion = await client.completions.create({ model: "studio/b", prompt: "Once", max_tokens: 8, temperature: 0 });
    expect(completion.model).toBe("b");
    expect(completion.choices[0]!.text.length).toBeGreaterThan(0);
    const embedding = await client.embeddings.create({ model: "gpu/c", input: "hello" });
    expect(embedding.data[0]!.embedding.length).toBeGreaterThan(0);
  });

  test("Responses, Anthropic Messages and Ollama reach the peer in their own shapes, streamed too", async () => {
    const response = await client.responses.create({ model: "b", input: "Once", max_output_tokens: 8, temperature: 0 });
    expect(response.model).toBe("b");
    expect(response.output_text.length).toBeGreaterThan(0);
    const anthropic = new Anthropic({ baseURL: laptop.url, apiKey: "unused", maxRetries: 0 });
    const msg = await anthropic.messages.create({ model: "c", max_tokens: 8, messages: [{ role: "user", content: "Once" }] });
    expect(msg.content[0]!.type).toBe("text");
    const stream = anthropic.messages.stream({ model: "c", max_tokens: 8, messages: [{ role: "user", content: "Once" }] });
    expect((await stream.finalMessage()).stop_reason).toBe("max_tokens");
    const ndjson = await laptop.request("/api/chat", { method: "POST", json: { model: "b", messages: [{ role: "user", content: "Once" }], options: { num_predict: 4 } } });
    expect([ndjson.headers.get("x-lmx-node"), ndjson.headers.get("content-type")]).toEqual(["studio", expect.stringMatching(/ndjson/)]);
    const lines = (await ndjson.text()).trim().split("\n").map((l) => JSON.parse(l) as { done: boolean });
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.at(-1)!.done).toBe(true);
    const ollama = await laptop.request("/api/generate", { method: "POST", json: { model: "b", prompt: "Once", stream: false, options: { num_predict: 4 } } });
    expect(ollama.headers.get("x-lmx-node")).toBe("studio");
    expect(((await ollama.json()) as { done: boolean }).done).toBe(true);
  });

  test("a fallback chain skips a refusing and a silent target in order; a cut stream is the client's error", async () => {
    stubMode = "ok";
    const ok = await client.chat.completions.create({ ...ask, model: "coder" }).withResponse();
    expect(ok.response.headers.get("x-lmx-node")).toBe("stub");
    stubMode = "503";
    const refused = await client.chat.completions.create({ ...ask, model: "coder" }).withResponse();
    expect(refused.response.headers.get("x-lmx-node")).toBe("studio");
    expect(refused.data.model).toBe("b");
    stubMode = "slow";
    const started = Date.now();
    const slow = await client.chat.completions.create({ ...ask, model: "coder", stream: true }).withResponse();
    for await (const _ of slow.data) { /* drain */ }
    expect(Date.now() - started).toBeLessThan(8000);
    expect(slow.response.headers.get("x-lmx-node")).toBe("studio");
    // The first-byte bound cancelled the slow request upstream.
    await until("the stub to see the slow request cancelled", async () => stubAborts.includes("slow"), 3000);
    const cut = await client.chat.completions.create({ ...ask, model: "cut", stream: true });
    let got = "";
    await expect((async () => {
      for await (const chunk of cut) got += chunk.choices[0]?.delta?.content ?? "";
    })()).rejects.toThrow();
    expect(got).toBe("from cutter");
    // A client that goes away mid-stream cancels the request on the peer.
    stubMode = "drip";
    const controller = new AbortController();
    const drip = await client.chat.completions.create({ ...ask, model: "stub-model", stream: true }, { signal: controller.signal });
    for await (const _ of drip) break;
    controller.abort();
    await until("the stub to see the dripping request cancelled", async () => stubAborts.includes("drip"), 3000);
    stubMode = "ok";
  });

  test("a peer killed mid-run is down: 503 at once for its models, chains pass it; back up, it serves again", async () => {
    stubMode = "503";
    // The events stream, read from before the kill until studio is back.
    const events = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      const res = await laptop.request("/admin/v1/events", { signal: events.signal });
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body!) {
          for (const m of decoder.decode(chunk, { stream: true }).matchAll(/event: (peer\.\w+)\ndata: (.*)\n/g)) {
            if ((JSON.parse(m[2]!) as { peer: string }).peer === "studio") seen.push(m[1]!);
          }
        }
      } catch {
        // Aborted at the end of the test.
      }
    })();
    await until("the events stream to open", async () => true);
    studio.proc.kill("SIGKILL");
    await studio.proc.exited;
    // The first request to find it gone marks it down; the poll would within a second anyway.
    await until("studio down", async () => (await client.chat.completions.create({ ...ask, model: "b" }).then(() => false, () => true)) && (await peerState("studio")) === "down");
    const started = Date.now();
    const err = await client.chat.completions.create({ ...ask, model: "b" }).then(() => undefined, (e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(500);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe("model_unavailable");
    const listed = [];
    for await (const m of client.models.list()) listed.push(m as { id: string; state?: string });
    expect(listed.find((m) => m.id === "b")).toMatchObject({ state: "unavailable" });
    const chained = await client.chat.completions.create({ ...ask, model: "coder" }).withResponse();
    expect(chained.response.headers.get("x-lmx-node")).toBe("gpu");
    expect(chained.data.model).toBe("c");
    studio = await startStudio(studioPort);
    await until("studio up", async () => (await peerState("studio")) === "up");
    const back = await client.chat.completions.create({ ...ask, model: "coder" }).withResponse();
    expect(back.response.headers.get("x-lmx-node")).toBe("studio");
    await until("peer.up on the events stream", async () => seen.includes("peer.up"), 3000);
    events.abort();
    await reading;
    expect(seen).toEqual(["peer.down", "peer.up"]);
    stubMode = "ok";
  }, 30_000);

  test("lmx peers add / ls / rm; a wrong key is auth_error", async () => {
    const lmx = async (...args: string[]) => {
      const p = Bun.spawn([process.execPath, MAIN, "peers", ...args, "--url", laptop.url], { stdout: "pipe", stderr: "pipe" });
      const [out, errText, code] = [await new Response(p.stdout).text(), await new Response(p.stderr).text(), await p.exited];
      return { out, err: errText, code };
    };
    const added = await lmx("add", "studio2", studio.url, "--api-key-env", "WRONG_KEY");
    expect(added).toMatchObject({ code: 0, out: expect.stringMatching(/added peer studio2 .*auth_error/) });
    const ls = await lmx("ls", "--json");
    expect(ls.code).toBe(0);
    expect(ls.out).not.toContain("sk-wrong");
    expect(JSON.parse(ls.out).find((p: { name: string }) => p.name === "studio2")).toMatchObject({ state: "auth_error", api_key_env: "WRONG_KEY", source: "admin" });
    expect((await lmx("ls")).out).toMatch(/studio2\s+http:\/\/127\.0\.0\.1:\d+\s+auth_error/);
    expect(await lmx("rm", "studio2")).toMatchObject({ code: 0, out: "removed peer studio2\n" });
    expect(await lmx("rm", "studio")).toMatchObject({ code: 1, err: expect.stringMatching(/configuration/) });
  });

  test("lmx load PEER/MODEL loads the model on the peer, with the peer's admin key", async () => {
    const p = Bun.spawn([process.execPath, MAIN, "load", "studio/b", "--ctx", "256", "--url", laptop.url], { stdout: "pipe", stderr: "pipe" });
    const [out, code] = [await new Response(p.stdout).text(), await p.exited];
    expect({ out, code }).toMatchObject({ code: 0, out: expect.stringMatching(/^loaded b: context 256/) });
    const ps = (await (await studio.request("/admin/v1/ps", { headers: { authorization: `Bearer ${STUDIO_KEY}` } })).json()) as { data: { id: string; loaded_context_length: number }[] };
    expect(ps.data).toEqual([expect.objectContaining({ id: "b", loaded_context_length: 256 })]);
    const unloaded = await laptop.request("/admin/v1/models/studio/b/unload", { method: "POST" });
    expect(unloaded.headers.get("x-lmx-node")).toBe("studio");
    expect(unloaded.status).toBe(200);
  });
});
