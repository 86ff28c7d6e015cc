// Crash isolation (issue 15, item 1): a model that makes llama.cpp abort must cost one request,
// not the server. The strict reader refuses every such file we know of, so this drives the
// child-process trial load directly with one of them (head_count 0 → GGML_ASSERT → SIGABRT).

import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureTrialLoaded, trialLoadInChild } from "../../src/engines/llama/trial-load.ts";
import { InvalidModelFileError, ModelLoadError } from "../../src/errors.ts";
import { fixtures } from "../fixtures/models.ts";
import { serveProcess } from "../helpers/serve-process.ts";
import { HOSTILE_CASES, writeCase } from "./gen-gguf.ts";

const root = mkdtempSync(join(tmpdir(), "lmx-hostile-trial-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const home = join(root, "home");

describe("the trial load in a child process", () => {
  test("a model that aborts llama.cpp kills only the child, and the parent reports the signal", async () => {
    const path = writeCase(root, HOSTILE_CASES.find((c) => c.name === "head-count-0")!);
    const err = await trialLoadInChild({ path, lmxHome: home, contextLength: 256, embedding: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidModelFileError);
    expect((err as InvalidModelFileError).status).toBe(422);
    expect((err as Error).message).toContain("killed by SIGABRT");
    expect((err as Error).message).toContain("GGML_ASSERT");
    // The crash is remembered for this file: asking again does not start another process.
    await expect(ensureTrialLoaded({ path, lmxHome: home, contextLength: 256, embedding: false })).rejects.toThrow(/SIGABRT/);
    const started = performance.now();
    await expect(ensureTrialLoaded({ path, lmxHome: home, contextLength: 256, embedding: false })).rejects.toThrow(/SIGABRT/);
    expect(performance.now() - started).toBeLessThan(100);
    // Still here, and the next (good) model passes.
    await trialLoadInChild({ path: fixtures.qwen2Tiny, lmxHome: home, contextLength: 256, embedding: false });
  }, 180_000);

  test("a good file is trial-loaded once per process; an embedding model evaluates as one", async () => {
    const req = { path: fixtures.bertTiny, lmxHome: home, contextLength: 256, embedding: true };
    await ensureTrialLoaded(req);
    const started = performance.now();
    await ensureTrialLoaded(req);
    expect(performance.now() - started).toBeLessThan(100);
  }, 180_000);

  test("records that cannot be read or written cost a trial, not the load", async () => {
    const path = join(root, "broken-records-stories260K.gguf");
    copyFileSync(fixtures.stories260K, path);
    const broken = { trialPassed: (): boolean => { throw new Error("database is locked"); }, rememberTrial: (): void => { throw new Error("database is locked"); } };
    await ensureTrialLoaded({ path, lmxHome: home, contextLength: 256, embedding: false }, { records: broken });
  }, 180_000);

  test("a trial that takes too long is stopped with a clear error and not remembered", async () => {
    // A copy of its own: other test files in this process may have trial-loaded the shared one.
    const path = join(root, "slow-stories260K.gguf");
    copyFileSync(fixtures.stories260K, path);
    const req = { path, lmxHome: home, contextLength: 256, embedding: false };
    const err = await ensureTrialLoaded(req, { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).code).toBe("model_load_timeout");
    expect((err as Error).message).toMatch(/took longer than/);
    await ensureTrialLoaded(req);
  }, 180_000);
});

describe("what a load learned about a file is kept across restarts", () => {
  /** Starts `lmx serve` on `home`, loads the model, stops; says whether a trial child ran and where the memory estimate came from. */
  async function loadOnce(home: string, model: string, ctx = 256): Promise<{ trial: boolean; estimate: string[] }> {
    const srv = await serveProcess(home, ["--model", `m=${model}`, "--log-level", "debug"]);
    try {
      const res = await srv.request("/admin/v1/models/m/load", { method: "POST", json: { context_length: ctx } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { state: string }).state).toBe("ready");
      const estimate = [...srv.log().matchAll(/"msg":"memory estimate".*?"from":"([^"]+)"/g)].map((m) => m[1]!);
      return { trial: srv.log().includes("trial load passed"), estimate };
    } finally {
      expect((await srv.signal("SIGTERM").exited).code).toBe(0);
    }
  }

  test("a restarted server loads a proven file without a trial or a simulated load; a changed file or other settings get them again", async () => {
    const home = join(root, "restarts");
    const model = join(root, "restarts-stories260K.gguf");
    copyFileSync(fixtures.stories260K, model);
    expect(await loadOnce(home, model)).toEqual({ trial: true, estimate: ["simulated load"] });
    expect(await loadOnce(home, model)).toEqual({ trial: false, estimate: ["records"] });
    // The estimate is per settings; the trial is per file.
    expect(await loadOnce(home, model, 512)).toEqual({ trial: false, estimate: ["simulated load"] });
    // Another version of the file (here only its mtime moved) proves nothing about the new one.
    const later = new Date(Date.now() + 60_000);
    utimesSync(model, later, later);
    expect(await loadOnce(home, model)).toEqual({ trial: true, estimate: ["simulated load"] });
    expect(await loadOnce(home, model)).toEqual({ trial: false, estimate: ["records"] });
  }, 180_000);
});

