// SIGTERM/SIGINT in every phase (loading, prefill, streaming, download, after failed loads): the
// server exits 0 within its grace period plus a bounded margin, in-flight work that fits the grace
// finishes, the database passes SQLite's integrity check, and a second signal exits at once.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { Database } from "bun:sqlite";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureFixtures } from "../fixtures/models.ts";
import { integrityCheck, serveProcess, type ServeProcess } from "../helpers/serve-process.ts";
import { startTestServer } from "../helpers/server.ts";
import { demoRepos, startFakeHub } from "../hub/fake-hub.ts";

const fx = ensureFixtures();
/** Shutdown steps after the grace are bounded at 3 s each (unload, engine, HTTP); start-up noise on a busy machine on top. */
const MARGIN_MS = 12_000;
const homes: string[] = [];
const newHome = () => {
  const home = mkdtempSync(join(tmpdir(), "lmx-signals-"));
  homes.push(home);
  return home;
};
afterAll(() => {
  for (const home of homes.splice(0)) rmSync(home, { recursive: true, force: true });
});

/** Waits for the exit, killing the server (and failing) if it takes longer than `ms`. */
async function exitWithin(p: ServeProcess, exited: Promise<{ code: number; ms: number }>, ms: number) {
  const timer = setTimeout(() => p.proc.kill("SIGKILL"), ms);
  const result = await exited;
  clearTimeout(timer);
  if (result.ms >= ms) throw new Error(`server did not exit within ${ms} ms; its log:\n${p.log().slice(-4000)}`);
  return result;
}

async function firstChunk(res: Response) {
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  await reader.read();
  return reader;
}

async function drain(reader: { read(): Promise<{ value?: Uint8Array; done: boolean }> }): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    return text;
  }
}

const chat = (model: string, max: number, stream: boolean, content = "go") => ({ model, messages: [{ role: "user", content }], max_tokens: max, seed: 1, stream });

describe("shutdown after failed loads", () => {
  test("stop() finishes although llama.cpp never disposes after failed loads", async () => {
    const home = newHome();
    const broken = join(home, "broken.gguf");
    writeFileSync(broken, readFileSync(fx.qwen2Tiny).subarray(0, 8_000_000));
    const srv = await startTestServer(["--model", broken, "--ctx", "256", "--parallel", "1"], { home });
    for (let i = 0; i < 2; i++) {
      const res = await srv.request("/v1/chat/completions", { method: "POST", json: chat("broken", 4, false) });
      expect(res.status).toBeGreaterThanOrEqual(400);
    }
    const started = Date.now();
    const stopped = await Promise.race([srv.server.stop().then(() => true), Bun.sleep(10_000).then(() => false)]);
    expect({ stopped, withinMs: Date.now() - started < 10_000 }).toEqual({ stopped: true, withinMs: true });
    expect(integrityCheck(home)).toBe("ok");
  }, 60_000);
});

describe("signals", () => {
  test("after failed loads, a load, an unload and a concurrent run, SIGTERM exits 0 (llama.cpp's dispose no longer hangs it)", async () => {
    const home = newHome();
    // Truncated: llama.cpp reads the header, then fails to load the tensors.
    const broken = join(home, "broken.gguf");
    writeFileSync(broken, readFileSync(fx.qwen2Tiny).subarray(0, 8_000_000));
    const p = await serveProcess(home, ["--model", broken, "--model", fx.stories260K, "--ctx", "256", "--parallel", "2", "--shutdown-grace", "2"]);
    for (let i = 0; i < 3; i++) {
      const res = await p.request("/v1/chat/completions", { method: "POST", json: chat("broken", 4, false) });
      expect(res.status).toBeGreaterThanOrEqual(400);
    }
    const runs = await Promise.all(Array.from({ length: 4 }, () => p.request("/v1/completions", { method: "POST", json: { model: "stories260K", prompt: "Once", max_tokens: 16 } })));
    for (const r of runs) expect(r.status).toBe(200);
    expect((await p.request("/admin/v1/models/stories260K/unload", { method: "POST" })).status).toBe(200);
    expect((await p.request("/v1/completions", { method: "POST", json: { model: "stories260K", prompt: "Once", max_tokens: 4 } })).status).toBe(200);
    const { code } = await exitWithin(p, p.signal("SIGTERM").exited, 2000 + MARGIN_MS);
    expect(code).toBe(0);
    expect(integrityCheck(home)).toBe("ok");
  }, 90_000);

  test("SIGTERM while a model loads exits 0", async () => {
    const home = newHome();
    const p = await serveProcess(home, ["--model", fx.qwen2Tiny, "--ctx", "4096", "--parallel", "2", "--shutdown-grace", "2"]);
    const pending = p.request("/v1/chat/completions", { method: "POST", json: chat("qwen2-tiny", 8, false) }).then((r) => r.status, () => "closed");
    await Bun.sleep(30);
    const { code } = await exitWithin(p, p.signal("SIGTERM").exited, 2000 + MARGIN_MS);
    expect(code).toBe(0);
    // Finished within the grace, refused, or cut: never left hanging.
    expect([200, 503, "closed"]).toContain(await pending);
    expect(integrityCheck(home)).toBe("ok");
  }, 90_000);

  test("SIGTERM during a long non-streamed request (prefill, then generation) exits 0 at the end of the grace", async () => {
    const home = newHome();
    const p = await serveProcess(home, ["--model", fx.qwen2Tiny, "--ctx", "4096", "--parallel", "1", "--shutdown-grace", "1"]);
    expect((await p.request("/v1/completions", { method: "POST", json: { model: "qwen2-tiny", prompt: "warm", max_tokens: 1 } })).status).toBe(200);
    const prompt = Array.from({ length: 400 }, (_, i) => `w${i}`).join(" ");
    const pending = p.request("/v1/completions", { method: "POST", json: { model: "qwen2-tiny", prompt, max_tokens: 2500, seed: 1 } }).then((r) => r.status, () => "closed");
    await Bun.sleep(20);
    const { code, ms } = await exitWithin(p, p.signal("SIGTERM").exited, 1000 + MARGIN_MS);
    expect(code).toBe(0);
    expect(ms).toBeGreaterThanOrEqual(900);
    // Cut at the end of the grace: an error answer or a closed connection, never a hang.
    expect([503, "closed"]).toContain(await pending);
    expect(integrityCheck(home)).toBe("ok");
  }, 90_000);

  test("SIGTERM mid-stream: a stream that fits the grace finishes, a longer one is cut when it ends, exit 0", async () => {
    const home = newHome();
    const p = await serveProcess(home, ["--model", fx.qwen2Tiny, "--ctx", "4096", "--parallel", "2", "--shutdown-grace", "3"]);
    const long = await firstChunk(await p.request("/v1/chat/completions", { method: "POST", json: chat("qwen2-tiny", 3500, true) }));
    const short = await firstChunk(await p.request("/v1/chat/completions", { method: "POST", json: chat("qwen2-tiny", 40, true) }));
    const { exited } = p.signal("SIGTERM");
    const [shortText, longText] = await Promise.all([drain(short), drain(long)]);
    const { code, ms } = await exitWithin(p, exited, 3000 + MARGIN_MS);
    expect(code).toBe(0);
    // The short one ends normally; the long one ends with the shutdown's error event.
    expect({ done: shortText.includes('"finish_reason":"length"'), error: shortText.includes('"error"') }).toEqual({ done: true, error: false });
    expect({ done: longText.includes('"finish_reason":"length"'), error: longText.includes('"error"') }).toEqual({ done: false, error: true });
    expect(ms).toBeGreaterThanOrEqual(2500);
    expect(integrityCheck(home)).toBe("ok");
  }, 90_000);

  test("SIGTERM during a stalled download exits 0 at once and leaves the job queued to resume", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    const target = { repo: "ggml-org/tiny-llamas", file: "stories260K.gguf" };
    hub.stallAfter(target, 200_000);
    const home = newHome();
    const p = await serveProcess(home, ["--hub-url", hub.url, "--hub-cache", join(home, "hf"), "--shutdown-grace", "10"]);
    const job = (await (await p.request("/admin/v1/downloads", { method: "POST", json: { model: "ggml-org/tiny-llamas" } })).json()) as { id: string };
    const end = Date.now() + 20_000;
    while (hub.transfersFor(target).length === 0 && Date.now() < end) await Bun.sleep(20);
    await Bun.sleep(300);
    // Downloads resume, so they do not hold the shutdown for the grace period.
    const { code } = await exitWithin(p, p.signal("SIGTERM").exited, MARGIN_MS);
    expect(code).toBe(0);
    expect(integrityCheck(home)).toBe("ok");
    const db = new Database(join(home, "lmx.db"), { readonly: true });
    expect((db.query("SELECT state FROM downloads WHERE id = ?").get(job.id) as { state: string }).state).toBe("queued");
    expect(db.query("SELECT id FROM models").all()).toEqual([]);
    db.close();
  }, 90_000);

  test("a second signal exits at once, leaving a consistent database", async () => {
    const home = newHome();
    const p = await serveProcess(home, ["--model", fx.qwen2Tiny, "--ctx", "4096", "--parallel", "1", "--shutdown-grace", "60"]);
    const long = await firstChunk(await p.request("/v1/chat/completions", { method: "POST", json: chat("qwen2-tiny", 3500, true) }));
    p.proc.kill("SIGTERM");
    await Bun.sleep(300);
    expect(p.proc.exitCode).toBeNull();
    const { code, ms } = await exitWithin(p, p.signal("SIGINT").exited, 5000);
    expect(code).not.toBe(0);
    expect(ms).toBeLessThan(2000);
    await drain(long);
    expect(integrityCheck(home)).toBe("ok");
  }, 90_000);
});
