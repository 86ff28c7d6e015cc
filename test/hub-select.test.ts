// Choosing files from a repo (quant, fallback, split shards, MLX snapshots) and searching the hub.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { listFiles } from "@huggingface/hub";
import { join } from "node:path";
import { NoMatchingFileError, UnsafePathError, UsageError } from "../src/errors.ts";
import { MEMORY_OVERHEAD_FACTOR, searchModels } from "../src/hub/search.ts";
import { type RepoFile, detectFormat, parsePullSpec, quantOf, rankQuants, selectFiles } from "../src/hub/select.ts";
import { type FakeHub, demoRepos, startFakeHub } from "./hub/fake-hub.ts";

const MODELS = join(import.meta.dir, "../../shared/models");
const STORIES_SIZE = 1185376;

let hub: FakeHub;
beforeAll(async () => {
  hub = await startFakeHub({ repos: demoRepos(MODELS) });
});
afterAll(async () => {
  await hub.stop();
});

async function listing(repo: string): Promise<RepoFile[]> {
  const out: RepoFile[] = [];
  for await (const e of listFiles({ repo, hubUrl: hub.url, recursive: true })) if (e.type === "file") out.push({ path: e.path, size: e.size });
  return out;
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    if (err instanceof Error) return err;
  }
  throw new Error("expected an error");
}

describe("parsePullSpec", () => {
  test("repo, repo:QUANT, repo:file.gguf, with hub URL prefixes", () => {
    expect(parsePullSpec("ggml-org/tiny-llamas")).toEqual({ repo: "ggml-org/tiny-llamas" });
    expect(parsePullSpec("bartowski/Llama-3.2-1B-Instruct-GGUF:q4_k_m")).toEqual({ repo: "bartowski/Llama-3.2-1B-Instruct-GGUF", quant: "Q4_K_M" });
    expect(parsePullSpec("org/repo:model-Q8_0.gguf")).toEqual({ repo: "org/repo", file: "model-Q8_0.gguf" });
    expect(parsePullSpec("org/repo:Q4_K_M/model-Q4_K_M-00001-of-00002.gguf")).toEqual({ repo: "org/repo", file: "Q4_K_M/model-Q4_K_M-00001-of-00002.gguf" });
    expect(parsePullSpec("hf.co/org/repo:IQ4_XS")).toEqual({ repo: "org/repo", quant: "IQ4_XS" });
    expect(parsePullSpec("https://huggingface.co/org/repo")).toEqual({ repo: "org/repo" });
  });

  test("bad specs name the bad part", () => {
    expect(thrown(() => parsePullSpec("org/repo:"))).toBeInstanceOf(UsageError);
    const bogus = thrown(() => parsePullSpec("org/repo:Q4 K"));
    expect(bogus).toBeInstanceOf(UsageError);
    expect(bogus.message).toContain('"Q4 K"');
    expect(thrown(() => parsePullSpec("org/repo:../x.gguf"))).toBeInstanceOf(UnsafePathError);
    expect(thrown(() => parsePullSpec("../../etc:Q4_K_M"))).toBeInstanceOf(UnsafePathError);
    expect(thrown(() => parsePullSpec("justaname"))).toBeInstanceOf(UnsafePathError);
  });
});

describe("quant tags", () => {
  test("found in file names and folders, case-insensitively", () => {
    const cases: [string, string | null][] = [
      ["Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"],
      ["qwen2.5-0.5b-instruct-q8_0.gguf", "Q8_0"],
      ["Meta-Llama-3-8B.IQ4_XS.gguf", "IQ4_XS"],
      ["model-IQ2_XXS.gguf", "IQ2_XXS"],
      ["ggml-model-f16.gguf", "F16"],
      ["gemma-3-4b-it-BF16.gguf", "BF16"],
      ["Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"],
      ["tiny-split-Q8_0-00001-of-00003.gguf", "Q8_0"],
      ["Q5_K_M/model-00001-of-00002.gguf", "Q5_K_M"],
      ["stories260K.gguf", null],
      ["Qwen2-7B.gguf", null],
    ];
    for (const [name, quant] of cases) expect([name, quantOf(name)]).toEqual([name, quant]);
  });

  test("fallback order: same width, then wider (narrowest first), then narrower", () => {
    const available = ["Q2_K", "Q3_K_M", "Q4_0", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q5_0", "Q6_K", "Q8_0", "F16", "BF16", "IQ4_XS"];
    expect(rankQuants("Q4_K_M", available)).toEqual(["Q4_K_S", "Q4_0", "IQ4_XS", "Q5_K_M", "Q5_K_S", "Q5_0", "Q6_K", "Q8_0", "F16", "BF16", "Q3_K_M", "Q2_K"]);
    expect(rankQuants("IQ4_NL", ["Q4_K_M", "IQ4_XS", "Q4_0"])[0]).toBe("IQ4_XS");
    expect(rankQuants("BF16", ["F16", "BF16", "Q8_0"])[0]).toBe("BF16");
    expect(rankQuants("F32", ["F16", "Q8_0"])).toEqual(["F16", "Q8_0"]);
  });
});

describe("selectFiles", () => {
  test("exact quant, and the default Q4_K_M falling back with a reason", async () => {
    const files = await listing("lmx-test/tiny-quants-GGUF");
    expect(detectFormat(files)).toBe("gguf");
    const q8 = selectFiles("lmx-test/tiny-quants-GGUF", files, { quant: "q8_0" });
    expect(q8.files.map((f) => f.path)).toEqual(["tiny-Q8_0.gguf"]);
    expect(q8).toMatchObject({ format: "gguf", quant: "Q8_0", fallback: false, mmproj: null });
    expect(q8.availableQuants).toEqual(["F16", "Q4_K_S", "Q5_K_M", "Q8_0"]);

    const dflt = selectFiles("lmx-test/tiny-quants-GGUF", files);
    expect(dflt).toMatchObject({ quant: "Q4_K_S", requestedQuant: "Q4_K_M", fallback: true, reason: "Q4_K_M not in repo, using Q4_K_S" });
    expect(dflt.files.map((f) => f.path)).toEqual(["tiny-Q4_K_S.gguf"]);
    expect(dflt.totalBytes).toBe(hub.hashes("lmx-test/tiny-quants-GGUF", "tiny-Q4_K_S.gguf").size);

    expect(selectFiles("lmx-test/tiny-quants-GGUF", files, { quant: "Q6_K" }).reason).toBe("Q6_K not in repo, using Q8_0");
    expect(selectFiles("lmx-test/tiny-quants-GGUF", files, { quant: "IQ2_XS" }).quant).toBe("Q4_K_S");
  });

  test("mmproj files are left out unless asked for", async () => {
    const files = await listing("lmx-test/tiny-quants-GGUF");
    expect(selectFiles("lmx-test/tiny-quants-GGUF", files, { quant: "F16" }).files.map((f) => f.path)).toEqual(["tiny-F16.gguf"]);
    const vision = selectFiles("lmx-test/tiny-quants-GGUF", files, { quant: "F16", includeMmproj: true });
    expect(vision.files.map((f) => f.path)).toEqual(["tiny-F16.gguf", "mmproj-tiny-F16.gguf"]);
    expect(vision.mmproj?.path).toBe("mmproj-tiny-F16.gguf");
  });

  test("a named file, and a clear error listing what exists when it is not there", async () => {
    const files = await listing("lmx-test/tiny-quants-GGUF");
    expect(selectFiles("lmx-test/tiny-quants-GGUF", files, { file: "tiny-F16.gguf" }).files.map((f) => f.path)).toEqual(["tiny-F16.gguf"]);
    const err = thrown(() => selectFiles("lmx-test/tiny-quants-GGUF", files, { file: "missing.gguf" }));
    expect(err).toBeInstanceOf(NoMatchingFileError);
    expect(err.message).toBe("lmx-test/tiny-quants-GGUF has no file missing.gguf; its GGUF files are: tiny-F16.gguf, tiny-Q4_K_S.gguf, tiny-Q5_K_M.gguf, tiny-Q8_0.gguf");
  });

  test("split GGUFs are selected whole, in shard order", async () => {
    const files = await listing("lmx-test/tiny-split-GGUF");
    const q8 = selectFiles("lmx-test/tiny-split-GGUF", files, { quant: "Q8_0" });
    expect(q8.files.map((f) => f.path)).toEqual([1, 2, 3].map((i) => `tiny-split-Q8_0-0000${i}-of-00003.gguf`));
    expect(q8.totalBytes).toBe(STORIES_SIZE);
    // Naming any one shard selects all of them.
    expect(selectFiles("lmx-test/tiny-split-GGUF", files, { file: "tiny-split-Q8_0-00002-of-00003.gguf" }).files.length).toBe(3);
    // Q4_K_M is absent: the same-width Q4_0 wins over the wider Q8_0.
    expect(selectFiles("lmx-test/tiny-split-GGUF", files).files.map((f) => f.path)).toEqual(["tiny-split-Q4_0.gguf"]);
    const missing = files.filter((f) => !f.path.includes("00002-of"));
    const err = thrown(() => selectFiles("lmx-test/tiny-split-GGUF", missing, { quant: "Q8_0" }));
    expect(err).toBeInstanceOf(NoMatchingFileError);
    expect(err.message).toContain("split into 3 shards but the repo has 2");
  });

  test("a repo whose only GGUF has no quant tag", async () => {
    const sel = selectFiles("ggml-org/tiny-llamas", await listing("ggml-org/tiny-llamas"));
    expect(sel.files.map((f) => f.path)).toEqual(["stories260K.gguf"]);
    expect(sel.quant).toBeNull();
    expect(sel.reason).toContain("only GGUF");
    const several = [{ path: "a.gguf", size: 1 }, { path: "b.gguf", size: 1 }];
    expect(thrown(() => selectFiles("o/r", several)).message).toContain("name one as o/r:FILE.gguf");
  });

  test("an MLX repo is pulled as a whole snapshot, minus git files and images", async () => {
    const files = await listing("mlx-community/tiny-mlx-4bit");
    expect(detectFormat(files)).toBe("mlx");
    const sel = selectFiles("mlx-community/tiny-mlx-4bit", files);
    expect(sel.format).toBe("mlx");
    expect(sel.files.map((f) => f.path)).toEqual(["README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    expect(sel.totalBytes).toBe(sel.files.reduce((n, f) => n + f.size, 0));
    expect(thrown(() => selectFiles("mlx-community/tiny-mlx-4bit", files, { quant: "Q4_K_M" }))).toBeInstanceOf(NoMatchingFileError);
  });

  test("nothing usable: the error lists the repo's files", () => {
    const err = thrown(() => selectFiles("o/r", [{ path: "README.md", size: 10 }, { path: "pytorch_model.bin", size: 100 }]));
    expect(err).toBeInstanceOf(NoMatchingFileError);
    expect(err.message).toBe("o/r has no GGUF files and is not an MLX model (config.json + *.safetensors); files: README.md, pytorch_model.bin");
  });
});

describe("searchModels", () => {
  test("returns GGUF and MLX repos with files, sizes, quants and memory fit", async () => {
    const memory = 2_000_000;
    const results = await searchModels({ query: "tiny", hubUrl: hub.url, memoryBytes: memory });
    expect(results.map((r) => [r.repo, r.format])).toEqual([
      ["ggml-org/tiny-llamas", "gguf"],
      ["mlx-community/tiny-mlx-4bit", "mlx"],
      ["lmx-test/tiny-quants-GGUF", "gguf"],
      ["lmx-test/tiny-split-GGUF", "gguf"],
    ]);
    const [llamas, mlx, quants, split] = results;

    expect(llamas?.files).toEqual([{ path: "stories260K.gguf", size: STORIES_SIZE, quant: null, mmproj: false, fits: STORIES_SIZE * MEMORY_OVERHEAD_FACTOR <= memory }]);
    expect(llamas?.fits).toBe(true);
    expect(llamas?.defaultSelection).toMatchObject({ files: ["stories260K.gguf"], bytes: STORIES_SIZE });

    expect(quants?.quants).toEqual(["F16", "Q4_K_S", "Q5_K_M", "Q8_0"]);
    const fit = Object.fromEntries(quants?.files.map((f) => [f.path, f.fits]) ?? []);
    expect(fit).toEqual({ "mmproj-tiny-F16.gguf": null, "tiny-F16.gguf": false, "tiny-Q4_K_S.gguf": true, "tiny-Q5_K_M.gguf": true, "tiny-Q8_0.gguf": false });
    expect(quants?.defaultSelection).toMatchObject({ quant: "Q4_K_S", reason: "Q4_K_M not in repo, using Q4_K_S" });
    expect(quants?.files.find((f) => f.path === "mmproj-tiny-F16.gguf")?.mmproj).toBe(true);

    // A split model fits or not as a whole: its shards are judged by their sum.
    const shard = split?.files.find((f) => f.path.includes("00001-of"));
    expect(shard?.fits).toBe(STORIES_SIZE * MEMORY_OVERHEAD_FACTOR <= memory);
    expect((await searchModels({ query: "tiny-split", hubUrl: hub.url, memoryBytes: 800_000 }))[0]?.files.find((f) => f.path.includes("00001-of"))?.fits).toBe(false);

    expect(mlx?.files.map((f) => f.path)).toContain("model.safetensors");
    expect(mlx?.files.map((f) => f.path)).not.toContain("figure.png");
    expect(mlx?.fits).toBe(true);
    expect(mlx?.quants).toEqual([]);
  });

  test("format filter, limit, gated flag, private repos hidden without a token", async () => {
    expect((await searchModels({ query: "tiny", hubUrl: hub.url, format: "mlx" })).map((r) => r.repo)).toEqual(["mlx-community/tiny-mlx-4bit"]);
    expect((await searchModels({ query: "tiny", hubUrl: hub.url, limit: 2 })).length).toBe(2);
    const llama = await searchModels({ query: "llama", hubUrl: hub.url });
    expect(llama.map((r) => [r.repo, r.gated])).toEqual([["ggml-org/tiny-llamas", false], ["lmx-test/gated-llama", true]]);
    const withToken = await searchModels({ query: "private", hubUrl: hub.url, token: hub.token });
    expect(withToken.map((r) => r.repo)).toEqual(["lmx-test/private-llama"]);
    expect(await searchModels({ query: "nothing-like-this", hubUrl: hub.url })).toEqual([]);
  });
});
