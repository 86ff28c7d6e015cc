// The MLX worker and its supervisor, below the HTTP API: the protocol on both sides, text
// handling (stop strings, tool-call markers), prompt-cache reuse, scoring, and a real worker that
// hangs. Workers that crash, hang, start slowly or send garbage on cue: test/mlx-supervisor.test.ts.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { WorkerCrashedError, WorkerSupervisor } from "../src/engines/mlx/supervisor.ts";
import { parseWorkerLine, PROTOCOL_VERSION, ProtocolViolation } from "../src/engines/mlx/protocol.ts";
import { REPO_ROOT } from "./fixtures/prepare.ts";
import { mlxTestEnv, type MlxTestEnv } from "./helpers/mlx.ts";

const WORKER = join(REPO_ROOT, "native", "mlx_worker");

let env: MlxTestEnv;
beforeAll(async () => {
  env = await mlxTestEnv();
}, 600_000);

/** Runs the worker with `lines` on stdin and returns what it wrote to its protocol channel. */
async function converse(lines: string[]): Promise<Record<string, unknown>[]> {
  const proc = Bun.spawn([env.python, WORKER], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  for (const l of lines) proc.stdin.write(l + "\n");
  await proc.stdin.end();
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  return out.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).filter((m) => m.type !== "heartbeat");
}

describe("protocol", () => {
  test("the worker greets with its protocol version and versions, and ends on a message that does not validate", async () => {
    const msgs = await converse([JSON.stringify({ type: "load", id: "", path: "/x", context_length: 1, parallel: 1 })]);
    expect(msgs[0]).toMatchObject({ type: "hello", protocol: PROTOCOL_VERSION, mlx: "0.32.4", mlx_lm: "0.32.2" });
    expect(msgs.at(-1)).toMatchObject({ type: "fatal" });
    expect(String(msgs.at(-1)!.message)).toContain("id: expected a non-empty string");
  });

  test("non-JSON input is fatal too; LMX's side rejects malformed worker lines", async () => {
    const msgs = await converse(["this is not json"]);
    expect(msgs.at(-1)).toMatchObject({ type: "fatal" });
    expect(() => parseWorkerLine("garbage")).toThrow(ProtocolViolation);
    expect(() => parseWorkerLine(JSON.stringify({ type: "text", id: "x" }))).toThrow(/text/);
    expect(() => parseWorkerLine(JSON.stringify({ type: "launch_missiles" }))).toThrow(ProtocolViolation);
    expect(parseWorkerLine(JSON.stringify({ type: "text", id: "x", text: "hi" }))).toEqual({ type: "text", id: "x", text: "hi" });
  });

  test("thinking and tool-call markers are matched across chunk boundaries and never leak partially; stop strings are not the worker's", () => {
    const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(WORKER)})
import protocol
from textfilter import OutputSplitter
out = {}
f = OutputSplitter()
out["plain"] = [f.feed(x) for x in ["ab", "cS", "TO", "Pxyz"]] + [f.finish()]
f = OutputSplitter("<think>", "</think>", "<tool_call>", "</tool_call>")
out["agent"] = [f.feed(x) for x in ["<thi", "nk>hmm</th", "ink>Hi <tool", "_call>{\\"name\\": \\"f\\"}</tool", "_call> bye <to"]] + [f.finish()]
f = OutputSplitter("<think>", "</think>", None, None, in_think=True)
out["opened"] = [f.feed("still thinking</think>answer")]
f = OutputSplitter(None, None, "[TOOL_CALLS]", "")
out["no_end"] = [f.feed("x[TOOL_CALLS][{\\"name\\"")] + [f.finish()]
f = OutputSplitter(None, None, "<tool_call>", "</tool_call>")
out["abandoned"] = [f.feed("a <tool_call>{\\"na")]
f.abandon()
out["abandoned"] += [f.finish()]
protocol.send(out)
`;
    const proc = Bun.spawnSync([env.python, "-c", script], { stdout: "pipe", stderr: "pipe" });
    const out = JSON.parse(proc.stdout.toString()) as Record<string, unknown>;
    expect(out.plain).toEqual([[["text", "ab"]], [["text", "cS"]], [["text", "TO"]], [["text", "Pxyz"]], []]);
    expect(out.agent).toEqual([
      [], [["reasoning", "hmm"]], [["text", "Hi "]],
      [["tool_start", "<tool_call>"], ["tool", '{"name": "f"}']], [["tool_end", "</tool_call>"], ["text", " bye "]], [["text", "<to"]],
    ]);
    expect(out.opened).toEqual([[["reasoning", "still thinking"], ["text", "answer"]]]);
    expect(out.no_end).toEqual([[["text", "x"], ["tool_start", "[TOOL_CALLS]"], ["tool", '[{"name"']], [["tool_end", ""]]]);
    expect(out.abandoned).toEqual([[["text", "a "], ["tool_start", "<tool_call>"], ["tool", '{"na']], [["tool_end", ""]]]);
  });
});

describe("supervisor", () => {
  let sup: WorkerSupervisor;
  beforeAll(async () => {
    sup = new WorkerSupervisor({
      label: "worker-test",
      command: [env.python, WORKER],
      load: { path: env.model, context_length: 1024, parallel: 2, prefill_step_size: 256 },
      hangTimeoutMs: 3000,
      backoffMs: 200,
    });
    await sup.ensureRunning();
  }, 120_000);
  afterAll(async () => {
    await sup.stop();
  });

  const chat = (id: string, content: string, extra: object = {}) => ({
    type: "generate" as const, id, prompt: { kind: "chat" as const, messages: [{ role: "user" as const, content }] },
    max_tokens: 6, sampling: { temperature: 0 }, parse_tools: false, ...extra,
  });

  test("loads the model and reports it", () => {
    expect(sup.state).toBe("ready");
    expect(sup.loaded).toMatchObject({ model_type: "qwen2", vocab_size: 151936, has_chat_template: true, has_tool_calling: true, eos_token_ids: [151645] });
  });

  test("a follow-up prompt that extends a finished one reuses its KV cache", async () => {
    const events: string[] = [];
    const first = await sup.generate(chat(sup.newId("g"), "Tell me about the sea and the ships on it"), (e) => events.push(e.type));
    expect(first.cached_tokens).toBe(0);
    expect(events).toContain("started");
    let cached = -1;
    const second = await sup.generate(chat(sup.newId("g"), "Tell me about the sea and the ships on it, and the fish"), (e) => {
      if (e.type === "started") cached = e.cached_tokens;
    });
    expect(cached).toBeGreaterThan(10);
    expect(second.cached_tokens).toBe(cached);
    expect(second.prompt_tokens).toBeGreaterThan(cached);
  }, 60_000);

  test("`end` finishes a generation early as if the model stopped: done, stop, the tokens so far; the worker serves on", async () => {
    const stop = new AbortController();
    let texts = 0;
    const done = await sup.generate(chat(sup.newId("g"), "Tell me a long story", { max_tokens: 300, sampling: { temperature: 0, ignore_eos: true } }), (e) => {
      if (e.type === "text" && ++texts === 2) stop.abort();
    }, undefined, stop.signal);
    expect(done).toMatchObject({ finish_reason: "stop", reasoning_tokens: 0 });
    expect(done.completion_tokens).toBeGreaterThanOrEqual(2);
    expect(done.completion_tokens).toBeLessThan(100);
    expect((await sup.generate(chat(sup.newId("g"), "Again"), () => undefined)).finish_reason).toBe("length");
  });

  test("scores a continuation (teacher forcing) with finite log-probabilities", async () => {
    const reply = await sup.call({ type: "score", id: sup.newId("s"), tokens: [9707, 1879, 11, 1052, 13], first_scored: 2 }, "scores");
    expect(reply.logprobs).toHaveLength(3);
    for (const lp of reply.logprobs) expect(lp).toBeLessThan(0);
  }, 30_000);

  test("a worker that stops responding is killed, its request fails with a 5xx, and the next request restarts it", async () => {
    const pid = sup.pid!;
    const running = sup.generate(chat(sup.newId("g"), "Hang on", { max_tokens: 500 }), () => undefined);
    await Bun.sleep(300);
    process.kill(pid, "SIGSTOP");
    const err = await running.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerCrashedError);
    expect((err as WorkerCrashedError).status).toBeGreaterThanOrEqual(500);
    expect((err as Error).message).toContain("stopped responding");
    expect(sup.state).toBe("crashed");
    expect(sup.backoffRemaining()).toBeGreaterThanOrEqual(0);
    await sup.ensureRunning();
    expect(sup.state).toBe("ready");
    expect(sup.pid).not.toBe(pid);
    const done = await sup.generate(chat(sup.newId("g"), "Back again"), () => undefined);
    expect(done.completion_tokens).toBe(6);
  }, 120_000);
});
