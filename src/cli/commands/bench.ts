import { UsageError } from "../../errors.ts";
import { figure, type FigureId } from "../../throughput/figures.ts";
import * as probe from "../../throughput/probes.ts";
import { fmtSpread, percentile, round, spread, type Spread } from "../../throughput/stats.ts";
import { clientCommand } from "../client-command.ts";
import { encodeId } from "../client.ts";
import { table } from "../table.ts";

interface Ps { data: { id: string; loaded_context_length: number; parallel: number; threads: number }[] }

interface BenchReport {
  model: string;
  server: string;
  context_length: number;
  parallel: number;
  threads: number;
  decode_tps: Spread;
  prefill_tps: Record<string, Spread>;
  ttft_ms: Spread;
  ttft_p95_ms: number;
  concurrent_tps: Record<string, Spread>;
  /** The model load this command triggered; absent when the model was already loaded. */
  cold_load_ms?: number;
  generated_tokens: number;
}

export const bench = clientCommand({
  summary: "Measure a model's speed on this machine (decode, prefill, time to first token, concurrency)",
  usage: "bench <model> [--reps N] [--tokens N] [--streams 1,2,4,8] [--json]",
  description: [
    "Loads the model on the running server if needed and measures, over HTTP like any client:",
    "single-stream decode tokens/s, prefill tokens/s at 256 and 2048 prompt tokens (when they fit the",
    "context), time to first token p50/p95, and aggregate tokens/s with several concurrent streams (up",
    "to the model's parallel setting). Decode and aggregate count the same thing (tokens after each",
    "stream's first, from the earliest first token to the last token), so 1 stream equals decode and",
    "the other rows show what batching adds; docs/performance.md defines every figure. Greedy",
    "sampling; end-of-text is ignored so every run generates exactly --tokens tokens. Other traffic",
    "on the server skews the figures.",
  ].join("\n"),
  minArgs: 1,
  settings: [
    { key: "reps", kind: "int", min: 1, max: 100, flagOnly: true, placeholder: "N", description: "Repetitions of each measurement (default 3)." },
    { key: "tokens", kind: "int", min: 2, max: 100_000, flagOnly: true, placeholder: "N", description: "Tokens generated per decode run (default 128)." },
    { key: "streams", kind: "string", flagOnly: true, placeholder: "LIST", description: "Concurrent stream counts (default 1,2,4,… up to the model's parallel setting)." },
  ],
  async run({ client, flags, args, json, print }) {
    const model = args[0]!;
    const reps = flags.reps ?? 3;
    const tokens = flags.tokens ?? 128;
    const say = (msg: string) => { if (!json) process.stderr.write(msg + "\n"); };

    const before = await client.get<Ps>("/admin/v1/ps");
    const wasLoaded = before.data.some((m) => m.id === model);
    say(`loading ${model}`);
    const loadStart = performance.now();
    await client.post(`/admin/v1/models/${encodeId(model)}/load`, {});
    const loadMs = performance.now() - loadStart;
    const ps = await client.get<Ps>("/admin/v1/ps");
    const loaded = ps.data.find((m) => m.id === model) ?? ps.data[0];
    if (!loaded) throw new UsageError(`${model} is not loaded after the load request`);
    const ctx = loaded.loaded_context_length;
    const parallel = loaded.parallel;
    const streams = flags.streams
      ? flags.streams.split(",").map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0)
      : [1, 2, 4, 8, 16, 32, 64].filter((n) => n <= parallel).concat(parallel & (parallel - 1) ? [parallel] : []);
    if (streams.length === 0) throw new UsageError("--streams needs a comma-separated list of positive integers");

    const ep: probe.Endpoint = { label: "lmx", model: loaded.id, complete: (body) => client.raw("POST", "/v1/completions", body) };
    // Warm-up: the first requests fault in the weights and allocate buffers.
    await probe.completion(ep, probe.prompt(1, 16), 8);
    const shortWords = await probe.wordsForTokens(ep, 32);
    const genTokens = Math.min(tokens, Math.max(2, ctx - 64));
    let nonce = Math.floor(Math.random() * 1_000_000) * 1000;

    say(`decode: ${reps}× ${genTokens} tokens`);
    const dec: number[] = [];
    for (let i = 0; i < reps; i++) dec.push((await probe.decode(ep, nonce++, shortWords, genTokens)).tokensPerSecond);

    const prefill: Record<string, Spread> = {};
    for (const size of [256, 2048]) {
      if (size + 8 > ctx) continue;
      say(`prefill: ${reps}× ${size} prompt tokens`);
      const words = await probe.wordsForTokens(ep, size);
      const runs: number[] = [];
      for (let i = 0; i < reps; i++) runs.push((await probe.prefill(ep, nonce++, words)).tokensPerSecond);
      prefill[size] = spread(runs);
    }

    const ttftReps = Math.max(5, reps * 3);
    say(`time to first token: ${ttftReps}×`);
    const ttfts: number[] = [];
    for (let i = 0; i < ttftReps; i++) ttfts.push((await probe.ttft(ep, nonce++, shortWords)).ms);

    const conc: Record<string, Spread> = {};
    const concTokens = Math.max(2, Math.min(genTokens, 64));
    for (const n of streams) {
      say(`${n} concurrent stream(s): ${reps}× ${concTokens} tokens each`);
      const runs: number[] = [];
      for (let i = 0; i < reps; i++) runs.push((await probe.concurrent(ep, nonce++, n, shortWords, concTokens)).aggregateTokensPerSecond);
      conc[n] = spread(runs);
    }

    const report: BenchReport = {
      model: loaded.id, server: client.baseUrl, context_length: ctx, parallel, threads: loaded.threads,
      decode_tps: spread(dec), prefill_tps: prefill, ttft_ms: spread(ttfts), ttft_p95_ms: round(percentile(ttfts, 95)),
      concurrent_tps: conc, ...(wasLoaded ? {} : { cold_load_ms: round(loadMs) }), generated_tokens: genTokens,
    };
    const label = (id: FigureId) => figure(id).label;
    print(report, () => [
      `${report.model}: context ${ctx} × ${parallel} parallel, ${loaded.threads} threads (${client.baseUrl})`,
      table(["FIGURE", "VALUE (median, min–max)"], [
        [label("decode"), fmtSpread(report.decode_tps)],
        ...Object.entries(prefill).map(([n, s]) => [n === "256" || n === "2048" ? label(`prefill${n}`) : `prefill tok/s (${n} tok)`, fmtSpread(s, 0)]),
        [label("ttft_p50"), fmtSpread(report.ttft_ms)],
        [label("ttft_p95"), report.ttft_p95_ms.toFixed(1)],
        ...Object.entries(conc).map(([n, s]) => [isStandardStreams(n) ? label(`aggregate${n}`) : `aggregate tok/s, ${n} streams`, fmtSpread(s)]),
        ...(report.cold_load_ms === undefined ? [] : [[label("cold_load"), report.cold_load_ms.toFixed(0)]]),
      ]),
    ].join("\n"));
    return 0;
  },
});

function isStandardStreams(n: string): n is "1" | "2" | "4" | "8" {
  return n === "1" || n === "2" || n === "4" || n === "8";
}
