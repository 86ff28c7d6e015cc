// Scheduler behaviour on the FakeEngine: loading, sharing, memory, eviction, TTL, queueing.
import { describe, expect, test } from "bun:test";
import { EngineCrashedError, InsufficientMemoryError, InvalidModelFileError, ModelLoadError, ModelNotFoundError, OverloadedError } from "../../src/errors.ts";
import { fakeApp } from "../fakes/fake-app.ts";

const MB = 1024 * 1024;

describe("scheduler on the fake engine", () => {
  test("just-in-time load on first use; concurrent requests for a cold model share one load", async () => {
    await using f = fakeApp([{ id: "a", loadMs: 20 }], { parallel: 4 });
    expect((await f.scheduler.get("a")).state).toBe("unloaded");
    const leases = await Promise.all([1, 2, 3].map(() => f.scheduler.acquire("a")));
    expect(f.engine.loads).toEqual(["a"]);
    const s = await f.scheduler.get("a");
    expect(s.state).toBe("ready");
    expect(s.running).toBe(3);
    for (const l of leases) l.release();
    expect((await f.scheduler.get("a")).running).toBe(0);
  });

  test("an explicit load with other options reloads; the same options keep the loaded instance", async () => {
    await using f = fakeApp([{ id: "a", modelBytes: 1000, bytesPerContextToken: 10 }], { parallel: 2 });
    await f.scheduler.loadModel("a", { contextLength: 512 });
    expect(f.scheduler.memoryInUse()).toBe(1000 + 10 * 512 * 2);
    await f.scheduler.loadModel("a", { contextLength: 512 });
    expect(f.engine.loads).toEqual(["a"]);
    const s = await f.scheduler.loadModel("a", { contextLength: 256 });
    expect(f.engine.loads).toEqual(["a", "a"]);
    expect(f.engine.unloads).toEqual(["a"]);
    expect(s.loadedContextLength).toBe(256);
    expect(f.scheduler.memoryInUse()).toBe(1000 + 10 * 256 * 2);
  });

  test("unknown models are 404; a failing load is model_load_failed and the next request tries again", async () => {
    await using f = fakeApp([{ id: "a", loadError: "bad file" }]);
    await expect(f.scheduler.acquire("nope")).rejects.toBeInstanceOf(ModelNotFoundError);
    await expect(f.scheduler.acquire("a")).rejects.toBeInstanceOf(ModelLoadError);
    expect((await f.scheduler.get("a")).state).toBe("failed");
    f.engine.specs.get("a")!.loadError = undefined;
    (await f.scheduler.acquire("a")).release();
    expect(f.engine.loads).toEqual(["a", "a"]);
    expect((await f.scheduler.get("a")).state).toBe("ready");
  });

  test("a trial load that crashed, on the file or on the engine, fails the model with its own error", async () => {
    await using f = fakeApp([
      { id: "broken", estimateThrows: new InvalidModelFileError("loading broken crashed llama.cpp") },
      { id: "sigill", estimateThrows: new EngineCrashedError("loading sigill crashed the llama.cpp engine with an illegal instruction (SIGILL)") },
    ]);
    await expect(f.scheduler.acquire("broken")).rejects.toMatchObject({ code: "invalid_model_file", status: 422 });
    await expect(f.scheduler.acquire("sigill")).rejects.toMatchObject({ code: "engine_crashed", status: 500 });
    expect((await f.scheduler.get("broken")).state).toBe("failed");
    expect((await f.scheduler.get("sigill")).state).toBe("failed");
    expect(f.engine.loads).toEqual([]);
  });

  test("memory budget: idle models are evicted least recently used first; busy ones never", async () => {
    let now = 1000;
    await using f = fakeApp([{ id: "a", modelBytes: 40 * MB }, { id: "b", modelBytes: 40 * MB }, { id: "c", modelBytes: 40 * MB }], { memoryBudget: 100 * MB, now: () => now });
    (await f.scheduler.acquire("a")).release();
    now += 10;
    (await f.scheduler.acquire("b")).release();
    now += 10;
    // a is the least recently used: loading c evicts it, not b.
    (await f.scheduler.acquire("c")).release();
    expect(f.engine.unloads).toEqual(["a"]);
    expect((await f.scheduler.loaded()).map((s) => s.descriptor.id).sort()).toEqual(["b", "c"]);
    expect(f.scheduler.memoryInUse()).toBe(80 * MB);

    // With b and c both busy, a cannot load: the error names what is loaded and busy.
    const busy = [await f.scheduler.acquire("b"), await f.scheduler.acquire("c")];
    const err = await f.scheduler.acquire("a").catch((e: unknown) => e);
    for (const l of busy) l.release();
    expect(err).toBeInstanceOf(InsufficientMemoryError);
    expect((err as Error).message).toContain("b (40.0 MiB, busy)");
    expect(f.engine.unloads).toEqual(["a"]);
  });

  test("a model bigger than the whole budget is refused without unloading anything", async () => {
    await using f = fakeApp([{ id: "small", modelBytes: MB }, { id: "huge", modelBytes: 500 * MB }], { memoryBudget: 100 * MB });
    (await f.scheduler.acquire("small")).release();
    await expect(f.scheduler.acquire("huge")).rejects.toBeInstanceOf(InsufficientMemoryError);
    expect(f.engine.loads).toEqual(["small"]);
  });

  test("TTL: an idle model unloads after its ttl; a busy one stays", async () => {
    let now = 0;
    await using f = fakeApp([{ id: "a" }], { ttlSeconds: 5, now: () => now });
    const lease = await f.scheduler.acquire("a");
    now = 60_000;
    await f.scheduler["expireIdle"]();
    expect(f.engine.unloads).toEqual([]);
    lease.release();
    now = 62_000;
    await f.scheduler["expireIdle"]();
    expect(f.engine.unloads).toEqual([]);
    now = 65_000;
    await f.scheduler["expireIdle"]();
    expect(f.engine.unloads).toEqual(["a"]);
    expect((await f.scheduler.get("a")).state).toBe("unloaded");
  });

  test("queue: FIFO beyond --parallel, a fast 503 beyond --queue, a queued client that leaves is dropped", async () => {
    await using f = fakeApp([{ id: "a" }], { parallel: 1, queueLimit: 2 });
    const first = await f.scheduler.acquire("a");
    const order: string[] = [];
    const leaving = new AbortController();
    const w1 = f.scheduler.acquire("a").then((l) => { order.push("w1"); return l; });
    const w2 = f.scheduler.acquire("a", leaving.signal).then((l) => { order.push("w2"); return l; }, (e: Error) => e);
    const started = performance.now();
    const full = await f.scheduler.acquire("a").catch((e: unknown) => e);
    expect(full).toBeInstanceOf(OverloadedError);
    expect(performance.now() - started).toBeLessThan(50);
    expect((await f.scheduler.get("a")).queued).toBe(2);
    leaving.abort();
    expect((await w2 as Error).name).toBe("AbortedWhileQueuedError");
    const w3 = f.scheduler.acquire("a").then((l) => { order.push("w3"); return l; });
    first.release();
    (await w1).release();
    (await w3).release();
    expect(order).toEqual(["w1", "w3"]);
  });

  test("unloading a model fails its queued requests and aborts its running ones before freeing it", async () => {
    await using f = fakeApp([{ id: "a" }], { parallel: 1 });
    const running = await f.scheduler.acquire("a");
    const queued = f.scheduler.acquire("a").catch((e: unknown) => e);
    const unloading = f.scheduler.unload("a");
    expect(await queued).toBeInstanceOf(OverloadedError);
    expect(running.signal.aborted).toBe(true);
    running.release();
    expect(await unloading).toBe(true);
    expect(f.engine.unloads).toEqual(["a"]);
  });

  test("a load that fails because the server is stopping is a 503, not a broken model's 500", async () => {
    await using f = fakeApp([{ id: "a", estimateMs: 50, estimateError: "the trial load's process was stopped" }]);
    const pending = f.scheduler.acquire("a").then(() => undefined, (e: unknown) => e);
    await Bun.sleep(10);
    f.scheduler.drain();
    const err = await pending;
    expect(err).toBeInstanceOf(OverloadedError);
    expect((err as OverloadedError).status).toBe(503);
  });

  test("a load that outlives the shutdown's bound never starts a generation on the freed engine", async () => {
    await using f = fakeApp([{ id: "a", loadMs: 150 }]);
    const pending = f.scheduler.acquire("a").then((lease) => { lease.release(); return "lease"; }, (e: unknown) => e);
    await Bun.sleep(20);
    // The unload waits behind the running load, gives up after 30 ms, and the engine is disposed.
    await f.scheduler.shutdown(30);
    expect(f.engine.disposed).toBe(true);
    const outcome = await pending;
    expect(outcome).toBeInstanceOf(OverloadedError);
    expect((outcome as OverloadedError).status).toBe(503);
  });

  test("shutdown unloads everything and disposes the engine", async () => {
    const f = fakeApp([{ id: "a" }, { id: "b" }]);
    (await f.scheduler.acquire("a")).release();
    (await f.scheduler.acquire("b")).release();
    await f[Symbol.asyncDispose]();
    expect(f.engine.unloads.sort()).toEqual(["a", "b"]);
    expect(f.engine.disposed).toBe(true);
  });
});
