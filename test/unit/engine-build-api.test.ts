// /admin/v1/engines/builds on the fake app, with a scripted build in place of the compiler: request
// validation (bad refs, repositories and verify models are 400s in the OpenAI error shape), the job
// states, one build at a time with the rest queued, cancel, and the engine_build.* events.

import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import type { Stamped } from "../../src/events/bus.ts";
import { EngineBuildCancelled } from "../../src/update/engine-build/errors.ts";
import type { BuildRunner } from "../../src/update/engine-build/jobs.ts";
import { fakeApp } from "../fakes/fake-app.ts";

const MODEL = resolve(import.meta.dir, "../../../shared/models/stories260K.gguf");
const COMMIT = "51412c3a03e66d89eae2c6a91d8a77428fa733ed";

interface JobJson {
  id: string;
  ref: string;
  llama_repo: string;
  state: string;
  phase: string | null;
  percent: number | null;
  version: string | null;
  commit: string | null;
  log: string | null;
  error: string | null;
}

/** A build that reports a few phases, then waits for `release` (or the cancel). */
function scriptedRunner(): { runner: BuildRunner; release: () => void; calls: string[] } {
  const calls: string[] = [];
  let release = (): void => undefined;
  const runner: BuildRunner = (build, options) => {
    calls.push(build.ref.ref);
    options.onLog?.(`/logs/engine-build-${build.ref.label}.log`);
    options.onProgress?.({ phase: "fetch", percent: 100 });
    options.onProgress?.({ phase: "compile", percent: 42 });
    return new Promise((resolveBuild, reject) => {
      options.signal?.addEventListener("abort", () => reject(new EngineBuildCancelled("the build was cancelled; nothing was registered")), { once: true });
      release = () => resolveBuild({
        version: `3.21.1+${build.ref.label}.${COMMIT.slice(0, 10)}`, dir: "/x", logPath: "/logs/x.log", existed: false,
        info: { ref: build.ref.ref, kind: build.ref.kind, repo: build.repo, commit: COMMIT, reportedCommit: COMMIT.slice(0, 7), builtAt: "", nodeLlamaCppVersion: "3.21.1", cpu: build.cpu, architectures: [], log: "/logs/x.log" },
        report: { commit: COMMIT.slice(0, 7), release: "", buildType: "prebuilt", systemInfo: "", text: "", tokens: 1 },
      });
    });
  };
  return { runner, release: () => release(), calls };
}

async function until<T>(probe: () => Promise<T>, ok: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await Bun.sleep(5);
  }
}

describe("/admin/v1/engines/builds", () => {
  test("bad requests are 400s in the OpenAI error shape and create no job", async () => {
    await using f = fakeApp([{ id: "m" }]);
    const cases: [unknown, string][] = [
      [{ ref: "--upload-pack=x", verify_model: MODEL }, "ref"],
      [{ ref: "a b", verify_model: MODEL }, "ref"],
      [{ ref: "../x", verify_model: MODEL }, "ref"],
      [{ ref: "b6000", llama_repo: "ext::sh -c id", verify_model: MODEL }, "llama_repo"],
      [{ ref: "b6000", llama_repo: "relative/dir", verify_model: MODEL }, "llama_repo"],
      [{ ref: "b6000", verify_model: "/etc/passwd" }, "verify_model"],
      [{ ref: "b6000" }, "verify_model"],
    ];
    for (const [body, param] of cases) {
      const res = await f.post("/admin/v1/engines/builds", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const json = (await res.json()) as { error: { type: string; param: string | null; message: string } };
      expect(json.error.type).toBe("invalid_request_error");
      expect(json.error.param).toBe(param);
    }
    for (const body of [{}, { ref: 6000 }, { ref: "x".repeat(201) }, { ref: "b1", native: "yes" }]) {
      expect((await f.post("/admin/v1/engines/builds", body)).status, JSON.stringify(body)).toBe(400);
    }
    const list = (await (await f.request("/admin/v1/engines/builds")).json()) as { data: unknown[] };
    expect(list.data).toEqual([]);
    expect((await f.request("/admin/v1/engines/builds/eb_nope", { method: "DELETE" })).status).toBe(404);
    expect((await f.request("/admin/v1/engines/builds/eb_nope")).status).toBe(404);
  });

  test("a build runs as a job with progress events; the next waits its turn; cancel stops one", async () => {
    const script = scriptedRunner();
    await using f = fakeApp([{ id: "m" }], { engineBuildRunner: script.runner, llamaRepo: "git://127.0.0.1/llama.cpp.git" });
    const events: Stamped[] = [];
    f.events.subscribe((e) => {
      if (e.type.startsWith("engine_build.")) events.push(e);
    });

    const first = await f.post("/admin/v1/engines/builds", { ref: "pr/7", verify_model: MODEL, native: true });
    expect(first.status).toBe(202);
    const job = (await first.json()) as JobJson;
    expect(job).toMatchObject({ ref: "pr/7", llama_repo: "git://127.0.0.1/llama.cpp.git", state: "queued" });
    const second = (await (await f.post("/admin/v1/engines/builds", { ref: "b6000", verify_model: MODEL })).json()) as JobJson;

    const running = await until(async () => (await (await f.request(`/admin/v1/engines/builds/${job.id}`)).json()) as JobJson, (j) => j.phase === "compile");
    expect(running).toMatchObject({ state: "running", phase: "compile", percent: 42, log: "/logs/engine-build-pr-7.log" });
    // One build at a time: the second waits.
    expect(((await (await f.request(`/admin/v1/engines/builds/${second.id}`)).json()) as JobJson).state).toBe("queued");
    expect(script.calls).toEqual(["pr/7"]);

    script.release();
    const done = await until(async () => (await (await f.request(`/admin/v1/engines/builds/${job.id}`)).json()) as JobJson, (j) => j.state === "done");
    expect(done).toMatchObject({ state: "done", version: `3.21.1+pr-7.${COMMIT.slice(0, 10)}`, commit: COMMIT, error: null });
    expect((await f.request(`/admin/v1/engines/builds/${job.id}`, { method: "DELETE" })).status).toBe(400);

    // The second starts once the first is done; cancelling it ends it as cancelled.
    await until(async () => script.calls.length, (n) => n === 2);
    const cancelled = await f.request(`/admin/v1/engines/builds/${second.id}`, { method: "DELETE" });
    expect(cancelled.status).toBe(200);
    const after = await until(async () => (await (await f.request(`/admin/v1/engines/builds/${second.id}`)).json()) as JobJson, (j) => j.state === "cancelled");
    expect(after.state).toBe("cancelled");

    const list = (await (await f.request("/admin/v1/engines/builds")).json()) as { object: string; data: JobJson[] };
    expect(list.data.map((j) => [j.ref, j.state])).toEqual([["b6000", "cancelled"], ["pr/7", "done"]]);
    const firstEvents = events.filter((e) => "id" in e && e.id === job.id).map((e) => e.type);
    expect(firstEvents).toEqual(["engine_build.queued", "engine_build.started", "engine_build.progress", "engine_build.progress", "engine_build.done"]);
    expect(events.find((e) => e.type === "engine_build.progress" && e.id === job.id && e.phase === "compile")).toMatchObject({ ref: "pr/7", percent: 42 });
    expect(events.filter((e) => "id" in e && e.id === second.id).map((e) => e.type).at(-1)).toBe("engine_build.cancelled");
  });

  test("a failed build reports its error; a queued build cancels without ever running", async () => {
    const calls: string[] = [];
    let fail = (): void => undefined;
    const runner: BuildRunner = (build) => {
      calls.push(build.ref.ref);
      return new Promise((_, reject) => {
        fail = () => reject(new Error("compiling llama.cpp failed:\nggml.c:1:2: error: #error broken"));
      });
    };
    await using f = fakeApp([{ id: "m" }], { engineBuildRunner: runner });
    const a = (await (await f.post("/admin/v1/engines/builds", { ref: "broken", verify_model: MODEL })).json()) as JobJson;
    const b = (await (await f.post("/admin/v1/engines/builds", { ref: "b1", verify_model: MODEL })).json()) as JobJson;
    await until(async () => calls.length, (n) => n === 1);
    const cancel = (await (await f.request(`/admin/v1/engines/builds/${b.id}`, { method: "DELETE" })).json()) as JobJson;
    expect(cancel.state).toBe("cancelled");
    fail();
    const failed = await until(async () => (await (await f.request(`/admin/v1/engines/builds/${a.id}`)).json()) as JobJson, (j) => j.state === "failed");
    expect(failed.error).toContain("#error broken");
    await Bun.sleep(20);
    expect(calls).toEqual(["broken"]);
  });
});
