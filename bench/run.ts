// LMX against llama.cpp's own llama-server, side by side in one run: same GGUF, threads and
// context; the same client code drives both over HTTP; every measurement alternates between the
// two servers (ABBA order) so machine noise hits both. Reports LMX / llama-server ratios with their
// spread over repetitions, as a table and as JSON.
//
//   bun run bench -- [--quick] [--json FILE] [--models qwen2-0.5b-q8,stories260K] [--threads N]
//                    [--parallel N] [--ctx N] [--lmx-bin dist/lmx] [--reps N]

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, freemem, loadavg, release, totalmem } from "node:os";
import { resolve } from "node:path";
import * as probe from "../src/throughput/probes.ts";
import { fmtSpread, median, percentile, round, spread, type Spread } from "../src/throughput/stats.ts";
import { cpuInfo } from "../src/util/cpu.ts";
import { VERSION } from "../src/version.ts";
import { ensureLlamaCppTools, REPO_ROOT } from "./llama-build.ts";
import { type BenchModel, storiesModel, synthQwen05Model } from "./models.ts";
import { cpuVariant, type RunningServer, rssMb, type ServerConfig, startLlamaServer, startLmx, withPeakRss } from "./servers.ts";

interface Options {
  quick: boolean;
  json?: string;
  models: string[];
  threads: number;
  parallel: number;
  ctx: number;
  lmxArgv: string[];
  reps?: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, models: ["qwen2-0.5b-q8", "stories260K"], threads: cpuInfo().defaultThreads, parallel: 8, ctx: 4096, lmxArgv: [process.execPath, "src/cli/main.ts"] };
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
    else if (a === "--json") o.json = resolve(process.cwd(), val());
    else if (a === "--models") o.models = val().split(",").filter(Boolean);
    else if (a === "--threads") o.threads = int();
    else if (a === "--parallel") o.parallel = int();
    else if (a === "--ctx") o.ctx = int();
    else if (a === "--reps") o.reps = int();
    else if (a === "--lmx-bin") {
      // A compiled lmx, or an lmx entry point (.ts) run with this Bun.
      const bin = resolve(process.cwd(), val());
      o.lmxArgv = bin.endsWith(".ts") ? [process.execPath, bin] : [bin];
    }
    else if (a === "--help" || a === "-h") {
      console.log("usage: bun run bench -- [--quick] [--json FILE] [--models qwen2-0.5b-q8,stories260K] [--threads N] [--parallel N] [--ctx N] [--reps N] [--lmx-bin dist/lmx|path/to/main.ts]");
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/** How much each measurement is repeated; `scale` multiplies generated tokens for fast models. */
function plan(o: Options, scale: number) {
  const reps = o.reps ?? (o.quick ? 3 : 6);
  return {
    lifeReps: o.quick ? 2 : 3,
    reps,
    prefillLongReps: Math.max(2, Math.round(reps * (o.quick ? 0.67 : 0.67))),
    decodeTokens: (o.quick ? 64 : 128) * scale,
    ttftReps: o.quick ? 10 : 30,
    latencyReps: o.quick ? 10 : 30,
    latencyTokens: 16,
    concurrentTokens: (o.quick ? 32 : 64) * scale,
    concurrentReps: o.quick ? 2 : 4,
  };
}

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

type Pair = { lmx: RunningServer; llama: RunningServer };

/** Runs `fn` on both servers `reps` times, alternating which goes first (ABBA). */
async function paired<T>(servers: Pair, reps: number, fn: (s: RunningServer, rep: number) => Promise<T>): Promise<{ lmx: T[]; llama: T[] }> {
  const out = { lmx: [] as T[], llama: [] as T[] };
  for (let rep = 0; rep < reps; rep++) {
    const order: ("lmx" | "llama")[] = rep % 2 === 0 ? ["lmx", "llama"] : ["llama", "lmx"];
    for (const k of order) out[k].push(await fn(servers[k], rep));
  }
  return out;
}

/** Per-repetition LMX/llama-server ratios (adjacent in time, so they share the machine's state). */
function ratios(lmx: number[], llama: number[]): Spread {
  return spread(lmx.map((v, i) => v / llama[i]!));
}

interface Side {
  decode_tps: Spread;
  prefill256_tps: Spread;
  prefill2048_tps: Spread;
  prefill_tokens: { p256: number; p2048: number };
  ttft_ms: Spread;
  ttft_p95_ms: number;
  latency_p50_ms: number;
  latency_p95_ms: number;
  concurrent_tps: Record<string, Spread>;
  concurrent_ttft_ms: Record<string, Spread>;
  startup_ms: Spread;
  load_ms: Spread;
  rss_idle_mb: Spread;
  rss_loaded_mb: number;
  cpu_variant?: string;
  command: string[];
  raw: Record<string, number[]>;
}

async function lifecycle(cfg: ServerConfig, o: Options, llamaServer: string, reps: number) {
  const res = { lmx: { startup: [] as number[], load: [] as number[], rss: [] as number[], variant: undefined as string | undefined },
    llama: { startup: [] as number[], load: [] as number[], rss: [] as number[], variant: undefined as string | undefined } };
  for (let rep = 0; rep < reps; rep++) {
    const order: ("lmx" | "llama")[] = rep % 2 === 0 ? ["lmx", "llama"] : ["llama", "lmx"];
    for (const k of order) {
      const s = k === "lmx" ? await startLmx(cfg, { argv: o.lmxArgv }) : await startLlamaServer(cfg, llamaServer);
      try {
        await probe.completion(s.endpoint, probe.prompt(7, 16), 8);
        await Bun.sleep(300);
        res[k].startup.push(s.startupMs);
        res[k].load.push(s.loadMs);
        res[k].rss.push(rssMb(s.pid));
        res[k].variant ??= cpuVariant(s.pid);
      } finally {
        await s.stop();
      }
    }
  }
  return res;
}

async function benchModel(model: BenchModel, o: Options, llamaServer: string) {
  const fast = model.id === "stories260K";
  const p = plan(o, fast ? 4 : 1);
  const cfg: ServerConfig = { modelId: model.id, modelPath: model.path, threads: o.threads, parallel: o.parallel, ctx: o.ctx };
  log(`${model.id}: start-up, load and idle memory (${p.lifeReps}× each server)`);
  const life = await lifecycle(cfg, o, llamaServer, p.lifeReps);

  log(`${model.id}: starting both servers`);
  const lmx = await startLmx(cfg, { argv: o.lmxArgv });
  let llama: RunningServer;
  try {
    llama = await startLlamaServer(cfg, llamaServer);
  } catch (err) {
    await lmx.stop();
    throw err;
  }
  const servers: Pair = { lmx, llama };
  try {
    // Warm-up: first requests allocate buffers and fault in the weights.
    for (const s of [lmx, llama]) {
      await probe.completion(s.endpoint, probe.prompt(1, 32), 16);
      await probe.concurrent(s.endpoint, 2, Math.min(4, o.parallel), 16, 8);
    }
    const shortWords = await probe.wordsForTokens(llama.endpoint, 32);
    const words256 = await probe.wordsForTokens(llama.endpoint, 256);
    // llama-server caps each slot at the model's training context; the long prompt must fit it.
    const props = (await (await fetch(`${llama.endpoint.baseUrl}/props`)).json()) as { default_generation_settings?: { n_ctx?: number } };
    const slotCtx = props.default_generation_settings?.n_ctx ?? o.ctx;
    const longTokens = Math.min(2048, slotCtx - 64, o.ctx - 64);
    const words2048 = await probe.wordsForTokens(llama.endpoint, longTokens);
    let nonce = 1000;

    log(`${model.id}: single-stream decode (${p.reps}× ${p.decodeTokens} tokens)`);
    const dec = await paired(servers, p.reps, (s, rep) => probe.decode(s.endpoint, nonce + rep, shortWords, p.decodeTokens));
    nonce += 100;
    const check = [...dec.lmx, ...dec.llama].find((d) => d.tokens !== p.decodeTokens);
    if (check) throw new Error(`a server generated ${check.tokens} tokens instead of ${p.decodeTokens}: ignore_eos is not honoured`);

    log(`${model.id}: prefill at 256 and 2048 prompt tokens`);
    const pf256 = await paired(servers, p.reps, (s, rep) => probe.prefill(s.endpoint, nonce + rep, words256));
    nonce += 100;
    const pf2048 = await paired(servers, p.prefillLongReps, (s, rep) => probe.prefill(s.endpoint, nonce + rep, words2048));
    nonce += 100;

    log(`${model.id}: time to first token (${p.ttftReps}×) and short-request latency (${p.latencyReps}×)`);
    const tt = await paired(servers, p.ttftReps, (s, rep) => probe.ttft(s.endpoint, nonce + rep, shortWords));
    nonce += 100;
    const lat = await paired(servers, p.latencyReps, (s, rep) => probe.latency(s.endpoint, nonce + rep, shortWords, p.latencyTokens));
    nonce += 100;

    const streamsList = [1, 2, 4, 8].filter((n) => n <= Math.max(8, o.parallel));
    const conc: Record<string, { lmx: probe.ConcurrentResult[]; llama: probe.ConcurrentResult[] }> = {};
    const peak = { lmx: 0, llama: 0 };
    for (const n of streamsList) {
      log(`${model.id}: ${n} concurrent stream(s) (${p.concurrentReps}× ${p.concurrentTokens} tokens each)`);
      conc[n] = await paired(servers, p.concurrentReps, async (s, rep) => {
        const { result, peakMb } = await withPeakRss(s.pid, () => probe.concurrent(s.endpoint, nonce + rep, n, shortWords, p.concurrentTokens));
        const k = s.kind === "lmx" ? "lmx" : "llama";
        peak[k] = Math.max(peak[k], peakMb);
        return result;
      });
      nonce += 100;
    }

    const side = (k: "lmx" | "llama"): Side => {
      const concTps: Record<string, Spread> = {};
      const concTtft: Record<string, Spread> = {};
      for (const n of streamsList) {
        concTps[n] = spread(conc[n]![k].map((r) => r.aggregateTokensPerSecond));
        concTtft[n] = spread(conc[n]![k].map((r) => r.ttftMs));
      }
      return {
        decode_tps: spread(dec[k].map((d) => d.tokensPerSecond)),
        prefill256_tps: spread(pf256[k].map((d) => d.tokensPerSecond)),
        prefill2048_tps: spread(pf2048[k].map((d) => d.tokensPerSecond)),
        prefill_tokens: { p256: median(pf256[k].map((d) => d.promptTokens)), p2048: median(pf2048[k].map((d) => d.promptTokens)) },
        ttft_ms: spread(tt[k]),
        ttft_p95_ms: percentile(tt[k], 95),
        latency_p50_ms: percentile(lat[k], 50),
        latency_p95_ms: percentile(lat[k], 95),
        concurrent_tps: concTps,
        concurrent_ttft_ms: concTtft,
        startup_ms: spread(life[k].startup),
        load_ms: spread(life[k].load),
        rss_idle_mb: spread(life[k].rss),
        rss_loaded_mb: peak[k],
        cpu_variant: life[k].variant,
        command: servers[k].command,
        raw: {
          decode_tps: dec[k].map((d) => round(d.tokensPerSecond)),
          prefill256_tps: pf256[k].map((d) => round(d.tokensPerSecond)),
          prefill2048_tps: pf2048[k].map((d) => round(d.tokensPerSecond)),
          ttft_ms: tt[k].map((v) => round(v)),
          latency_ms: lat[k].map((v) => round(v)),
          ...Object.fromEntries(streamsList.map((n) => [`concurrent${n}_tps`, conc[n]![k].map((r) => round(r.aggregateTokensPerSecond))])),
          startup_ms: life[k].startup.map((v) => round(v)),
          load_ms: life[k].load.map((v) => round(v)),
          rss_idle_mb: life[k].rss.map((v) => round(v)),
        },
      };
    };
    const L = side("lmx");
    const R = side("llama");
    const pre256 = ratios(pf256.lmx.map((d) => d.tokensPerSecond), pf256.llama.map((d) => d.tokensPerSecond));
    const pre2048 = ratios(pf2048.lmx.map((d) => d.tokensPerSecond), pf2048.llama.map((d) => d.tokensPerSecond));
    const ttftDiff = spread(tt.lmx.map((v, i) => v - tt.llama[i]!));
    const r = {
      decode: ratios(dec.lmx.map((d) => d.tokensPerSecond), dec.llama.map((d) => d.tokensPerSecond)),
      prefill256: pre256,
      prefill2048: pre2048,
      ttft_overhead_ms: round(L.ttft_ms.median - R.ttft_ms.median),
      ttft_paired_diff_ms: ttftDiff,
      latency_p50: round(L.latency_p50_ms / R.latency_p50_ms, 3),
      latency_p95: round(L.latency_p95_ms / R.latency_p95_ms, 3),
      ...Object.fromEntries(streamsList.map((n) => [`concurrent${n}`, ratios(conc[n]!.lmx.map((x) => x.aggregateTokensPerSecond), conc[n]!.llama.map((x) => x.aggregateTokensPerSecond))])),
      startup: round(L.startup_ms.median / R.startup_ms.median, 3),
      load: round(L.load_ms.median / R.load_ms.median, 3),
      rss_idle: round(L.rss_idle_mb.median / R.rss_idle_mb.median, 3),
      rss_loaded: round(L.rss_loaded_mb / R.rss_loaded_mb, 3),
    } as Record<string, number | Spread>;
    return {
      model: { ...model, size_bytes: Bun.file(model.path).size },
      config: { threads: o.threads, parallel: o.parallel, ctx_per_sequence: o.ctx, llama_server_ctx_total: o.ctx * o.parallel, plan: p },
      lmx: L,
      llama_server: R,
      ratios: r,
      // Prefill overall: geometric mean of the two prompt sizes' median ratios.
      prefill_ratio: round(Math.sqrt(pre256.median * pre2048.median), 3),
    };
  } finally {
    await lmx.stop();
    await llama.stop();
  }
}

type ModelResult = Awaited<ReturnType<typeof benchModel>>;

function table(res: ModelResult): string {
  const L = res.lmx;
  const R = res.llama_server;
  const r = res.ratios;
  const sp = (s: Spread | number | undefined, d = 2) => typeof s === "number" ? s.toFixed(d) : fmtSpread(s, d);
  const rows: [string, string, string, string][] = [
    ["decode tok/s (1 stream)", fmtSpread(L.decode_tps), fmtSpread(R.decode_tps), sp(r.decode)],
    [`prefill tok/s (${L.prefill_tokens.p256} tok)`, fmtSpread(L.prefill256_tps, 0), fmtSpread(R.prefill256_tps, 0), sp(r.prefill256)],
    [`prefill tok/s (${L.prefill_tokens.p2048} tok)`, fmtSpread(L.prefill2048_tps, 0), fmtSpread(R.prefill2048_tps, 0), sp(r.prefill2048)],
    ["TTFT ms p50 (short prompt)", fmtSpread(L.ttft_ms), fmtSpread(R.ttft_ms), `${sp(r.ttft_overhead_ms, 1)} ms`],
    ["TTFT ms p95", L.ttft_p95_ms.toFixed(1), R.ttft_p95_ms.toFixed(1), (L.ttft_p95_ms / R.ttft_p95_ms).toFixed(2)],
    ["latency ms p50 (16 tokens)", L.latency_p50_ms.toFixed(1), R.latency_p50_ms.toFixed(1), sp(r.latency_p50)],
    ["latency ms p95 (16 tokens)", L.latency_p95_ms.toFixed(1), R.latency_p95_ms.toFixed(1), sp(r.latency_p95)],
    ...Object.keys(L.concurrent_tps).map((n): [string, string, string, string] =>
      [`aggregate tok/s, ${n} stream${n === "1" ? "" : "s"}`, fmtSpread(L.concurrent_tps[n]), fmtSpread(R.concurrent_tps[n]), sp(r[`concurrent${n}`])]),
    ["server start-up ms", fmtSpread(L.startup_ms, 0), fmtSpread(R.startup_ms, 0), sp(r.startup)],
    ["model load ms", fmtSpread(L.load_ms, 0), fmtSpread(R.load_ms, 0), sp(r.load)],
    ["RSS idle MB (model loaded)", fmtSpread(L.rss_idle_mb, 0), fmtSpread(R.rss_idle_mb, 0), sp(r.rss_idle)],
    ["RSS peak MB under load", L.rss_loaded_mb.toFixed(0), R.rss_loaded_mb.toFixed(0), sp(r.rss_loaded)],
  ];
  const head: [string, string, string, string] = ["metric", "LMX", "llama-server", "LMX / llama-server"];
  const w = [0, 1, 2, 3].map((i) => Math.max(head[i]!.length, ...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [
    `${res.model.id} (${res.model.shape}); ${res.config.threads} threads, ${res.config.parallel} parallel, ctx ${res.config.ctx_per_sequence}/sequence; CPU backend: LMX ${L.cpu_variant ?? "static"}, llama-server ${R.cpu_variant ?? "native build"}`,
    line(head),
    line(w.map((n) => "-".repeat(n))),
    ...rows.map(line),
    "values: median (min–max) over repetitions; ratios are per repetition, LMX and llama-server run back to back",
  ].join("\n");
}

function machine() {
  const flags = (() => {
    try {
      const m = /^flags\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
      const all = new Set((m?.[1] ?? "").split(/\s+/));
      return ["avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni"].filter((f) => all.has(f));
    } catch {
      return [];
    }
  })();
  const info = cpuInfo();
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    logical_cores: info.logicalCores,
    physical_cores: info.physicalCores,
    available_cores: info.availableCores,
    cpu_flags: flags,
    ram_gb: round(totalmem() / 2 ** 30, 1),
    free_ram_gb: round(freemem() / 2 ** 30, 1),
    os: `${process.platform} ${release()}`,
    arch: process.arch,
    bun: Bun.version,
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const started = performance.now();
  const loadBefore = loadavg();
  if (loadBefore[0]! > cpuInfo().availableCores * 0.5) {
    log(`note: load average is ${loadBefore.map((x) => x.toFixed(2)).join(", ")} on ${cpuInfo().availableCores} cores; absolute figures will be noisy (ratios less so)`);
  }
  const tools = await ensureLlamaCppTools(log);
  const buildStarted = performance.now();
  const models: BenchModel[] = [];
  for (const id of o.models) {
    if (id === "stories260K") models.push(storiesModel());
    else if (id === "qwen2-0.5b-q8") models.push(synthQwen05Model(log));
    else if (existsSync(id)) models.push({ id: id.replace(/^.*\//, "").replace(/\.gguf$/, ""), path: resolve(id), shape: "user model" });
    else throw new Error(`unknown model '${id}' (qwen2-0.5b-q8, stories260K or a .gguf path)`);
  }
  const nlc = JSON.parse(readFileSync(resolve(REPO_ROOT, "node_modules/node-llama-cpp/package.json"), "utf8")) as { version: string };
  const results: ModelResult[] = [];
  for (const m of models) {
    const res = await benchModel(m, o, tools.server);
    results.push(res);
    console.log("\n" + table(res));
  }
  const primary = results[0]!;
  const ratio = (x: number | Spread | undefined) => (typeof x === "number" ? x : x?.median ?? Number.NaN);
  const report = {
    schema: 1,
    started_at: startedAt.toISOString(),
    duration_s: round((performance.now() - started) / 1000, 1),
    bench_s: round((performance.now() - buildStarted) / 1000, 1),
    mode: o.quick ? "quick" : "full",
    command: `bun run bench -- ${process.argv.slice(2).join(" ")}`.trim(),
    machine: { ...machine(), load_average_before: loadBefore.map((x) => round(x)), load_average_after: loadavg().map((x) => round(x)) },
    versions: { lmx: VERSION, node_llama_cpp: nlc.version, llama_cpp_release: tools.release, llama_cpp_commit: tools.commit, llama_server_cmake: tools.cmakeFlags },
    primary_model: primary.model.id,
    decode_ratio: round(ratio(primary.ratios.decode), 3),
    prefill_ratio: primary.prefill_ratio,
    ttft_overhead_ms: ratio(primary.ratios.ttft_overhead_ms),
    concurrent4_ratio: round(ratio(primary.ratios.concurrent4), 3),
    rss_idle_mb: round(primary.lmx.rss_idle_mb.median, 1),
    rss_idle_mb_llama_server: round(primary.llama_server.rss_idle_mb.median, 1),
    // Requests repeated because llama-server's output parser rejected a random model's text.
    parser_retries: probe.parserRetries,
    models: Object.fromEntries(results.map((r) => [r.model.id, r])),
  };
  console.log(`\nsummary (${primary.model.id}): decode ${report.decode_ratio}×, prefill ${report.prefill_ratio}×, TTFT overhead ${report.ttft_overhead_ms} ms, 4 streams ${report.concurrent4_ratio}×, idle RSS ${report.rss_idle_mb} MB (llama-server ${report.rss_idle_mb_llama_server} MB); ${report.bench_s} s`);
  if (o.json) {
    writeFileSync(o.json, JSON.stringify(report, null, 2) + "\n");
    log(`JSON written to ${o.json}`);
  }
}

await main();
