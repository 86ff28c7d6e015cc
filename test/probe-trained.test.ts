// The probe against a model whose true working context is known: the copy model is trained on
// 256-token sequences and declares 8192 (test/fixtures/train_copy_model.py). Measured with
// test/fixtures/measure_copy.ts, its copy advantage is 6-8 nats/token up to a copy distance of
// ~230 tokens, ~2.5 at 247, ~1 at 263 and ~0 from ~280 on: its working context ends between 256
// and 288 tokens.

import { describe, expect, test } from "bun:test";
import { ensureCopyModel } from "./fixtures/copy-model.ts";
import { mlxTestEnv } from "./helpers/mlx.ts";
import { listModels, probe, type ProbeJob } from "./helpers/probe.ts";
import { startTestServer } from "./helpers/server.ts";

const copy = await ensureCopyModel();
const ID = "copy-L256";

/** Tolerance: the cliff itself spans copy distances 247-281, the search stops at 5% resolution and
 * lengths are multiples of 8, so anything in [0.9 L, 1.25 L] is the right answer. */
function expectNearTrainedLength(job: ProbeJob): number {
  expect(job.state).toBe("done");
  const tested = job.result!.tested_context_length;
  expect(tested).toBeGreaterThanOrEqual(Math.floor(copy.trainedLength * 0.9));
  expect(tested).toBeLessThanOrEqual(Math.ceil(copy.trainedLength * 1.25));
  expect(job.result!.decided_by).toBe("copy");
  expect(job.result!.tested_reason).toMatch(/^works at \d+, fails at \d+: copy margin/);
  return tested;
}

describe("context probe on a model with a known working context", () => {
  test("finds about the trained length, far below the declared 8192, and loads with it by default", async () => {
    await using srv = await startTestServer(["--model", copy.gguf, "--parallel", "1"]);
    const job = await probe(srv, ID, {});
    const tested = expectNearTrainedLength(job);
    // Every step is reported; the declared maximum was tried, loaded and failed the copy check.
    const top = job.steps.find((s) => s.context_length === copy.declaredLength)!;
    expect(top.loads).toBe(true);
    expect(top.works).toBe(false);
    expect(job.steps.length).toBeGreaterThan(4);
    // The answer was checked again with freshly drawn passages, not by replaying the same prompt.
    const atAnswer = job.steps.filter((s) => s.context_length === tested);
    expect(atAnswer.length).toBeGreaterThanOrEqual(2);
    expect(new Set(atAnswer.map((s) => s.detail)).size).toBe(atAnswer.length);

    const row = (await listModels(srv)).find((m) => m.id === ID)!;
    expect(row.max_context_length).toBe(copy.declaredLength);
    expect(row.tested_context_length).toBe(tested);
    // A load that names no context uses the measured one, not the declared 8192.
    const chat = await srv.request("/v1/completions", { method: "POST", json: { model: ID, prompt: "Once upon a time", max_tokens: 4 } });
    expect(chat.status).toBe(200);
    const after = (await (await srv.request(`/v1/models/${ID}`)).json()) as { loaded_context_length: number };
    expect(after.loaded_context_length).toBe(tested);
    // ...and that is the limit, although llama.cpp allocates a multiple of 256 cells: a longer
    // max_tokens stops there, a longer prompt is refused.
    const full = await srv.request("/v1/completions", { method: "POST", json: { model: ID, prompt: "Once upon a time", max_tokens: tested, ignore_eos: true } });
    const body = (await full.json()) as { usage: { prompt_tokens: number; completion_tokens: number }; choices: { finish_reason: string }[] };
    expect(body.usage.prompt_tokens + body.usage.completion_tokens).toBe(tested);
    expect(body.choices[0]!.finish_reason).toBe("length");
    const over = await srv.request("/v1/completions", { method: "POST", json: { model: ID, prompt: "Once upon a time ".repeat(tested), max_tokens: 4 } });
    expect(over.status).toBe(400);
    expect(((await over.json()) as { error: { code: string } }).error.code).toBe("context_length_exceeded");
  });

  test("the MLX export, probed through the MLX engine, gets the same answer", async () => {
    const env = await mlxTestEnv();
    await using srv = await startTestServer(["--python", env.python, "--parallel", "1"]);
    const imported = await srv.request("/admin/v1/import", { method: "POST", json: { paths: [copy.mlxDir] } });
    expect(imported.status).toBe(200);
    const job = await probe(srv, `${ID}-mlx`, { max: 1024 });
    expectNearTrainedLength(job);
    expect(job.result!.tested_engine).toContain("mlx");
  }, 600_000);

  test("under a small memory budget the load ceiling decides", async () => {
    // What the model needs at 160 tokens, as the scheduler accounts it.
    let need: number;
    {
      await using srv = await startTestServer(["--model", copy.gguf, "--parallel", "1"]);
      const load = await srv.request(`/admin/v1/models/${ID}/load`, { method: "POST", json: { context_length: 160 } });
      expect(load.status).toBe(200);
      const ps = (await (await srv.request("/admin/v1/ps")).json()) as { data: { id: string; memory_bytes: number }[] };
      need = ps.data.find((m) => m.id === ID)!.memory_bytes;
    }
    await using srv = await startTestServer(["--model", copy.gguf, "--parallel", "1", "--memory-budget", String(need)]);
    const job = await probe(srv, ID, {});
    expect(job.state).toBe("done");
    const tested = job.result!.tested_context_length;
    // It works up to ~264, so memory alone stops it: at 160 or a little above (the estimate grows
    // in steps), well below where copying fails, and the reason says so.
    expect(tested).toBeGreaterThanOrEqual(144);
    expect(tested).toBeLessThan(copy.trainedLength);
    expect(job.result!.tested_reason).toMatch(/does not load at \d+: cannot load copy-L256: needs .* budget/);
    // Just over the budget, the two figures must still read differently.
    const [, needs, budget] = /needs (.+?), budget (.+?), loaded/.exec(job.result!.tested_reason)!;
    expect(needs).not.toBe(budget);
    expect(job.steps.some((s) => !s.loads && s.decided_by === "load")).toBe(true);
  });
});
