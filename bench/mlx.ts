// LMX's MLX engine against mlx-lm itself on one MLX model: `mlx_lm.server` over HTTP, driven by
// the same client code and figure definitions as the GGUF bench (src/throughput), in ABBA order;
// `mlx_lm.generate`'s own printed generation speed is recorded beside it (its clock runs inside
// the library, so it is the ceiling with no HTTP at all, not a like-for-like row).
//
//   bun bench/mlx.ts [--model DIR] [--python PATH] [--quick]
//
// Defaults: the test fixture model and the test runtime (see test/helpers/mlx.ts). Run by
// bench/run.ts with --mlx as well.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { configureLog } from "../src/log.ts";
import type { FigureId } from "../src/throughput/figures.ts";
import * as probe from "../src/throughput/probes.ts";
import { median, spread } from "../src/throughput/stats.ts";
import { MLX_FIXTURE_DIR } from "../test/fixtures/mlx-model.ts";
import { mlxTestEnv } from "../test/helpers/mlx.ts";
import { startTestServer } from "../test/helpers/server.ts";
import { meanCached, MLX_GOALS, medianRow, pairedRow, renderTable, type Row } from "./report.ts";
import { REPO_ROOT } from "./llama-build.ts";
import { freePort } from "./servers.ts";

export interface MlxResult {
  model: { id: string; shape: string; size_bytes: number };
  rows: Row[];
  /** mlx_lm.generate's own "Generation: N tokens, X tokens-per-sec", median of the runs. */
  mlx_lm_generate_decode_tps: number;
  /** Mean prompt tokens a request of the TTFT row took from the server's cache. */
  cached_prompt_tokens: { lmx: number; ref: number };
  versions: { mlx?: string; mlx_lm?: string };
}

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

/** Installed version of a package in the runtime's venv, from its dist-info folder. */
export function pythonPackageVersion(python: string, pkg: string): string | undefined {
  const res = Bun.spawnSync([python, "-c", `import importlib.metadata as m; print(m.version("${pkg}"))`], { stdout: "pipe", stderr: "ignore" });
  return res.exitCode === 0 ? res.stdout.toString().trim() : undefined;
}

function folderSize(dir: string): number {
  let total = 0;
  for (const f of new Bun.Glob("*").scanSync({ cwd: dir, onlyFiles: true })) total += Bun.file(join(dir, f)).size;
  return total;
}

function mlxLmGenerate(python: string, model: string, tokens: number, runs: number): number {
  const decode: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const p = Bun.spawnSync([python, "-m", "mlx_lm", "generate", "--model", model, "--prompt", probe.prompt(5000 + i, 32), "--max-tokens", String(tokens), "--temp", "0"],
      { stdout: "pipe", stderr: "pipe" });
    const gen = /Generation: (\d+) tokens, ([\d.]+) tokens-per-sec/.exec(p.stdout.toString());
    if (!gen) throw new Error(`mlx_lm.generate printed no timings:\n${p.stdout.toString().slice(-1000)}\n${p.stderr.toString().slice(-2000)}`);
    if (i > 0) decode.push(Number(gen[2])); // the first run warms the page cache and bytecode
  }
  return median(decode);
}

export async function benchMlx(opts: { model: string; python: string; quick: boolean }): Promise<MlxResult> {
  const reps = opts.quick ? 3 : 6;
  const tokens = opts.quick ? 64 : 128;
  const ttftReps = opts.quick ? 10 : 30;
  log(`mlx: mlx_lm.generate (${reps}× ${tokens} tokens)`);
  const generateTps = mlxLmGenerate(opts.python, opts.model, tokens, reps);

  const port = await freePort();
  const mlxServer = Bun.spawn([opts.python, "-m", "mlx_lm", "server", "--model", opts.model, "--host", "127.0.0.1", "--port", String(port)], { stdout: "ignore", stderr: "ignore" });
  await using lmx = await startTestServer(["--python", opts.python, "--parallel", "4", "--threads", "0"]);
  try {
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 600; i++) {
      if (mlxServer.exitCode !== null) throw new Error(`mlx_lm.server exited with ${mlxServer.exitCode}`);
      if (await fetch(`${url}/health`).then((r) => r.ok, () => false)) break;
      await Bun.sleep(100);
    }
    const imported = (await (await lmx.request("/admin/v1/import", { method: "POST", json: { paths: [opts.model] } })).json()) as { imported: { id: string }[]; skipped: { reason: string }[] };
    const id = imported.imported[0]?.id ?? imported.skipped[0]?.reason.replace(/^already registered as /, "");
    if (!id) throw new Error("could not register the MLX model with LMX");
    const eps = { lmx: probe.httpEndpoint("lmx", lmx.url, id), ref: probe.httpEndpoint("mlx_lm.server", url, opts.model) };
    for (const ep of [eps.lmx, eps.ref]) await probe.completion(ep, probe.prompt(1, 16), 8);
    const words = await probe.wordsForTokens(eps.ref, 32);

    const paired = async <T>(n: number, fn: (ep: probe.Endpoint, rep: number) => Promise<T>) => {
      const out = { lmx: [] as T[], ref: [] as T[] };
      for (let rep = 0; rep < n; rep++) {
        for (const k of (rep % 2 === 0 ? ["lmx", "ref"] : ["ref", "lmx"]) as ("lmx" | "ref")[]) out[k].push(await fn(eps[k], rep));
      }
      return out;
    };
    log(`mlx: decode (${reps}× ${tokens} tokens), TTFT (${ttftReps}×), 1 and 4 streams, LMX against mlx_lm.server`);
    const dec = await paired(reps, (ep, rep) => probe.decode(ep, 2000 + rep, words, tokens));
    const tt = await paired(ttftReps, (ep, rep) => probe.ttft(ep, 3000 + rep, words));
    const rows: Row[] = [
      pairedRow("decode", dec.lmx.map((d) => d.tokensPerSecond), dec.ref.map((d) => d.tokensPerSecond)),
      medianRow("ttft_p50", spread(tt.lmx.map((t) => t.ms)), spread(tt.ref.map((t) => t.ms))),
    ];
    for (const n of [1, 4]) {
      const c = await paired(Math.max(2, Math.round(reps / 2)), (ep, rep) => probe.concurrent(ep, 4000 + rep * 10 + n, n, words, tokens / 2));
      rows.push(pairedRow(`aggregate${n}` as FigureId, c.lmx.map((x) => x.aggregateTokensPerSecond), c.ref.map((x) => x.aggregateTokensPerSecond)));
    }
    return {
      model: { id, shape: mlxShape(opts.model), size_bytes: folderSize(opts.model) },
      rows,
      mlx_lm_generate_decode_tps: generateTps,
      cached_prompt_tokens: { lmx: meanCached(tt.lmx), ref: meanCached(tt.ref) },
      versions: { mlx: pythonPackageVersion(opts.python, "mlx"), mlx_lm: pythonPackageVersion(opts.python, "mlx-lm") },
    };
  } finally {
    mlxServer.kill();
    await mlxServer.exited;
  }
}

function mlxShape(dir: string): string {
  const file = join(dir, "config.json");
  if (!existsSync(file)) return "MLX model";
  const c = JSON.parse(readFileSync(file, "utf8")) as { model_type?: string; num_hidden_layers?: number; hidden_size?: number };
  return `${c.model_type ?? "?"}, ${c.num_hidden_layers ?? "?"} layers, ${c.hidden_size ?? "?"} embd (MLX)`;
}

/**
 * The test runtime and fixture model when none is given. An installed runtime is used as it is:
 * mlxTestEnv() also opens the runtime's database, which a newer checkout sharing .cache may have
 * migrated past this one's schema.
 */
export async function defaultMlxEnv(): Promise<{ model: string; python: string }> {
  const envs = join(REPO_ROOT, ".cache", "mlx-runtime", "runtimes", "mlx", "envs");
  const python = existsSync(envs)
    ? readdirSync(envs).sort().reverse().map((e) => join(envs, e, "venv", "bin", "python")).find((p) => existsSync(p))
    : undefined;
  if (python !== undefined && existsSync(join(MLX_FIXTURE_DIR, "config.json"))) return { model: MLX_FIXTURE_DIR, python };
  const env = await mlxTestEnv();
  return { model: env.model, python: env.python };
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Bun.argv.slice(2), options: { model: { type: "string" }, python: { type: "string" }, quick: { type: "boolean", default: false } }, strict: true });
  configureLog({ level: "warn" });
  const env = values.model && values.python ? { model: values.model, python: values.python } : await defaultMlxEnv();
  const res = await benchMlx({ ...env, quick: values.quick });
  console.log(renderTable(`${res.model.id} (${res.model.shape}) in ${dirname(env.model)}; mlx_lm.generate decode ${res.mlx_lm_generate_decode_tps.toFixed(1)} tok/s`, "mlx_lm.server", res.rows, MLX_GOALS));
}
