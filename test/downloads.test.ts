import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { demoRepos, startFakeHub, type FakeHub } from "./hub/fake-hub.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

type Job = { id: string; state: string; error: string | null; model_id: string | null; bytes_done: number; bytes_total: number; note: string | null };

const STORIES = { repo: "ggml-org/tiny-llamas", file: "stories260K.gguf" };

async function pull(srv: TestServer, model: string): Promise<Job> {
  const res = await srv.request("/admin/v1/downloads", { method: "POST", json: { model } });
  expect(res.status).toBe(202);
  return (await res.json()) as Job;
}

async function waitJob(srv: { request: TestServer["request"] }, id: string, states = ["done", "failed", "cancelled"], ms = 30_000): Promise<Job> {
  const end = Date.now() + ms;
  for (;;) {
    const job = (await (await srv.request(`/admin/v1/downloads/${id}`)).json()) as Job;
    if (states.includes(job.state) || Date.now() > end) return job;
    await Bun.sleep(50);
  }
}

function hubArgs(hub: FakeHub, cache: string) {
  return ["--hub-url", hub.url, "--hub-cache", cache, "--ctx", "256", "--parallel", "1"];
}

const newCache = () => mkdtempSync(join(tmpdir(), "lmx-hfcache-"));

describe("downloads", () => {
  test("pull → verified file in the HF cache layout → registered with aliases → serves → rm deletes it", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    const cache = newCache();
    await using srv = await startTestServer(hubArgs(hub, cache));
    const events = srv.request("/admin/v1/events");
    const job = await waitJob(srv, (await pull(srv, "ggml-org/tiny-llamas")).id);
    expect(job.state).toBe("done");
    expect(job.model_id).toBe("stories260K");
    expect(job.bytes_done).toBe(job.bytes_total);

    const snap = join(cache, "models--ggml-org--tiny-llamas", "snapshots", hub.commit("ggml-org/tiny-llamas"), "stories260K.gguf");
    expect(lstatSync(snap).isSymbolicLink()).toBe(true);
    const blob = join(cache, "models--ggml-org--tiny-llamas", "blobs", hub.hashes("ggml-org/tiny-llamas", "stories260K.gguf").sha256);
    expect(existsSync(blob)).toBe(true);

    const show = (await (await srv.request("/admin/v1/models/stories260K")).json()) as { origin: string; source_repo: string; aliases: string[]; architecture: string };
    expect(show).toMatchObject({ origin: "download", source_repo: "ggml-org/tiny-llamas", architecture: "llama" });
    expect(show.aliases).toContain("ggml-org/tiny-llamas");
    const chat = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "ggml-org/tiny-llamas", messages: [{ role: "user", content: "Hi" }], max_tokens: 3 } });
    expect(chat.status).toBe(200);

    const rm = await srv.request("/admin/v1/models/stories260K", { method: "DELETE" });
    expect(((await rm.json()) as { files_deleted: boolean }).files_deleted).toBe(true);
    expect(existsSync(blob)).toBe(false);
    expect((await srv.request("/v1/models/stories260K")).status).toBe(404);

    const text = await Promise.race([events.then((r) => r.body!.getReader().read()).then((r) => new TextDecoder().decode(r.value)), Bun.sleep(2000).then(() => "")]);
    expect(text).toContain("lmx events");
  });

  test("a transfer cut halfway resumes with a Range request and verifies", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    await using srv = await startTestServer(hubArgs(hub, newCache()));
    hub.cutAfter(STORIES, 500_000);
    const job = await waitJob(srv, (await pull(srv, "ggml-org/tiny-llamas")).id);
    expect(job.state).toBe("done");
    const transfers = hub.transfersFor(STORIES);
    expect(transfers.length).toBe(2);
    expect(transfers[1]!.range).toBe("bytes=500000-");
  });

  test("a corrupted byte fails the job with 'checksum mismatch', registers nothing and leaves no partial file", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    const cache = newCache();
    await using srv = await startTestServer(hubArgs(hub, cache));
    hub.corrupt(STORIES);
    const job = await waitJob(srv, (await pull(srv, "ggml-org/tiny-llamas")).id);
    expect(job.state).toBe("failed");
    expect(job.error).toMatch(/checksum mismatch for stories260K.gguf, want [0-9a-f]{64} got [0-9a-f]{64}/);
    expect((await srv.request("/v1/models/stories260K")).status).toBe(404);
    const blobs = join(cache, "models--ggml-org--tiny-llamas", "blobs");
    expect(existsSync(blobs) ? readdirSync(blobs) : []).toEqual([]);
  });

  test("gated repos: a clear error without a token, success with one", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    const cache = newCache();
    {
      await using srv = await startTestServer(hubArgs(hub, cache));
      const job = await waitJob(srv, (await pull(srv, "lmx-test/gated-llama")).id);
      expect(job.state).toBe("failed");
      expect(job.error).toMatch(/authentication required for lmx-test\/gated-llama.*HF_TOKEN/);
    }
    await using srv = await startTestServer(hubArgs(hub, cache), { env: { HF_TOKEN: hub.token } });
    expect((await waitJob(srv, (await pull(srv, "lmx-test/gated-llama")).id)).state).toBe("done");
  });

  test("unknown repos, bad quants and unsafe names answer clearly", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    await using srv = await startTestServer(hubArgs(hub, newCache()));
    const missing = await waitJob(srv, (await pull(srv, "nobody/nothing")).id);
    expect(missing.error).toContain("not found");
    const fallback = await waitJob(srv, (await pull(srv, "lmx-test/tiny-quants-GGUF:Q4_K_M")).id);
    expect(fallback.state).toBe("done");
    expect(fallback.note).toMatch(/Q4_K_M.*not in repo/);
    for (const bad of ["../../etc", "/abs/path", "a\\b/c", "org/repo:../../x.gguf"]) {
      const res = await srv.request("/admin/v1/downloads", { method: "POST", json: { model: bad } });
      expect(res.status).toBe(400);
    }
    hub.failWith(/tree/, 500);
    const broken = await waitJob(srv, (await pull(srv, "ggml-org/tiny-llamas")).id, undefined, 60_000);
    expect(broken.state).toBe("failed");
    expect(broken.error).toContain("500");
  });

  test("a model already in the hub cache is registered without downloading it again", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    const cache = newCache();
    {
      await using first = await startTestServer(hubArgs(hub, cache));
      expect((await waitJob(first, (await pull(first, "ggml-org/tiny-llamas")).id)).state).toBe("done");
    }
    hub.clearRequests();
    await using second = await startTestServer(hubArgs(hub, cache));
    expect((await waitJob(second, (await pull(second, "ggml-org/tiny-llamas")).id)).state).toBe("done");
    expect(hub.transfersFor(STORIES).length).toBe(0);
  });

  test("cancel stops a running download", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    await using srv = await startTestServer(hubArgs(hub, newCache()));
    hub.stallAfter(STORIES, 300_000);
    const { id } = await pull(srv, "ggml-org/tiny-llamas");
    await waitJob(srv, id, ["running"]);
    await Bun.sleep(300);
    const res = await srv.request(`/admin/v1/downloads/${id}`, { method: "DELETE" });
    expect(res.status).toBe(200);
    expect((await waitJob(srv, id)).state).toBe("cancelled");
  });
});

describe("a stalled hub", () => {
  test("the job's progress events say the transfer stalled and is retried, then it resumes and finishes", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    await using srv = await startTestServer(hubArgs(hub, newCache()));
    hub.stallAfter(STORIES, 300_000);
    const ac = new AbortController();
    const events = await srv.request("/admin/v1/events", { signal: ac.signal });
    const job = await pull(srv, "ggml-org/tiny-llamas");
    const retrying: string[] = [];
    const reader = events.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    // The default idle timeout (20 s) is what users see; this test waits for it once.
    const end = Date.now() + 60_000;
    while (Date.now() < end && !text.includes("event: download.done")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    ac.abort();
    for (const m of text.matchAll(/"retrying":"([^"]+)"/g)) if (!retrying.includes(m[1]!)) retrying.push(m[1]!);
    expect(retrying).toEqual(["no data for 20 s, retrying 2/5"]);
    const done = await waitJob(srv, job.id);
    expect(done.state).toBe("done");
    expect(hub.transfersFor(STORIES).at(-1)!.range).toBe("bytes=300000-");
  }, 90_000);
});

describe("downloads across restarts", () => {
  const main = join(import.meta.dir, "..", "src", "cli", "main.ts");

  async function serveProcess(home: string, args: string[]) {
    const proc = Bun.spawn([process.execPath, main, "serve", "--port", "0", "--threads", "1", "--log-format", "json", ...args], {
      env: { ...process.env, LMX_HOME: home }, stdout: "ignore", stderr: "pipe",
    });
    const reader = proc.stderr.getReader();
    let log = "";
    let url: string | undefined;
    while (!url) {
      const { value, done } = await reader.read();
      if (done) throw new Error("server exited: " + log);
      log += new TextDecoder().decode(value);
      url = log.match(/"url":"(http:[^"]+)"/)?.[1];
    }
    void (async () => { while (!(await reader.read()).done); })();
    const request = (path: string, init: RequestInit & { json?: unknown } = {}) =>
      fetch(url + path, { ...init, headers: init.json ? { "content-type": "application/json" } : undefined, body: init.json ? JSON.stringify(init.json) : undefined });
    return { proc, url, request };
  }

  test("kill -9 mid-download leaves a consistent database; the next start resumes and finishes", async () => {
    await using hub = await startFakeHub({ repos: demoRepos() });
    const home = mkdtempSync(join(tmpdir(), "lmx-kill-"));
    const args = ["--hub-url", hub.url, "--hub-cache", join(home, "hf")];
    hub.stallAfter(STORIES, 400_000);
    const a = await serveProcess(home, args);
    const { id } = (await (await a.request("/admin/v1/downloads", { method: "POST", json: { model: "ggml-org/tiny-llamas" } })).json()) as Job;
    await waitJob(a, id, ["running"]);
    const end = Date.now() + 10_000;
    while (hub.transfersFor(STORIES).length === 0 && Date.now() < end) await Bun.sleep(20);
    await Bun.sleep(1500);
    a.proc.kill("SIGKILL");
    await a.proc.exited;

    const db = new Database(join(home, "lmx.db"), { readonly: true });
    expect((db.query("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check).toBe("ok");
    expect((db.query("SELECT state FROM downloads WHERE id = ?").get(id) as { state: string }).state).toBe("running");
    expect(db.query("SELECT id FROM models").all()).toEqual([]);
    db.close();
    expect(readdirSync(join(home, "hf", "models--ggml-org--tiny-llamas", "blobs")).some((f) => f.endsWith(".incomplete"))).toBe(true);

    hub.clearFaults();
    const b = await serveProcess(home, args);
    try {
      const job = await waitJob(b, id);
      expect(job.state).toBe("done");
      const resumed = hub.transfersFor(STORIES).at(-1)!;
      expect(resumed.range).toMatch(/^bytes=[1-9]\d*-$/);
      const chat = await b.request("/v1/chat/completions", { method: "POST", json: { model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 3 } });
      expect(chat.status).toBe(200);
    } finally {
      b.proc.kill("SIGTERM");
      await b.proc.exited;
    }
  });
});
