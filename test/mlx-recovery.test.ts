// MLX crash recovery through the real server, scheduler and MLX engine, with the stub worker
// (test/helpers/stub-mlx-worker.ts) standing in for Python: the request waiting on a worker that
// crashes is served, a restart that fails is a 503 with Retry-After, and a worker that keeps
// crashing gets the model marked failed with its last stderr lines.

import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collector } from "../src/core/collect.ts";
import { MlxEngine, type MlxPython } from "../src/engines/mlx/engine.ts";
import type { LmxEvent } from "../src/events/bus.ts";
import { EventBus } from "../src/events/bus.ts";
import { configureLog } from "../src/log.ts";
import { ModelCatalog } from "../src/models/catalog.ts";
import { Scheduler } from "../src/scheduler/scheduler.ts";
import { startTestServer } from "./helpers/server.ts";

configureLog({ level: process.env.LMX_TEST_LOG_LEVEL ?? "error" });

const root = mkdtempSync(join(tmpdir(), "lmx-mlx-recovery-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** An MLX model folder the engine can inspect (the stub never reads it) and a "python" that runs the stub with `plan`. */
function fixture(plan: string): { model: string; python: string; id: string } {
  const dir = join(root, String(++n));
  const model = join(dir, `stub-mlx-${n}`);
  mkdirSync(model, { recursive: true });
  writeFileSync(join(model, "config.json"), JSON.stringify({
    model_type: "qwen2", hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 256, max_position_embeddings: 512,
  }));
  writeFileSync(join(model, "model.safetensors"), new Uint8Array(1024));
  const python = join(dir, "python");
  const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  writeFileSync(python, `#!/bin/sh\nexec ${q(process.execPath)} ${q(join(import.meta.dir, "helpers", "stub-mlx-worker.ts"))} ${q(plan)} ${q(join(dir, "starts"))}\n`);
  chmodSync(python, 0o755);
  return { model, python, id: `stub-mlx-${n}` };
}

const chatBody = (model: string) => ({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 3 });

describe("MLX crash recovery over HTTP", () => {
  test("the request that meets a crashed worker is served by the restarted one", async () => {
    const f = fixture("exit-on-generate,ok");
    await using s = await startTestServer(["--python", f.python]);
    expect((await s.request("/admin/v1/import", { method: "POST", json: { paths: [f.model] } })).status).toBe(200);
    const r = await s.request("/v1/chat/completions", { method: "POST", json: chatBody(f.id) });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe("w0 w1 w2");
  }, 30_000);

  test("a restart that fails answers 503 with Retry-After; the next request is served", async () => {
    const f = fixture("exit-on-generate,exit-at-start,ok");
    await using s = await startTestServer(["--python", f.python]);
    expect((await s.request("/admin/v1/import", { method: "POST", json: { paths: [f.model] } })).status).toBe(200);
    const r = await s.request("/v1/chat/completions", { method: "POST", json: chatBody(f.id) });
    expect(r.status).toBe(503);
    expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe("worker_restarting");
    const again = await s.request("/v1/chat/completions", { method: "POST", json: chatBody(f.id) });
    expect(again.status).toBe(200);
  }, 30_000);
});

describe("a worker that keeps crashing", () => {
  test("the model is freed and marked failed with the worker's stderr; the next request loads it afresh", async () => {
    const f = fixture("exit-on-generate,exit-on-generate,ok");
    const runtime: MlxPython = { resolve: async () => ({ python: f.python, worker: "unused", source: "external" as const }), describe: () => "stub",
      unsupportedArchitectureHint: async () => "stub" };
    const engine = new MlxEngine(runtime, { backoffMs: 10, maxRestarts: 1, restartWindowMs: 60_000 });
    const catalog = new ModelCatalog({
      modelsDir: join(root, "none"), explicit: [], configured: {}, aliases: () => new Map(),
      registered: () => [{ id: f.id, format: "mlx", path: f.model }],
    });
    const events = new EventBus();
    const seen: LmxEvent[] = [];
    events.subscribe((e) => { seen.push(e); });
    const scheduler = new Scheduler(catalog, { mlx: engine }, {
      load: { parallel: 1, threads: 1, ttl: 0 }, queueLimit: 4, memoryBudget: 8 * 1024 ** 3,
    }, {}, { events });
    try {
      const chat = async () => {
        const lease = await scheduler.acquire(f.id);
        try {
          const result = new Collector();
          await lease.model.generate({ kind: "chat", messages: [{ role: "user", content: "Hi" }], maxTokens: 3 }, result.add, lease.signal);
          return result.result();
        } finally {
          lease.release();
        }
      };
      const err = await chat().then(() => undefined, (e: unknown) => e as Error & { code: string });
      expect(err?.code).toBe("worker_failed");
      expect(err?.message).toContain("crashed 2 times");
      expect(err?.message).toContain("RuntimeError: stub worker generate failed on purpose (start 2)");
      await Bun.sleep(50);
      expect((await scheduler.get(f.id)).state).toBe("failed");
      expect(scheduler.memoryInUse()).toBe(0);
      expect(seen.find((e) => e.type === "model.failed")).toMatchObject({ model: f.id, error: err!.message });
      // A fresh load is a fresh worker: start 3 behaves.
      expect((await chat()).text).toBe("w0 w1 w2");
      expect((await scheduler.get(f.id)).state).toBe("ready");
    } finally {
      await scheduler.shutdown();
    }
  }, 30_000);
});
