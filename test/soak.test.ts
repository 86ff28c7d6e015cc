import { describe, expect, test } from "bun:test";
import { ensureFixtures } from "./fixtures/models.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";
import { rng } from "../src/util/random.ts";

// A bounded soak: concurrent streamed and non-streamed chat and completion requests with client
// aborts at random points (queued, prefill, mid-stream) against the real engine. Every request must
// settle (complete or fail cleanly) within a bound and the server must still serve afterwards; a
// request whose await never settles is the intermittent hang of issue 15 item 14.
// LMX_SOAK_SEED replays a run; LMX_SOAK_REQUESTS makes it longer.

const fx = ensureFixtures();
const SEED = Number(process.env.LMX_SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
const REQUESTS = Number(process.env.LMX_SOAK_REQUESTS ?? 40);
/** Far above any request here (≤ 96 tokens on a tiny model, even on a starved machine), below the test time-out. */
const PER_REQUEST_MS = 60_000;


type Outcome = "completed" | "aborted" | "refused";

interface Plan {
  model: string;
  chat: boolean;
  stream: boolean;
  maxTokens: number;
  /** Abort after this many ms from sending (undefined: never), or after this many stream chunks. */
  abortAfterMs?: number;
  abortAfterChunks?: number;
}

function plan(next: () => number, models: string[], i: number): Plan {
  const stream = next() < 0.6;
  const p: Plan = { model: models[i % models.length]!, chat: next() < 0.6, stream, maxTokens: 8 + Math.floor(next() * 88) };
  const r = next();
  // A third aborts: some at once (still queued or in prefill), some later, streams mid-way.
  if (r < 0.12) p.abortAfterMs = Math.floor(next() * 5);
  else if (r < 0.22) p.abortAfterMs = 5 + Math.floor(next() * 200);
  else if (r < 0.33 && stream) p.abortAfterChunks = 1 + Math.floor(next() * 20);
  return p;
}

async function run(srv: TestServer, p: Plan, i: number): Promise<Outcome> {
  const ac = new AbortController();
  const timer = p.abortAfterMs !== undefined ? setTimeout(() => ac.abort(), p.abortAfterMs) : undefined;
  const body = p.chat
    ? { model: p.model, messages: [{ role: "user", content: `Tell story ${i}` }], max_tokens: p.maxTokens, seed: i, stream: p.stream }
    : { model: p.model, prompt: `Once upon a time ${i}`, max_tokens: p.maxTokens, seed: i, stream: p.stream };
  try {
    const res = await fetch(`${srv.url}/v1/${p.chat ? "chat/completions" : "completions"}`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: ac.signal,
    });
    if (res.status === 503) {
      await res.text();
      return "refused";
    }
    expect(res.status).toBe(200);
    if (!p.stream) {
      const json = (await res.json()) as { choices: { finish_reason: string }[] };
      expect(["stop", "length"]).toContain(json.choices[0]!.finish_reason);
      return "completed";
    }
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let chunks = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      chunks++;
      if (p.abortAfterChunks !== undefined && chunks >= p.abortAfterChunks) {
        ac.abort();
        await reader.cancel().catch(() => undefined);
        return "aborted";
      }
    }
    expect(text).toContain("data: [DONE]");
    return "completed";
  } catch (err) {
    if (ac.signal.aborted) return "aborted";
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Rejects if `work` has not settled within `ms`, naming the request, instead of hanging the run. */
function bounded<T>(what: string, work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const limit = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms (seed ${SEED})`)), ms); });
  return Promise.race([work, limit]).finally(() => clearTimeout(timer));
}

describe("soak", () => {
  test("concurrent streamed and non-streamed requests with random aborts all settle, and the server still serves", async () => {
    console.log(`soak seed ${SEED} (LMX_SOAK_SEED=${SEED} replays it), ${REQUESTS} requests`);
    const next = rng(SEED);
    const parallel = 2 + Math.floor(next() * 3);
    await using srv = await startTestServer([
      "--model", fx.qwen2Tiny, "--model", fx.stories260K, "--parallel", String(parallel), "--ctx", "1024", "--queue", "64",
    ]);
    const models = ["qwen2-tiny", "stories260K"];
    // Loaded first, outside the per-request bound: a cold load on a busy machine takes seconds.
    for (const model of models) {
      const res = await srv.request("/v1/completions", { method: "POST", json: { model, prompt: "Once", max_tokens: 1 } });
      expect(res.status).toBe(200);
    }
    const outcomes: Record<Outcome, number> = { completed: 0, aborted: 0, refused: 0 };
    // Requests arrive in waves a little larger than the parallelism, so some queue.
    let i = 0;
    while (i < REQUESTS) {
      const wave = Array.from({ length: Math.min(REQUESTS - i, parallel + 1 + Math.floor(next() * 3)) }, () => {
        const n = i++;
        const p = plan(next, models, n);
        return bounded(`request ${n} ${JSON.stringify(p)}`, run(srv, p, n), PER_REQUEST_MS);
      });
      for (const o of await Promise.all(wave)) outcomes[o]++;
    }
    console.log(`soak outcomes (parallel ${parallel}):`, JSON.stringify(outcomes));
    expect(outcomes.completed).toBeGreaterThan(0);
    for (const model of models) {
      const res = await bounded(`the final ${model} request`, srv.request("/v1/completions", { method: "POST", json: { model, prompt: "Once", max_tokens: 4 } }), PER_REQUEST_MS);
      expect(res.status).toBe(200);
      const status = (await srv.server.scheduler.list()).find((m) => m.descriptor.id === model)!;
      expect({ running: status.running, queued: status.queued }).toEqual({ running: 0, queued: 0 });
      // With every request settled, nothing may be left in the engine: no decode still queued in
      // node-llama-cpp's context, no sequence the batch gate still counts as generating.
      const lease = await srv.server.scheduler.acquire(model);
      const engine = lease.model as unknown as { context?: { _queuedDecodes?: unknown[]; _batchDispatchPending?: boolean }; gate?: { generating?: number } };
      const state = { queuedDecodes: engine.context?._queuedDecodes?.length ?? 0, dispatchPending: engine.context?._batchDispatchPending ?? false, generating: engine.gate?.generating ?? 0 };
      lease.release();
      expect(state).toEqual({ queuedDecodes: 0, dispatchPending: false, generating: 0 });
    }
    // An unload frees the context; one stuck decode would hold it for ever.
    for (const model of models) {
      const res = await bounded(`unloading ${model}`, srv.request(`/admin/v1/models/${model}/unload`, { method: "POST" }), PER_REQUEST_MS);
      expect(res.status).toBe(200);
    }
  }, Math.max(120_000, REQUESTS * 3000));
});
