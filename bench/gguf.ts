// One GGUF model: LMX against the same-kernel llama-server, every figure of figures.ts measured by
// the same client code on both, alternating which server goes first (ABBA) so machine noise hits
// both alike.

import { readFileSync } from "node:fs";
import { chooseFlashAttention } from "../src/engines/llama/flash-attention.ts";
import { attentionHeadSize } from "../src/gguf/hparams.ts";
import { readGgufHeader } from "../src/gguf/reader.ts";
import type { FigureId } from "../src/throughput/figures.ts";
import * as probe from "../src/throughput/probes.ts";
import { percentile, spread } from "../src/throughput/stats.ts";
import { compareKernels, type KernelCheck, mappedEngine, type MappedEngine, serverSystemInfo } from "./kernels.ts";
import type { ReferenceServer } from "./llama-build.ts";
import type { BenchModel } from "./models.ts";
import { meanCached, medianRow, pairedRow, type Row } from "./report.ts";
import { type RunningServer, rssMb, type ServerConfig, startLlamaServer, startLmx, withPeakRss } from "./servers.ts";

export interface GgufOptions {
  quick: boolean;
  threads: number;
  parallel: number;
  ctx: number;
  lmxArgv: string[];
  /** Serve from this LMX home (its selected engine) instead of a fresh one. */
  lmxHome?: string;
  reps?: number;
}

/** How much each measurement is repeated; `scale` multiplies generated tokens for fast models. */
export function plan(o: GgufOptions, scale: number) {
  const reps = o.reps ?? (o.quick ? 3 : 6);
  return {
    lifeReps: o.quick ? 2 : 3,
    reps,
    prefillLongReps: Math.max(2, Math.round(reps * 0.67)),
    decodeTokens: (o.quick ? 64 : 128) * scale,
    ttftReps: o.quick ? 10 : 30,
    concurrentTokens: (o.quick ? 32 : 64) * scale,
    concurrentReps: o.quick ? 2 : 4,
  };
}

type Kind = "lmx" | "llama";
type Pair = Record<Kind, RunningServer>;
const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

/** Runs `fn` on both servers `reps` times, alternating which goes first (ABBA). */
async function paired<T>(servers: Pair, reps: number, fn: (s: RunningServer, rep: number) => Promise<T>): Promise<Record<Kind, T[]>> {
  const out: Record<Kind, T[]> = { lmx: [], llama: [] };
  for (let rep = 0; rep < reps; rep++) {
    for (const k of (rep % 2 === 0 ? ["lmx", "llama"] : ["llama", "lmx"]) as Kind[]) out[k].push(await fn(servers[k], rep));
  }
  return out;
}

interface Life { ready: number[]; load: number[]; rssReady: number[]; rssIdle: number[]; mapped?: MappedEngine }

/** Fresh servers: start-up to ready, cold load, RSS at ready and idle; the mapped libraries. */
async function lifecycle(cfg: ServerConfig, o: GgufOptions, ref: ReferenceServer, reps: number): Promise<Record<Kind, Life>> {
  const res: Record<Kind, Life> = { lmx: { ready: [], load: [], rssReady: [], rssIdle: [] }, llama: { ready: [], load: [], rssReady: [], rssIdle: [] } };
  for (let rep = 0; rep < reps; rep++) {
    for (const k of (rep % 2 === 0 ? ["lmx", "llama"] : ["llama", "lmx"]) as Kind[]) {
      const s = k === "lmx" ? await startLmx(cfg, { argv: o.lmxArgv, home: o.lmxHome }) : await startLlamaServer(cfg, ref);
      try {
        await probe.completion(s.endpoint, probe.prompt(7, 16), 8);
        await Bun.sleep(300);
        res[k].ready.push(s.startupMs);
        res[k].load.push(s.loadMs);
        res[k].rssReady.push(s.readyRssMb);
        res[k].rssIdle.push(rssMb(s.pid));
        res[k].mapped ??= mappedEngine(s.pid);
      } finally {
        await s.stop();
      }
    }
  }
  return res;
}

/**
 * llama-server prints ggml's `system_info` line only at trace verbosity (`-lv 4`), which would
 * also log every request, so one extra start with it, outside the timed runs, gives the line.
 */
async function serverKernelInfo(cfg: ServerConfig, ref: ReferenceServer): Promise<{ info?: string; mapped: MappedEngine }> {
  const s = await startLlamaServer(cfg, ref, ["-lv", "4"]);
  try {
    await probe.completion(s.endpoint, probe.prompt(3, 8), 2);
    return { info: serverSystemInfo(readLog(s.logFile)), mapped: mappedEngine(s.pid) };
  } finally {
    await s.stop();
  }
}

function readLog(file: string): string {
  let text = "";
  for (const f of [file, file + ".err"]) {
    try {
      text += readFileSync(f, "utf8");
    } catch {
      // Not written (llama-server logs to one of the two).
    }
  }
  return text;
}

export interface GgufResult {
  model: { id: string; shape: string; size_bytes: number };
  flash_attention: "on" | "off";
  rows: Row[];
  kernels: KernelCheck;
  commands: { lmx: string[]; llama_server: string[] };
  prefill_tokens: { p256: number; p2048: number };
  /** Mean prompt tokens a request of the prefill and TTFT rows took from the server's cache. */
  cached_prompt_tokens: { lmx: number; llama: number };
}

export async function benchGguf(model: BenchModel, o: GgufOptions, ref: ReferenceServer, nlcSystemInfo: string | undefined): Promise<GgufResult> {
  const p = plan(o, model.id === "stories260K" ? 4 : 1);
  // What LMX's own "auto" picks on the CPU for this model (flash-attention.ts), given to both.
  const fa = chooseFlashAttention("auto", false, attentionHeadSize(readGgufHeader(model.path).metadata)).option === false ? "off" : "on";
  const cfg: ServerConfig = { modelId: model.id, modelPath: model.path, threads: o.threads, parallel: o.parallel, ctx: o.ctx, flashAttention: fa };
  log(`${model.id}: start-up, cold load and memory (${p.lifeReps}× each server)`);
  const life = await lifecycle(cfg, o, ref, p.lifeReps);
  const traced = await serverKernelInfo(cfg, ref);
  // The files are those the timed servers mapped; the traced start only supplies the log line.
  const kernels = compareKernels(life.lmx.mapped ?? { files: {} }, life.llama.mapped ?? traced.mapped, traced.info, nlcSystemInfo);

  log(`${model.id}: starting both servers`);
  const lmx = await startLmx(cfg, { argv: o.lmxArgv, home: o.lmxHome });
  let llama: RunningServer;
  try {
    llama = await startLlamaServer(cfg, ref);
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
    const words2048 = await probe.wordsForTokens(llama.endpoint, Math.min(2048, slotCtx - 64, o.ctx - 64));
    let nonce = 1000;

    log(`${model.id}: single-stream decode (${p.reps}× ${p.decodeTokens} tokens)`);
    const dec = await paired(servers, p.reps, (s, rep) => probe.decode(s.endpoint, nonce + rep, shortWords, p.decodeTokens));
    nonce += 100;
    const short = [...dec.lmx, ...dec.llama].find((d) => d.tokens !== p.decodeTokens);
    if (short) throw new Error(`a server generated ${short.tokens} tokens instead of ${p.decodeTokens}: ignore_eos is not honoured`);

    log(`${model.id}: prefill at 256 and 2048 prompt tokens`);
    const pf256 = await paired(servers, p.reps, (s, rep) => probe.prefill(s.endpoint, nonce + rep, words256));
    nonce += 100;
    const pf2048 = await paired(servers, p.prefillLongReps, (s, rep) => probe.prefill(s.endpoint, nonce + rep, words2048));
    nonce += 100;

    log(`${model.id}: time to first token (${p.ttftReps}×)`);
    const tt = await paired(servers, p.ttftReps, (s, rep) => probe.ttft(s.endpoint, nonce + rep, shortWords));
    nonce += 100;

    const conc: Record<number, Record<Kind, number[]>> = {};
    const peak: Record<Kind, number> = { lmx: 0, llama: 0 };
    for (const n of [1, 2, 4, 8]) {
      log(`${model.id}: ${n} concurrent stream(s) (${p.concurrentReps}× ${p.concurrentTokens} tokens each)`);
      const runs = await paired(servers, p.concurrentReps, async (s, rep) => {
        const { result, peakMb } = await withPeakRss(s.pid, () => probe.concurrent(s.endpoint, nonce + rep, n, shortWords, p.concurrentTokens));
        const k: Kind = s.kind === "lmx" ? "lmx" : "llama";
        peak[k] = Math.max(peak[k], peakMb);
        return result.aggregateTokensPerSecond;
      });
      conc[n] = runs;
      nonce += 100;
    }

    const tps = (xs: { tokensPerSecond: number }[]) => xs.map((x) => x.tokensPerSecond);
    const rows: Row[] = [
      pairedRow("decode", tps(dec.lmx), tps(dec.llama)),
      pairedRow("prefill256", tps(pf256.lmx), tps(pf256.llama)),
      pairedRow("prefill2048", tps(pf2048.lmx), tps(pf2048.llama)),
      medianRow("ttft_p50", spread(tt.lmx.map((t) => t.ms)), spread(tt.llama.map((t) => t.ms))),
      medianRow("ttft_p95", percentile(tt.lmx.map((t) => t.ms), 95), percentile(tt.llama.map((t) => t.ms), 95)),
      ...[1, 2, 4, 8].map((n) => pairedRow(`aggregate${n}` as FigureId, conc[n]!.lmx, conc[n]!.llama)),
      pairedRow("cold_load", life.lmx.load, life.llama.load),
      pairedRow("ready", life.lmx.ready, life.llama.ready),
      pairedRow("rss_ready", life.lmx.rssReady, life.llama.rssReady),
      pairedRow("rss_idle", life.lmx.rssIdle, life.llama.rssIdle),
      medianRow("rss_peak", peak.lmx, peak.llama),
    ];
    return {
      model: { id: model.id, shape: model.shape, size_bytes: Bun.file(model.path).size },
      flash_attention: fa,
      rows,
      kernels,
      commands: { lmx: lmx.command, llama_server: llama.command },
      prefill_tokens: { p256: spread(pf256.lmx.map((x) => x.promptTokens)).median, p2048: spread(pf2048.lmx.map((x) => x.promptTokens)).median },
      cached_prompt_tokens: { lmx: meanCached([...pf256.lmx, ...pf2048.lmx, ...tt.lmx]), llama: meanCached([...pf256.llama, ...pf2048.llama, ...tt.llama]) },
    };
  } finally {
    await lmx.stop();
    await llama.stop();
  }
}
