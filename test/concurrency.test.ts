import { describe, expect, test } from "bun:test";
import { ensureFixtures } from "./fixtures/models.ts";
import { readSse, startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();

// The random qwen2 model almost never emits end-of-generation, so a large max_tokens keeps a
// sequence busy for many seconds: long enough to observe queueing and aborts.
const long = { model: "qwen2-tiny", messages: [{ role: "user", content: "go" }], max_tokens: 3500, seed: 1 };

async function status(srv: TestServer, id = "qwen2-tiny") {
  const s = (await srv.server.scheduler.list()).find((m) => m.descriptor.id === id)!;
  return { running: s.running, queued: s.queued };
}

async function waitFor(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(20);
  }
  return false;
}

/** Starts a streamed request and resolves once its first content chunk arrived. */
async function startStream(srv: TestServer, controller: AbortController) {
  const res = await srv.request("/v1/chat/completions", { method: "POST", json: { ...long, stream: true }, signal: controller.signal });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  await reader.read();
  return reader;
}

describe("concurrency", () => {
  test("N concurrent streams on one model all complete", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "4", "--ctx", "512"]);
    const n = 10;
    const runs = await Promise.all(Array.from({ length: n }, (_, i) =>
      srv.request("/v1/chat/completions", {
        method: "POST",
        json: { model: "stories260K", messages: [{ role: "user", content: `Story ${i}` }], max_tokens: 48, seed: i, stream: true },
      }).then(readSse)));
    for (const r of runs) {
      expect(r.done).toBe(true);
      const chunks = r.events as { choices: { delta: { content?: string }; finish_reason: string | null }[] }[];
      expect(chunks.at(-1)!.choices[0]!.finish_reason).not.toBeNull();
    }
    expect((await status(srv, "stories260K")).running).toBe(0);
  });

  test("a client that disconnects mid-stream frees its sequence at once", async () => {
    await using srv = await startTestServer(["--model", fx.qwen2Tiny, "--parallel", "1", "--ctx", "4096"]);
    const a = new AbortController();
    await startStream(srv, a);
    expect(await status(srv)).toEqual({ running: 1, queued: 0 });
    a.abort();
    // Generating the remaining ~3500 tokens would take many seconds; freeing must not wait for it.
    expect(await waitFor(async () => (await status(srv)).running === 0, 2000)).toBe(true);
    const res = await srv.request("/v1/chat/completions", { method: "POST", json: { ...long, max_tokens: 3 } });
    expect(res.status).toBe(200);
  });

  test("a non-streamed request is aborted when its client goes away", async () => {
    await using srv = await startTestServer(["--model", fx.qwen2Tiny, "--parallel", "1", "--ctx", "4096"]);
    const a = new AbortController();
    const pending = srv.request("/v1/chat/completions", { method: "POST", json: long, signal: a.signal }).catch((e: Error) => e);
    expect(await waitFor(async () => (await status(srv)).running === 1, 15000)).toBe(true);
    await Bun.sleep(200);
    a.abort();
    expect(await pending).toBeInstanceOf(Error);
    expect(await waitFor(async () => (await status(srv)).running === 0, 2000)).toBe(true);
  });

  test("requests beyond --parallel queue; beyond --queue they get a fast 503; a queued client that leaves is dropped", async () => {
    await using srv = await startTestServer(["--model", fx.qwen2Tiny, "--parallel", "1", "--queue", "1", "--ctx", "4096"]);
    const a = new AbortController();
    await startStream(srv, a);

    const b = new AbortController();
    const queued = srv.request("/v1/chat/completions", { method: "POST", json: { ...long, max_tokens: 2 }, signal: b.signal }).catch((e: Error) => e);
    expect(await waitFor(async () => (await status(srv)).queued === 1, 2000)).toBe(true);

    const t0 = performance.now();
    const refused = await srv.request("/v1/chat/completions", { method: "POST", json: { ...long, max_tokens: 2 } });
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("server_overloaded");

    b.abort();
    expect(await queued).toBeInstanceOf(Error);
    expect(await waitFor(async () => (await status(srv)).queued === 0, 2000)).toBe(true);
    expect((await status(srv)).running).toBe(1);

    // Once the running request ends, a new one gets the sequence.
    a.abort();
    const after = await srv.request("/v1/chat/completions", { method: "POST", json: { ...long, max_tokens: 2 } });
    expect(after.status).toBe(200);
  });

  test("a queued request runs when a sequence frees up", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "1", "--queue", "8", "--ctx", "512"]);
    const req = (i: number) => srv.request("/v1/chat/completions", {
      method: "POST", json: { model: "stories260K", messages: [{ role: "user", content: `Tale ${i}` }], max_tokens: 16, seed: i },
    });
    const results = await Promise.all([req(1), req(2), req(3), req(4)]);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
  });

  test("concurrent requests for a cold model trigger one load", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "2", "--ctx", "256"]);
    let loads = 0;
    const original = srv.server.scheduler.resolveLoad.bind(srv.server.scheduler);
    srv.server.scheduler.resolveLoad = async (...args) => {
      loads++;
      return original(...args);
    };
    const results = await Promise.all(Array.from({ length: 5 }, () => srv.request("/v1/chat/completions", {
      method: "POST", json: { model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 },
    })));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(loads).toBe(1);
  });
});

