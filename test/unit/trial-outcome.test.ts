// What a finished trial-load child means (src/engines/llama/trial-load.ts): which deaths count
// against the model file, which against the engine, and which prove nothing.

import { describe, expect, test } from "bun:test";
import { trialOutcome, trialPrompt, withoutBunCrashReport } from "../../src/engines/llama/trial-load.ts";
import { EngineCrashedError, InvalidModelFileError } from "../../src/errors.ts";

const end = (over: Partial<Parameters<typeof trialOutcome>[1]>): Parameters<typeof trialOutcome>[1] => ({
  code: null, signal: null, timedOut: false, timeoutMs: 60_000, stderr: "", ...over,
});

describe("trial outcome", () => {
  test("exit 0 passed; the clean-failure code leaves the error to the real load", () => {
    expect(trialOutcome("/m.gguf", end({ code: 0 }))).toBe(true);
    expect(trialOutcome("/m.gguf", end({ code: 3 }))).toBe(false);
  });

  test("an abort in llama.cpp is the file's fault: 422 with the child's last output", () => {
    const err = trialOutcome("/m.gguf", end({ signal: "SIGABRT", stderr: "llama_model_load: loading\nGGML_ASSERT(n_head > 0) failed\n" }));
    expect(err).toBeInstanceOf(InvalidModelFileError);
    expect((err as InvalidModelFileError).status).toBe(422);
    expect((err as Error).message).toContain("killed by SIGABRT");
    expect((err as Error).message).toContain("GGML_ASSERT(n_head > 0) failed");
  });

  test("an illegal instruction is the engine's: engine_crashed, naming the way to another engine", () => {
    // What Bun prints when native code in it hits an illegal instruction (ud2 in a dlopen'ed
    // library gives the same), after the engine's own last line.
    const stderr = [
      "load_tensors: CPU_Mapped model buffer size = 1.25 MiB",
      "=".repeat(60),
      "Bun v1.4.5 (a7733435c) Linux x64",
      "CPU: sse42 popcnt avx avx2 avx512",
      'Args: "/usr/local/bin/lmx" "__lmx-trial-load" "{}"',
      "Elapsed: 1250ms | User: 1087ms | Sys: 144ms",
      "",
      "panic: Illegal instruction at address 0x7F5F780F3781",
      "oh no: Bun has crashed. This indicates a bug in Bun, not your code.",
      "",
      "please file a GitHub issue using the link below:",
      "",
      " https://bun.report/1.4.5/l_1a773343mhEqgggCg47a050c0/ge8tkUohgoEA3",
      "",
    ].join("\n");
    const err = trialOutcome("/m.gguf", end({ signal: "SIGILL", stderr }));
    expect(err).toBeInstanceOf(EngineCrashedError);
    expect(err).not.toBeInstanceOf(InvalidModelFileError);
    expect(err).toMatchObject({ code: "engine_crashed", status: 500, type: "server_error" });
    expect((err as Error).message).toContain("illegal instruction (SIGILL)");
    expect((err as Error).message).toContain("lmx engine use");
    // The engine's last line and Bun's one line on what happened; not Bun's request for a bug report.
    expect((err as Error).message).toEndWith("Last output:\nload_tensors: CPU_Mapped model buffer size = 1.25 MiB\npanic: Illegal instruction at address 0x7F5F780F3781");
  });

  test("output without a crash report is kept as it is", () => {
    const text = "a\n====\npanic is not a line start here\nb";
    expect(withoutBunCrashReport(text)).toBe(text);
  });

  test("a timeout and a SIGKILL say nothing about the file", () => {
    const slow = trialOutcome("/m.gguf", end({ signal: "SIGKILL", timedOut: true, timeoutMs: 61_000 }));
    expect(slow).toMatchObject({ code: "model_load_timeout" });
    expect((slow as Error).message).toContain("longer than 61 s");
    const killed = trialOutcome("/m.gguf", end({ signal: "SIGKILL" }));
    expect(killed).not.toBeInstanceOf(InvalidModelFileError);
    expect((killed as Error).message).toContain("out of memory?");
  });
});

describe("trial prompt", () => {
  test("a batch of eight rows, not one: ggml's AMX path skips a single row, so a faulting kernel would pass the trial", () => {
    expect(trialPrompt([15043], 4096)).toEqual(Array(8).fill(15043));
    expect(trialPrompt([1, 2, 3], 4096)).toEqual([1, 2, 3, 1, 2, 3, 1, 2]);
  });

  test("a tiny context keeps room for the generated token", () => {
    expect(trialPrompt([7], 6)).toEqual([7, 7, 7, 7]);
    expect(trialPrompt([7], 2)).toEqual([7]);
  });
});
