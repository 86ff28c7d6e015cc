// patches/node-llama-cpp+3.21.1.patch, AddonComputeThread: a context's decodes and samplings run on
// one thread of its own ("llama compute"), not on whichever thread of the runtime's pool is free,
// which moved consecutive tokens between CPUs. Real engine, stories260K, one thread; Linux, where
// the threads are named and their CPU time is in /proc/self/task/TID/schedstat.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import type { Llama, LlamaModel } from "node-llama-cpp";
import { type AddonContextInternals, type ContextInternals, generate, loadStories, override, requireNative, unloadStories } from "./helpers/llama-internals.ts";

let llama: Llama;
let model: LlamaModel;
beforeAll(async () => ({ llama, model } = await loadStories()));
afterAll(() => unloadStories({ llama, model }));

/** Every thread of this process: its name and the nanoseconds it has run. */
function threads(): { tid: string; name: string; ns: number }[] {
  return readdirSync("/proc/self/task").flatMap((tid) => {
    try {
      const name = readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim();
      return [{ tid, name, ns: Number(readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").split(" ")[0]) }];
    } catch {
      return []; // ended between the listing and the read
    }
  });
}
/** The ids of the compute threads alive now (other tests' contexts may own some). */
const computeThreads = () => new Set(threads().filter((t) => t.name === "llama compute").map((t) => t.tid));

/** CPU time each thread spent while `work` ran, by thread id. */
async function cpuDuring(work: () => Promise<void>): Promise<{ name: string; ns: number }[]> {
  const before = new Map(threads().map((t) => [t.tid, t.ns]));
  await work();
  return threads().map((t) => ({ name: t.name, ns: t.ns - (before.get(t.tid) ?? 0) }));
}

describe.skipIf(process.platform !== "linux")("a context's compute thread", () => {
  test("runs the decodes, samplings and runs of tokens of every path, not the runtime's thread pool", async () => {
    const context = await model.createContext({ contextSize: 1024, sequences: 2, threads: 1, flashAttention: false });
    try {
      const addon = (context as unknown as ContextInternals)._ctx;
      requireNative(addon, "generateTokenRuns"); // LMX's addon, not the prebuilt one
      // Counts the addon's calls, so each path is known to take the jobs it is meant to.
      const calls: Record<string, number> = {};
      for (const key of ["decodeBatch", "sampleToken", "decodeBatchAndSampleToken", "generateTokenRuns"] as const) {
        const method = addon[key] as (...args: unknown[]) => unknown;
        override(addon, key, ((...args: unknown[]) => {
          calls[key] = (calls[key] ?? 0) + 1;
          return method.apply(addon, args);
        }) as AddonContextInternals[typeof key]);
      }
      const [a, b] = [context.getSequence(), context.getSequence()];
      const prompt = model.tokenize("Once upon a time there was a little girl called Lily. She");
      const expected: Record<string, string[]> = {
        runs: ["generateTokenRuns"],
        direct: ["decodeBatchAndSampleToken"],
        dispatcher: ["decodeBatch", "sampleToken"],
      };
      const paths: Record<string, () => Promise<void>> = {
        // One sequence: decodes straight through the addon, in runs of tokens.
        runs: async () => void (await generate(a, prompt, 400)),
        // No runs: one decode and sampling per token.
        direct: async () => {
          (context as unknown as ContextInternals)._tokenRuns = { maxTokenMs: 0, targetMs: 0, maxTokens: 1 };
          await a.clearHistory();
          await generate(a, prompt, 400);
        },
        // Two sequences with a repeat penalty, which runs leave alone: the dispatcher's batch
        // decode, then a sampling job per sequence.
        dispatcher: async () => {
          await Promise.all([a.clearHistory(), b.clearHistory()]);
          await Promise.all([generate(a, prompt, 200, undefined, { temperature: 0, repeatPenalty: { punishTokens: () => prompt, penalty: 1.1 } }), generate(b, prompt, 200, undefined, { temperature: 0, repeatPenalty: { punishTokens: () => prompt, penalty: 1.2 } })]);
        },
      };
      for (const [path, work] of Object.entries(paths)) {
        for (const key of Object.keys(calls)) delete calls[key];
        const used = await cpuDuring(work);
        for (const key of expected[path]!) expect({ path, key, called: (calls[key] ?? 0) > 10 }).toEqual({ path, key, called: true });
        // The threads that ran meanwhile: an idle one belongs to another test's context.
        const compute = used.filter((t) => t.name === "llama compute" && t.ns > 0);
        const pool = used.filter((t) => t.name.startsWith("Bun Pool")).reduce((sum, t) => sum + t.ns, 0);
        expect({ path, computeThreads: compute.length }).toEqual({ path, computeThreads: 1 });
        // The pool's threads get none of these jobs.
        expect({ path, computeOverPool: compute[0]!.ns > 4 * pool }).toEqual({ path, computeOverPool: true });
      }
    } finally {
      await context.dispose();
    }
  });

  test("with two threads, a token starts no thread: the context keeps ggml's workers, and they end with it", async () => {
    // Without a pool attached, ggml's CPU backend starts n_threads - 1 workers for every graph and
    // joins them at its end; on a machine whose cores were all busy that made LMX decode stories260K
    // at 0.3x llama-server with two threads. Linux hands out process and thread ids in order, so
    // the id of a process started after the tokens counts the threads started meanwhile.
    const nextId = () => spawnSync("true").pid!;
    const before = new Set(threads().map((t) => t.tid));
    const context = await model.createContext({ contextSize: 512, sequences: 1, threads: 2, flashAttention: false });
    let worker = "";
    try {
      const sequence = context.getSequence();
      await generate(sequence, model.tokenize("Once upon a time there was a little girl called Lily. She"), 8);
      const cpuBefore = new Map(threads().map((t) => [t.tid, t.ns]));
      const from = nextId();
      const tokens = await generate(sequence, model.tokenize(" and"), 128);
      const started = nextId() - from - 1;
      expect(tokens.length).toBe(128);
      expect({ threadsStartedFor128Tokens: started < 32 }).toEqual({ threadsStartedFor128Tokens: true });
      // The pool's worker: of the threads that came with the context, other than the compute
      // thread, the one that ran most during those tokens (it computes half of every graph).
      const busiest = threads()
        .filter((t) => !before.has(t.tid) && t.name !== "llama compute")
        .map((t) => ({ tid: t.tid, ns: t.ns - (cpuBefore.get(t.tid) ?? 0) }))
        .sort((a, b) => b.ns - a.ns)[0];
      expect(busiest?.ns ?? 0).toBeGreaterThan(1e6);
      worker = busiest!.tid;
    } finally {
      await context.dispose();
    }
    expect(threads().some((t) => t.tid === worker)).toBe(false);
  });

  test("ends when its context is disposed", async () => {
    for (let i = 0; i < 3; i++) {
      const before = computeThreads();
      const context = await model.createContext({ contextSize: 256, sequences: 1, threads: 1, flashAttention: false });
      await generate(context.getSequence(), model.tokenize("Once upon a time"), 4);
      const started = [...computeThreads()].filter((tid) => !before.has(tid));
      expect(started).toHaveLength(1);
      await context.dispose();
      expect(computeThreads().has(started[0]!)).toBe(false);
    }
  });
});
