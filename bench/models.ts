// The benchmark's models: the tiny stories260K from ../shared/models, and a synthetic model of
// Qwen2-0.5B's shape (random weights, real tokenizer, q8_0) made once with ../shared/tools/synth_gguf.py
// in a venv under .cache/bench (numpy and gguf from PyPI). Speed does not depend on what weights learned.

import { cpSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CACHE_DIR, REPO_ROOT } from "./llama-build.ts";

export interface BenchModel {
  id: string;
  path: string;
  /** Short description for the report. */
  shape: string;
}

const SHARED = resolve(REPO_ROOT, "..", "shared");

function sh(cmd: string[], what: string): void {
  const res = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (res.exitCode !== 0) throw new Error(`${what} failed (${cmd.join(" ")}):\n${(res.stdout.toString() + res.stderr.toString()).slice(-3000)}`);
}

export function storiesModel(): BenchModel {
  const path = join(SHARED, "models", "stories260K.gguf");
  if (!existsSync(path)) throw new Error(`${path} is missing (see README.md for where stories260K.gguf comes from)`);
  return { id: "stories260K", path, shape: "llama, 260K params, f32" };
}

/** Creates (once) and returns the synthetic Qwen2-0.5B-shape q8_0 model. */
export function synthQwen05Model(log: (msg: string) => void = (m) => process.stderr.write(m + "\n")): BenchModel {
  const model = { id: "qwen2-0.5b-q8", path: join(CACHE_DIR, "qwen2-0.5b-q8.gguf"), shape: "qwen2, 24 layers, 896 embd, 4864 ff, 14/2 heads, q8_0, random weights" };
  return synthesize(model, 100_000_000, ["--layers", "24", "--embd", "896", "--ff", "4864", "--heads", "14", "--kv-heads", "2"], log);
}

/**
 * Creates (once) and returns a tiny qwen2 (the test fixture's shape) that declares 32768 tokens of
 * context: long prompts in seconds, so what it measures is LMX's own cost per request.
 */
export function synthQwenTinyLongModel(log: (msg: string) => void = (m) => process.stderr.write(m + "\n")): BenchModel {
  const model = { id: "qwen2-tiny-32k", path: join(CACHE_DIR, "qwen2-tiny-32k.gguf"), shape: "qwen2, 2 layers, 64 embd, 128 ff, 4/2 heads, q8_0, random weights, 32768 context" };
  return synthesize(model, 1_000_000, ["--layers", "2", "--embd", "64", "--ff", "128", "--heads", "4", "--kv-heads", "2"], log);
}

function synthesize(model: BenchModel, minBytes: number, shape: string[], log: (msg: string) => void): BenchModel {
  const out = model.path;
  if (existsSync(out) && statSync(out).size > minBytes) return model;
  const venv = join(CACHE_DIR, "venv");
  const python = join(venv, "bin", "python");
  if (!existsSync(python)) {
    log(`creating a Python venv in ${venv} for numpy and gguf`);
    sh(["python3", "-m", "venv", venv], "python3 -m venv");
  }
  if (Bun.spawnSync([python, "-c", "import numpy, gguf"], { stdout: "ignore", stderr: "ignore" }).exitCode !== 0) {
    log("installing numpy and gguf into the venv (PyPI)");
    sh([python, "-m", "pip", "install", "--quiet", "numpy", "gguf"], "pip install numpy gguf");
  }
  log(`writing the synthetic model ${model.id} to ${out} (once)`);
  const tmp = out + ".tmp";
  sh([python, join(SHARED, "tools", "synth_gguf.py"), join(SHARED, "models", "ggml-vocab-qwen2.gguf"), tmp,
    "--arch", "qwen2", ...shape, "--ctx", "32768", "--type", "q8_0"], "synth_gguf.py");
  renameSync(tmp, out);
  return model;
}

/**
 * The MLX test fixture (`test/fixtures/mlx-model.ts`) copied once into .cache/bench with its config
 * and tokenizer declaring 32768 tokens instead of 4096, so a 16k-token prefix fits, as in
 * qwen2-tiny-32k. Its weights are the fixture's; RoPE has no trained length to exceed.
 */
export function mlxTinyLongModel(fixtureDir: string): string {
  const out = join(CACHE_DIR, "mlx-qwen2-tiny-32k");
  const source = readFileSync(join(fixtureDir, ".stamp"), "utf8");
  if (existsSync(join(out, ".stamp")) && readFileSync(join(out, ".stamp"), "utf8") === source) return out;
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  cpSync(fixtureDir, tmp, { recursive: true });
  for (const [file, key] of [["config.json", "max_position_embeddings"], ["tokenizer_config.json", "model_max_length"]] as const) {
    const json = JSON.parse(readFileSync(join(tmp, file), "utf8")) as Record<string, unknown>;
    json[key] = 32768;
    writeFileSync(join(tmp, file), JSON.stringify(json, null, 2));
  }
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
  return out;
}

if (import.meta.main) {
  console.log(JSON.stringify([storiesModel(), synthQwen05Model()], null, 2));
}
