// LMX against llama.cpp's own llama-server built on the very libraries LMX runs (llama-build.ts),
// side by side in one run: same GGUF, threads and context; the same client code drives both over
// HTTP; every measurement alternates between the two (ABBA). Prints one table per model with the
// ratios and issue 18's goals next to them, and appends one JSON line per run to
// bench/results/history.jsonl. The figures are defined once, in src/throughput/figures.ts.
//
//   bun run bench -- [--quick] [--models qwen2-0.5b-q8,stories260K] [--threads N] [--parallel N]
//                    [--ctx N] [--reps N] [--lmx-bin dist/lmx] [--lmx-home DIR] [--mlx [--mlx-model DIR --mlx-python PATH]]
//                    [--history FILE | --no-history]

import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { resolve } from "node:path";
import { configureLog } from "../src/log.ts";
import { round } from "../src/throughput/stats.ts";
import { cpuInfo } from "../src/util/cpu.ts";
import { VERSION } from "../src/version.ts";
import { benchGguf, type GgufOptions } from "./gguf.ts";
import { nodeLlamaCppSystemInfo } from "./kernels.ts";
import { ensureReferenceServer, REPO_ROOT } from "./llama-build.ts";
import { benchMlx, defaultMlxEnv } from "./mlx.ts";
import { type BenchModel, storiesModel, synthQwen05Model } from "./models.ts";
import { appendHistory, GGUF_GOALS, type HistoryRecord, MLX_GOALS, modelRecord, renderTable } from "./report.ts";

interface Options extends GgufOptions {
  models: string[];
  history?: string;
  mlx: boolean;
  mlxModel?: string;
  mlxPython?: string;
}

const USAGE = "usage: bun run bench -- [--quick] [--models qwen2-0.5b-q8,stories260K|FILE.gguf] [--threads N] [--parallel N] [--ctx N] [--reps N] " +
  "[--lmx-bin dist/lmx|path/to/main.ts] [--lmx-home DIR] [--mlx [--mlx-model DIR --mlx-python PATH]] [--history FILE | --no-history]";

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, models: ["qwen2-0.5b-q8", "stories260K"], threads: cpuInfo().defaultThreads, parallel: 8, ctx: 4096,
    lmxArgv: [process.execPath, "src/cli/main.ts"], history: resolve(REPO_ROOT, "bench/results/history.jsonl"), mlx: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const int = () => {
      const n = Number(val());
      if (!Number.isInteger(n) || n < 1) throw new Error(`${a} needs a positive integer`);
      return n;
    };
    if (a === "--quick") o.quick = true;
    else if (a === "--models") o.models = val().split(",").filter(Boolean);
    else if (a === "--threads") o.threads = int();
    else if (a === "--parallel") o.parallel = int();
    else if (a === "--ctx") o.ctx = int();
    else if (a === "--reps") o.reps = int();
    else if (a === "--history") o.history = resolve(process.cwd(), val());
    else if (a === "--no-history") o.history = undefined;
    else if (a === "--mlx") o.mlx = true;
    else if (a === "--mlx-model") o.mlxModel = resolve(process.cwd(), val());
    else if (a === "--mlx-python") o.mlxPython = resolve(process.cwd(), val());
    else if (a === "--lmx-bin") {
      // A compiled lmx, or an lmx entry point (.ts) run with this Bun.
      const bin = resolve(process.cwd(), val());
      o.lmxArgv = bin.endsWith(".ts") ? [process.execPath, bin] : [bin];
    } else if (a === "--lmx-home") {
      // An LMX home whose selected engine LMX should run (e.g. one built by `lmx engine build`).
      const home = resolve(process.cwd(), val());
      if (!existsSync(home)) throw new Error(`--lmx-home: ${home} does not exist`);
      o.lmxHome = home;
    } else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${a}\n${USAGE}`);
  }
  return o;
}

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

function cpuFlags(): string[] {
  try {
    const all = new Set((/^flags\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "").split(/\s+/));
    return ["avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"].filter((f) => all.has(f));
  } catch {
    return [];
  }
}

function git(args: string[]): string {
  return Bun.spawnSync(["git", ...args], { cwd: REPO_ROOT, stdout: "pipe", stderr: "ignore" }).stdout.toString().trim();
}

function resolveModels(ids: string[]): BenchModel[] {
  return ids.map((id) => {
    if (id === "stories260K") return storiesModel();
    if (id === "qwen2-0.5b-q8") return synthQwen05Model(log);
    if (existsSync(id)) return { id: id.replace(/^.*\//, "").replace(/\.gguf$/, ""), path: resolve(id), shape: "user model" };
    throw new Error(`unknown model '${id}' (qwen2-0.5b-q8, stories260K or a .gguf path)`);
  });
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  configureLog({ level: "warn" });
  const startedAt = new Date();
  // The tree as it is when the measurement starts (editing during a long run must not change it).
  const gitState = { commit: git(["rev-parse", "HEAD"]), dirty: git(["status", "--porcelain", "--untracked-files=no"]) !== "" };
  const started = performance.now();
  const loadBefore = loadavg().map((x) => round(x));
  if (loadBefore[0]! > cpuInfo().availableCores * 0.5) log(`note: load average ${loadBefore.join(", ")} on ${cpuInfo().availableCores} cores: absolute figures will be noisy, ratios less so`);
  const ref = await ensureReferenceServer(log);
  const models = resolveModels(o.models);
  const nlcInfo = nodeLlamaCppSystemInfo();
  const settings = `${o.threads} threads, ${o.parallel} parallel, ctx ${o.ctx}/sequence`;

  const records = [];
  const kernels = [];
  for (const m of models) {
    const res = await benchGguf(m, o, ref, nlcInfo.systemInfo);
    kernels.push({ model: m.id, ...res.kernels });
    const k = res.kernels;
    console.log(`\n${renderTable(
      `${m.id} (${m.shape}); ${settings}, flash attention ${res.flash_attention} (LMX's auto choice, given to both); prefill rows at ${res.prefill_tokens.p256} and ${res.prefill_tokens.p2048} tokens\n` +
      `kernels: LMX libggml-cpu-${k.cpu_variant.lmx ?? "?"}, llama-server libggml-cpu-${k.cpu_variant.llama_server ?? "?"}; ` +
      `${k.identical ? "same library files (by content) and system_info in both" : `NOT identical: ${[...k.differing_files, k.system_info.equal ? "" : "system_info differs"].filter(Boolean).join("; ")}`}`,
      "llama-server", res.rows, GGUF_GOALS)}`);
    console.log(`prompt tokens taken from a cache, mean per request of the prefill and TTFT rows: LMX ${res.cached_prompt_tokens.lmx}, llama-server ${res.cached_prompt_tokens.llama}`);
    records.push({ ...modelRecord(res.model, "llama-server (same kernels)", res.rows, GGUF_GOALS), flash_attention: res.flash_attention, cached_prompt_tokens: res.cached_prompt_tokens });
  }

  let mlxVersions: { mlx?: string; mlx_lm?: string } = {};
  const notes = ["2 cores shared with other work unless the machine says otherwise: absolute figures are noisy, ratios (ABBA, back to back) less so"];
  if (o.mlx) {
    const env = o.mlxModel && o.mlxPython ? { model: o.mlxModel, python: o.mlxPython } : await defaultMlxEnv();
    const res = await benchMlx({ ...env, quick: o.quick });
    mlxVersions = res.versions;
    console.log(`\n${renderTable(`${res.model.id} (${res.model.shape}); mlx ${res.versions.mlx ?? "?"}, mlx-lm ${res.versions.mlx_lm ?? "?"}; ` +
      `mlx_lm.generate's own decode figure: ${res.mlx_lm_generate_decode_tps.toFixed(1)} tok/s`, "mlx_lm.server", res.rows, MLX_GOALS)}`);
    console.log(`prompt tokens taken from a cache, mean per request of the TTFT row: LMX ${res.cached_prompt_tokens.lmx}, mlx_lm.server ${res.cached_prompt_tokens.ref}`);
    records.push({ ...modelRecord(res.model, "mlx_lm.server", res.rows, MLX_GOALS), mlx_lm_generate_decode_tps: round(res.mlx_lm_generate_decode_tps), cached_prompt_tokens: res.cached_prompt_tokens });
  }

  const info = cpuInfo();
  const pkg = JSON.parse(readFileSync(resolve(REPO_ROOT, "package.json"), "utf8")) as { version: string };
  const rec: HistoryRecord = {
    schema: 2,
    at: startedAt.toISOString(),
    command: `bun run bench -- ${process.argv.slice(2).join(" ")}`.trim(),
    mode: o.quick ? "quick" : "full",
    duration_s: round((performance.now() - started) / 1000, 1),
    git: gitState,
    machine: { cpu: cpus()[0]?.model ?? "unknown", logical_cores: info.logicalCores, physical_cores: info.physicalCores, ram_gb: round(totalmem() / 2 ** 30, 1),
      os: `${process.platform} ${release()}`, arch: process.arch, cpu_flags: cpuFlags(), load_average: { before: loadBefore, after: loadavg().map((x) => round(x)) } },
    versions: { lmx: VERSION === "dev" ? `${pkg.version}-dev` : VERSION, bun: Bun.version, node_llama_cpp: ref.engine.nodeLlamaCppVersion,
      llama_cpp: { release: ref.release, commit: ref.commit }, ...mlxVersions },
    settings: { threads: o.threads, parallel: o.parallel, ctx_per_sequence: o.ctx },
    reference: { build: ref.build, kernels },
    models: records,
    notes,
  };
  if (o.history) {
    appendHistory(o.history, rec);
    log(`appended this run to ${o.history}`);
  }
}

await main();
