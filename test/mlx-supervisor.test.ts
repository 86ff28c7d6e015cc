// The MLX worker supervisor against a stub worker (test/helpers/stub-mlx-worker.ts) that speaks the
// real protocol and crashes, hangs, starts slowly or writes garbage on cue: no mlx needed, and each
// case takes well under a second or two.

import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROTOCOL_VERSION, type ToWorker } from "../src/engines/mlx/protocol.ts";
import { type SupervisorOptions, WorkerCrashedError, WorkerFailedError, WorkerSupervisor, WorkerUnavailableError } from "../src/engines/mlx/supervisor.ts";
import { configureLog } from "../src/log.ts";

configureLog({ level: process.env.LMX_TEST_LOG_LEVEL ?? "error" });

export const STUB_WORKER = join(import.meta.dir, "helpers", "stub-mlx-worker.ts");

const started: WorkerSupervisor[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop(1000)));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A supervisor over the stub; `plan` is one behaviour per start of the worker, the last repeating. */
function stub(plan: string, opts: Partial<SupervisorOptions> = {}): WorkerSupervisor {
  const dir = mkdtempSync(join(tmpdir(), "lmx-stub-"));
  dirs.push(dir);
  const sup = new WorkerSupervisor({
    label: "stub",
    command: [process.execPath, STUB_WORKER, plan, join(dir, "starts")],
    env: { STUB_HEARTBEAT_MS: "50" },
    load: { path: "/nowhere", context_length: 64, parallel: 2 },
    hangTimeoutMs: 400,
    backoffMs: 20,
    ...opts,
  });
  started.push(sup);
  return sup;
}

const gen = (sup: WorkerSupervisor, maxTokens = 4): Extract<ToWorker, { type: "generate" }> => ({
  type: "generate", id: sup.newId("g"), prompt: { kind: "text", text: "hi" }, max_tokens: maxTokens, sampling: {}, parse_tools: false,
});

/** One generation through `serve`, as the loaded model runs it: retried only while no text went out. */
function request(sup: WorkerSupervisor, opts: { streamed?: boolean; maxTokens?: number } = {}) {
  let text = "";
  let emitted = false;
  return sup.serve(async () => {
    text = "";
    const done = await sup.generate(gen(sup, opts.maxTokens), (e) => {
      if (e.type !== "text") return;
      text += e.text;
      if (opts.streamed) emitted = true;
    });
    return { text, done };
  }, () => !emitted);
}

const failure = (p: Promise<unknown>) => p.then(() => { throw new Error("expected a failure"); }, (e: unknown) => e as Error);

describe("supervisor with the stub worker", () => {
  test("starts, loads, generates and stops", async () => {
    const sup = stub("ok");
    await sup.ensureRunning();
    expect(sup.state).toBe("ready");
    expect(sup.hello).toMatchObject({ protocol: PROTOCOL_VERSION, python: "stub" });
    expect(sup.loaded).toMatchObject({ model_type: "stub" });
    const { text, done } = await request(sup);
    expect(text).toBe("w0 w1 w2 w3");
    expect(done.completion_tokens).toBe(4);
    expect(sup.state).toBe("ready");
    await sup.stop();
    expect(sup.state).toBe("stopped");
    expect(await failure(sup.ensureRunning())).toHaveProperty("code", "worker_stopping");
  });

  test("the soft stop sends `end`: the worker finishes early and the generation resolves with the tokens so far", async () => {
    const sup = stub("ok", { env: { STUB_HEARTBEAT_MS: "50", STUB_TOKEN_MS: "20" } });
    await sup.ensureRunning();
    const stop = new AbortController();
    let texts = 0;
    const done = await sup.generate(gen(sup, 200), (e) => { if (e.type === "text" && ++texts === 3) stop.abort(); }, undefined, stop.signal);
    expect(done.finish_reason).toBe("stop");
    expect(done.completion_tokens).toBeGreaterThanOrEqual(3);
    expect(done.completion_tokens).toBeLessThan(10);
    expect(sup.state).toBe("ready");
  });

  test("a crash at start is reported with the exit code; restarts wait out a growing back-off", async () => {
    const sup = stub("exit-at-start", { backoffMs: 100 });
    const first = await failure(sup.ensureRunning());
    expect(first).toBeInstanceOf(WorkerCrashedError);
    expect(first.message).toContain("exited with code 3");
    expect(sup.state).toBe("crashed");
    const t0 = performance.now();
    expect(await failure(sup.ensureRunning())).toBeInstanceOf(WorkerUnavailableError);
    await failure(sup.ensureRunning());
    // Second start waits 100 ms, third 200 ms.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(280);
  });

  test("a worker that never speaks is killed after the hang timeout", async () => {
    const sup = stub("hang-at-start");
    const t0 = performance.now();
    const err = await failure(sup.ensureRunning());
    expect(err.message).toContain("stopped responding");
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(sup.state).toBe("crashed");
  });

  test("a worker that stops heartbeating mid-generation is killed, its request fails, and the next one restarts it", async () => {
    const sup = stub("hang-on-generate,ok");
    await sup.ensureRunning();
    const pid = sup.pid;
    const err = await failure(sup.generate(gen(sup), () => undefined));
    expect(err).toBeInstanceOf(WorkerCrashedError);
    expect(err.message).toContain("stopped responding");
    expect(sup.state).toBe("crashed");
    expect((await request(sup)).text).toBe("w0 w1 w2 w3");
    expect(sup.pid).not.toBe(pid);
  });

  test("a slow start is not a hang as long as the heartbeats come", async () => {
    const sup = stub("slow-start", { env: { STUB_HEARTBEAT_MS: "50", STUB_DELAY_MS: "900" } });
    const t0 = performance.now();
    await sup.ensureRunning();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(850);
    expect(sup.state).toBe("ready");
  });

  test("garbage instead of hello, or in the middle of a generation, crashes the worker with a clear error", async () => {
    const sup = stub("garbage");
    const err = await failure(sup.ensureRunning());
    expect(err).toBeInstanceOf(WorkerCrashedError);
    expect(err.message).toContain("sent an invalid message");

    const mid = stub("garbage-on-generate,ok");
    await mid.ensureRunning();
    const streamed = await failure(request(mid, { streamed: true }));
    expect(streamed.message).toContain("sent an invalid message");
    expect(mid.state).toBe("crashed");
  });

  test("a worker speaking another protocol version is refused", async () => {
    const sup = stub("protocol-mismatch");
    const err = await failure(sup.ensureRunning());
    expect(err.message).toContain(`protocol version ${PROTOCOL_VERSION + 1} but this lmx needs ${PROTOCOL_VERSION}`);
  });
});

describe("crash recovery (issue 15 item 13)", () => {
  test("a request waiting on a worker that dies is served by the restarted worker", async () => {
    const sup = stub("exit-on-generate,ok");
    await sup.ensureRunning();
    const pid = sup.pid;
    const { text } = await request(sup);
    expect(text).toBe("w0 w1 w2 w3");
    expect(sup.pid).not.toBe(pid);
    expect(sup.crashReason).toContain("was killed by SIGKILL");
  });

  test("a request whose text already streamed fails with the crash; the next one is served", async () => {
    const sup = stub("exit-mid-generation,ok");
    await sup.ensureRunning();
    const err = await failure(request(sup, { streamed: true, maxTokens: 10 }));
    expect(err).toBeInstanceOf(WorkerCrashedError);
    expect((err as WorkerCrashedError).status).toBe(500);
    expect((await request(sup, { streamed: true })).text).toBe("w0 w1 w2 w3");
  });

  test("a non-streamed request killed mid-generation is generated again from the start", async () => {
    const sup = stub("exit-mid-generation,ok");
    await sup.ensureRunning();
    expect((await request(sup, { maxTokens: 6 })).text).toBe("w0 w1 w2 w3 w4 w5");
  });

  test("a restart that fails is a 503 with Retry-After; a later request is served", async () => {
    const sup = stub("exit-on-generate,exit-at-start,ok");
    await sup.ensureRunning();
    const err = await failure(request(sup));
    expect(err).toBeInstanceOf(WorkerUnavailableError);
    expect((err as WorkerUnavailableError).status).toBe(503);
    expect((err as WorkerUnavailableError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(err.message).toContain("could not be restarted");
    expect((await request(sup)).text).toBe("w0 w1 w2 w3");

    // The same when the restarted worker starts but cannot load the model.
    const onLoad = stub("exit-on-generate,exit-on-load,ok");
    await onLoad.ensureRunning();
    const loadErr = await failure(request(onLoad));
    expect(loadErr).toBeInstanceOf(WorkerUnavailableError);
    expect(loadErr.message).toContain("exited with code 1");
    expect((await request(onLoad)).text).toBe("w0 w1 w2 w3");
  });

  test("restarts are bounded: one crash too many within the window marks the worker failed, with its last stderr lines", async () => {
    const sup = stub("exit-on-generate", { maxRestarts: 2, restartWindowMs: 60_000 });
    const failed: Error[] = [];
    sup.onFailed((e) => failed.push(e));
    await sup.ensureRunning();
    // Crash 1, restart, crash 2: the one retry is spent and the request fails.
    expect(await failure(request(sup))).toBeInstanceOf(WorkerCrashedError);
    // Restart, crash 3: more than 2 restarts within the window.
    const err = await failure(request(sup));
    expect(err).toBeInstanceOf(WorkerFailedError);
    expect(err.message).toContain("crashed 3 times within 60 s");
    expect(err.message).toContain("RuntimeError: stub worker generate failed on purpose (start 3)");
    expect(sup.state).toBe("failed");
    expect(failed).toEqual([err]);
    // No more restarts: every later request gets the same error at once.
    const t0 = performance.now();
    expect(await failure(request(sup))).toBe(err);
    expect(performance.now() - t0).toBeLessThan(50);
  });

  test("crashes spread beyond the window do not add up", async () => {
    const sup = stub("exit-on-generate,ok,exit-on-generate,ok", { maxRestarts: 1, restartWindowMs: 150 });
    await sup.ensureRunning();
    await request(sup);
    await Bun.sleep(200);
    await request(sup);
    expect(sup.state).toBe("ready");
  });
});
