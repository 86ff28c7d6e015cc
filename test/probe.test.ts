import { describe, expect, test } from "bun:test";
import { contextProbes } from "../src/store/schema.ts";
import { ensureFixtures } from "./fixtures/models.ts";
import { listModels as models, probe, type ProbeJob } from "./helpers/probe.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();

describe("context probe on models that work at no length", () => {
  test("stories260K and a random-weight model get tested_context_length 0 with a reason, not the declared value", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K, "--model", fx.llama3Tiny]);
    for (const id of ["stories260K", "llama3-tiny"]) {
      const job = await probe(srv, id, { max: 1024 });
      expect(job.state).toBe("done");
      expect(job.result!.tested_context_length).toBe(0);
      expect(job.result!.tested_reason).toContain("does not work even at 128 tokens");
      expect(job.steps[0]!.detail).toMatch(/copy margin/);
    }
    // The chat model got the needle check too.
    const rows = await models(srv);
    const llama = rows.find((m) => m.id === "llama3-tiny")!;
    expect(llama.max_context_length).toBe(8192);
    expect(llama.tested_context_length).toBe(0);
    expect(llama.tested_reason).toContain("needle missed");
    expect(llama.tested_engine).toContain("node-llama-cpp");
    expect(llama.tested_stale).toBe(false);
    expect(rows.find((m) => m.id === "stories260K")!.tested_reason).toContain("needle: n/a");
  });

  test("a second probe of the same model while one runs is refused", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K]);
    const first = await srv.request("/admin/v1/models/stories260K/probe", { method: "POST", json: { max: 512 } });
    expect(first.status).toBe(202);
    const second = await srv.request("/admin/v1/models/stories260K/probe", { method: "POST", json: { max: 512 } });
    expect(second.status).toBe(400);
    expect(((await second.json()) as { error: { code: string } }).error.code).toBe("probe_running");
    const { id } = (await first.json()) as ProbeJob;
    while (((await (await srv.request(`/admin/v1/probes/${id}`)).json()) as ProbeJob).state === "running") await Bun.sleep(100);
  });
});

describe("the stored result decides the default context", () => {
  async function store(srv: TestServer, tested: number, engine?: string) {
    const row = (await models(srv)).find((m) => m.id === "stories260K")!;
    expect(row.tested_context_length).toBeNull();
    // A real probe's row, written the way the probe writes it; only the figures are chosen here.
    const job = await probe(srv, "stories260K", { max: 256 });
    const db = srv.server.db;
    const stored = db.select().from(contextProbes).all().at(-1)!;
    expect(stored.testedContext).toBe(job.result!.tested_context_length);
    db.update(contextProbes).set({ testedContext: tested, engineVersion: engine ?? stored.engineVersion }).run();
  }

  test("a load without context_length uses the tested context", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "1"]);
    await store(srv, 768);
    const chat = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 } });
    expect(chat.status).toBe(200);
    const row = ((await (await srv.request("/v1/models/stories260K")).json()) as { loaded_context_length: number; tested_context_length: number });
    expect(row.tested_context_length).toBe(768);
    expect(row.loaded_context_length).toBe(768);
    // An explicit context still wins.
    await srv.request("/admin/v1/models/stories260K/load", { method: "POST", json: { context_length: 512 } });
    expect(((await (await srv.request("/v1/models/stories260K")).json()) as { loaded_context_length: number }).loaded_context_length).toBe(512);
    // Requests beyond the loaded context are refused.
    const long = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "stories260K", messages: [{ role: "user", content: "Hi there. ".repeat(300) }] } });
    expect(((await long.json()) as { error: { code: string } }).error.code).toBe("context_length_exceeded");
  });

  test("--reprobe-stale measures results from another engine version again at start-up", async () => {
    await using first = await startTestServer(["--model", fx.stories260K, "--parallel", "1"]);
    await store(first, 768, "node-llama-cpp 0.0.1, llama.cpp old");
    await first.server.stop();
    await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "1", "--reprobe-stale"], { home: first.home });
    let jobs: ProbeJob[] = [];
    for (let i = 0; i < 600 && !(jobs.length === 1 && jobs[0]!.state !== "running"); i++) {
      await Bun.sleep(100);
      jobs = ((await (await srv.request("/admin/v1/probes")).json()) as { data: ProbeJob[] }).data;
    }
    expect(jobs.map((j) => j.state)).toEqual(["done"]);
    const row = (await models(srv)).find((m) => m.id === "stories260K")!;
    expect(row.tested_stale).toBe(false);
    expect(row.tested_engine).toContain("node-llama-cpp 3.");
    expect(row.tested_context_length).toBe(0);
  });

  test("a result from another engine version is stale and not used", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "1"]);
    await store(srv, 768, "node-llama-cpp 0.0.1, llama.cpp old");
    const row = ((await (await srv.request("/v1/models/stories260K")).json()) as { tested_stale: boolean });
    expect(row.tested_stale).toBe(true);
    await srv.request("/v1/chat/completions", { method: "POST", json: { model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 } });
    expect(((await (await srv.request("/v1/models/stories260K")).json()) as { loaded_context_length: number }).loaded_context_length).toBe(2048);
  });
});
