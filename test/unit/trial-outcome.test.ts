// What a finished trial-load child means (src/engines/llama/trial-load.ts): which deaths count
// against the model file, which against the engine, and which prove nothing.

import { describe, expect, test } from "bun:test";
import { trialOutcome } from "../../src/engines/llama/trial-load.ts";
import { EngineCrashedError, InvalidModelFileError } from "../../src/errors.ts";

const end = (over: Partial<Parameters<typeof trialOutcome>[1]>): Parameters<typeof trialOutcome>[1] => ({
  code: null, signal: null, timedOut: false, timeoutMs: 60_000, tail: "", ...over,
});

describe("trial outcome", () => {
  test("exit 0 passed; the clean-failure code leaves the error to the real load", () => {
    expect(trialOutcome("/m.gguf", end({ code: 0 }))).toBe(true);
    expect(trialOutcome("/m.gguf", end({ code: 3 }))).toBe(false);
  });

  test("an abort in llama.cpp is the file's fault: 422 with the child's last output", () => {
    const err = trialOutcome("/m.gguf", end({ signal: "SIGABRT", tail: "GGML_ASSERT(n_head > 0) failed" }));
    expect(err).toBeInstanceOf(InvalidModelFileError);
    expect((err as InvalidModelFileError).status).toBe(422);
    expect((err as Error).message).toContain("killed by SIGABRT");
    expect((err as Error).message).toContain("GGML_ASSERT(n_head > 0) failed");
  });

  test("an illegal instruction is the engine's: engine_crashed, naming the way to another engine", () => {
    const err = trialOutcome("/m.gguf", end({ signal: "SIGILL", tail: "Illegal instruction" }));
    expect(err).toBeInstanceOf(EngineCrashedError);
    expect(err).not.toBeInstanceOf(InvalidModelFileError);
    expect(err).toMatchObject({ code: "engine_crashed", status: 500, type: "server_error" });
    expect((err as Error).message).toContain("illegal instruction (SIGILL)");
    expect((err as Error).message).toContain("lmx engine use");
    expect((err as Error).message).toContain("Illegal instruction");
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
