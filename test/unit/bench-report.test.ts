// The bench's definitions and bookkeeping, without a server: figure definitions (and that
// docs/performance.md carries them verbatim), the shared rate arithmetic, goal evaluation, the
// history record's shape and the kernel comparison.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { compareKernels, normalizeSystemInfo, serverSystemInfo } from "../../bench/kernels.ts";
import { appendHistory, evaluateGoal, GGUF_GOALS, type HistoryRecord, medianRow, modelRecord, pairedRow, recordProblems, renderTable } from "../../bench/report.ts";
import { FIGURES, figuresMarkdown, generationRate, prefillRate } from "../../src/throughput/figures.ts";
import { prompt } from "../../src/throughput/probes.ts";

const run = (completionTokens: number, firstAt: number, endAt: number) => ({ completionTokens, firstAt, endAt });

describe("figure definitions", () => {
  test("every figure has a unique id and says what it counts and from where to where", () => {
    expect(new Set(FIGURES.map((f) => f.id)).size).toBe(FIGURES.length);
    for (const f of FIGURES) {
      expect(f.measures.length).toBeGreaterThan(10);
      expect(f.span).toMatch(/→|sampled|highest/);
    }
  });

  test("docs/performance.md carries the definitions table exactly as the code defines it", () => {
    const doc = readFileSync(resolve(import.meta.dir, "../../docs/performance.md"), "utf8");
    // A boolean, so a mismatch does not print the whole page.
    expect(doc.includes(figuresMarkdown())).toBe(true);
  });

  test("aggregate with one stream is decode: one formula for both", () => {
    const single = [run(65, 1000, 2000)];
    expect(generationRate(single)).toBeCloseTo(64, 6);
    // Two streams of 65 tokens, first tokens 100 ms apart, both finished by t = 2100.
    expect(generationRate([run(65, 1000, 2000), run(65, 1100, 2100)])).toBeCloseTo(128 / 1.1, 6);
    expect(generationRate([])).toBeNaN();
    expect(generationRate([run(1, 5, 5)])).toBeNaN();
  });

  test("prefill rate is the prompt tokens evaluated over time to first token", () => {
    expect(prefillRate({ promptTokens: 256, cachedTokens: 0, ttftMs: 500 })).toBeCloseTo(512, 6);
    // Tokens a server took from its prompt cache are not prefill work.
    expect(prefillRate({ promptTokens: 256, cachedTokens: 6, ttftMs: 500 })).toBeCloseTo(500, 6);
    expect(prefillRate({ promptTokens: 256, cachedTokens: 0, ttftMs: 0 })).toBeNaN();
  });
});

describe("probe prompts", () => {
  // A server reuses the longest prefix a new prompt shares with one it holds, so prompts that
  // share a prefix are not the same work for a server with a prompt cache and one without.
  const sharedPrefix = (a: string, b: string) => {
    let i = 0;
    while (i < a.length && a[i] === b[i]) i++;
    return i;
  };

  test("prompts of different nonces differ from the first character unless the nonces are 26 apart", () => {
    const nonces = [0, 1, 2, 25, 999, 1000, 1001, 1300, 1309, 140_001, 140_002, 900_000, 900_001];
    for (const a of nonces) {
      for (const b of nonces) {
        if (a === b || (a - b) % 26 === 0) continue;
        expect(sharedPrefix(prompt(a, 8), prompt(b, 8))).toBe(0);
      }
    }
    // 26 apart: the first letter only, then the next one differs.
    expect(sharedPrefix(prompt(1000, 8), prompt(1026, 8))).toBe(1);
  });

  test("the same nonce and length give the same prompt, of about the asked number of words", () => {
    expect(prompt(1234, 32)).toBe(prompt(1234, 32));
    expect(prompt(1234, 32).split(" ").length).toBe(33);
  });
});

describe("goals", () => {
  const goal = (id: string) => GGUF_GOALS.find((g) => g.figure === id)!;

  test("ratio goals compare the median of per-repetition ratios", () => {
    const row = pairedRow("decode", [99, 97, 98], [100, 100, 100]);
    expect(row.ratio.median).toBeCloseTo(0.98, 6);
    expect(evaluateGoal(goal("decode"), row)).toEqual({ goal: "≥ 0.98×", value: 0.98, met: true });
    expect(evaluateGoal(goal("decode"), pairedRow("decode", [90], [100])).met).toBe(false);
  });

  test("TTFT overhead is LMX p50 minus reference p50, in ms", () => {
    expect(evaluateGoal(goal("ttft_p50"), medianRow("ttft_p50", 7.5, 5.0))).toEqual({ goal: "+≤ 2 ms", value: 2.5, met: false });
    expect(evaluateGoal(goal("ttft_p50"), medianRow("ttft_p50", 6.5, 5.0)).met).toBe(true);
  });

  test("absolute goals look at LMX alone; a missing measurement is never met", () => {
    expect(evaluateGoal(goal("ready"), pairedRow("ready", [250, 310], [20, 20])).met).toBe(true);
    expect(evaluateGoal(goal("rss_ready"), pairedRow("rss_ready", [130], [40])).met).toBe(false);
    expect(evaluateGoal(goal("aggregate4"), pairedRow("aggregate4", [], [])).met).toBe(false);
  });

  test("the table shows the ratio, the goal and whether it is met", () => {
    const text = renderTable("t", "llama-server", [pairedRow("decode", [99], [100]), medianRow("ttft_p50", 8, 5), pairedRow("aggregate2", [10], [10])], GGUF_GOALS);
    const lines = text.split("\n");
    expect(lines.find((l) => l.startsWith("decode tok/s"))).toMatch(/0\.99\s+≥ 0\.98×\s+met$/);
    expect(lines.find((l) => l.startsWith("TTFT ms p50"))).toMatch(/\+3\.0 ms\)\s+\+≤ 2 ms\s+not met$/);
    expect(lines.find((l) => l.startsWith("aggregate tok/s, 2 streams"))).toMatch(/1\.00$/);
  });
});

describe("history record", () => {
  const record = (): HistoryRecord => ({
    schema: 2, at: "2026-12-03T12:00:00.000Z", command: "bun run bench -- --quick", mode: "quick", duration_s: 1,
    git: { commit: "a".repeat(40), dirty: false },
    machine: { cpu: "x", logical_cores: 2, physical_cores: 2, ram_gb: 23.5, os: "linux 6", arch: "x64", cpu_flags: [], load_average: { before: [0], after: [0] } },
    versions: { lmx: "0.1.0-dev", bun: "1", node_llama_cpp: "3.21.1", llama_cpp: { release: "v0.4.0", commit: "b".repeat(40) } },
    settings: { threads: 2, parallel: 8, ctx_per_sequence: 4096 },
    reference: { build: "b", kernels: [] },
    models: [modelRecord({ id: "m", shape: "s", size_bytes: 1 }, "llama-server", [pairedRow("decode", [99], [100])], GGUF_GOALS)],
    notes: [],
  });

  test("a complete record has no problems and appends as exactly one JSON line", () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-history-"));
    try {
      const file = join(dir, "sub", "history.jsonl");
      appendHistory(file, record());
      appendHistory(file, record());
      const lines = readFileSync(file, "utf8").trimEnd().split("\n");
      expect(lines).toHaveLength(2);
      const back = JSON.parse(lines[1]!) as HistoryRecord;
      expect(recordProblems(back)).toEqual([]);
      expect(back.models[0]!.rows[0]).toMatchObject({ figure: "decode", unit: "tok/s", goal: "≥ 0.98×", met: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("missing machine, versions, commit or rows are refused", () => {
    const bad = { ...record(), git: { commit: "HEAD", dirty: false }, models: [] } as HistoryRecord;
    expect(recordProblems(bad)).toEqual(["git.commit", "models"]);
    expect(() => appendHistory(join(tmpdir(), "never-written.jsonl"), bad)).toThrow(/git\.commit, models/);
    expect(recordProblems({ ...record(), machine: undefined })).toContain("machine.cpu");
  });
});

describe("same-kernel check", () => {
  const line = "main: system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | REPACK = 1 |";
  const files = { "libggml-cpu-icelake.so": "/e/libggml-cpu-icelake.so (inode 5)", "libllama.v0.4.0.so": "/e/libllama.v0.4.0.so (inode 6)" };

  test("llama-server's system_info line reduces to ggml's own feature list", () => {
    expect(serverSystemInfo(`x\n${line}\ny`)).toBe("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | REPACK = 1");
    expect(normalizeSystemInfo("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | REPACK = 1 | ")).toBe(serverSystemInfo(line)!);
    expect(serverSystemInfo("no such line")).toBeUndefined();
  });

  test("identical only with the same variant, the same files and the same system_info", () => {
    const info = serverSystemInfo(line);
    const same = compareKernels({ cpuVariant: "icelake", files }, { cpuVariant: "icelake", files }, info, info);
    expect(same.identical).toBe(true);
    expect(same.shared_files).toHaveLength(2);
    const other = compareKernels({ cpuVariant: "icelake", files }, { cpuVariant: "icelake", files: { ...files, "libllama.v0.4.0.so": "/build/libllama.so (inode 9)" } }, info, info);
    expect(other.identical).toBe(false);
    expect(other.differing_files[0]).toContain("libllama.v0.4.0.so");
    expect(compareKernels({ cpuVariant: "icelake", files }, { cpuVariant: "icelake", files }, info, "CPU : SSE3 = 1").identical).toBe(false);
    // The compiled lmx maps its own extracted copy: other paths, the same content.
    const copy = Object.fromEntries(Object.entries(files).map(([n, f]) => [n, f.replace(/^\/[^ ]*/, `/home/x/engines/${n}`)]));
    const digests = Object.fromEntries(Object.keys(files).map((n) => [n, `sha-of-${n}`]));
    expect(compareKernels({ cpuVariant: "icelake", files: copy, digests }, { cpuVariant: "icelake", files, digests }, info, info).identical).toBe(true);
    const changed = compareKernels({ cpuVariant: "icelake", files: copy, digests: { ...digests, "libllama.v0.4.0.so": "other" } }, { cpuVariant: "icelake", files, digests }, info, info);
    expect(changed.identical).toBe(false);
    expect(changed.differing_files).toHaveLength(1);
  });
});
