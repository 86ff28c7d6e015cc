// Every figure `lmx bench` and `bun run bench` report, defined once: what is timed, from where to
// where. docs/performance.md carries this table verbatim (`figuresMarkdown`, checked by a unit
// test), and the rates below are the only code that turns stream timings into tokens per second,
// so "decode" and "aggregate" are the same quantity: aggregate with one stream is decode.

import type { StreamTiming } from "./probes.ts";

export type FigureId =
  | "decode"
  | "prefill256"
  | "prefill2048"
  | "ttft_p50"
  | "ttft_p95"
  | "aggregate1"
  | "aggregate2"
  | "aggregate4"
  | "aggregate8"
  | "cold_load"
  | "ready"
  | "rss_ready"
  | "rss_idle"
  | "rss_peak";

export interface Figure {
  id: FigureId;
  label: string;
  unit: "tok/s" | "ms" | "MB";
  better: "higher" | "lower";
  /** What is counted or sampled. */
  measures: string;
  /** Where the clock starts and stops (or when the sample is taken). */
  span: string;
}

const generation = "generated tokens after each stream's first, summed over the streams";

export const FIGURES: readonly Figure[] = [
  { id: "decode", label: "decode tok/s (1 stream)", unit: "tok/s", better: "higher", measures: `${generation}; one stream`,
    span: "first streamed token → last token of the stream" },
  { id: "prefill256", label: "prefill tok/s (256 tok)", unit: "tok/s", better: "higher", measures: "prompt tokens evaluated (≈256: the server's prompt count less what it reports as cached)",
    span: "request sent → first streamed token" },
  { id: "prefill2048", label: "prefill tok/s (2048 tok)", unit: "tok/s", better: "higher", measures: "prompt tokens evaluated (≈2048, capped by the slot's context; less what the server reports as cached)",
    span: "request sent → first streamed token" },
  { id: "ttft_p50", label: "TTFT ms p50", unit: "ms", better: "lower", measures: "median over runs; 32-token prompt, one stream, nothing else running",
    span: "request sent → first streamed token" },
  { id: "ttft_p95", label: "TTFT ms p95", unit: "ms", better: "lower", measures: "95th percentile of the same runs", span: "request sent → first streamed token" },
  ...[1, 2, 4, 8].map((n): Figure => ({
    id: `aggregate${n}` as FigureId,
    label: `aggregate tok/s, ${n} stream${n === 1 ? "" : "s"}`,
    unit: "tok/s",
    better: "higher",
    measures: `${generation}; ${n} stream${n === 1 ? "" : "s"} sent at once${n === 1 ? " (the same quantity as decode)" : ""}`,
    span: "earliest first token of any stream → last token of all streams",
  })),
  { id: "cold_load", label: "cold load ms", unit: "ms", better: "lower", measures: "loading the model into a freshly started server",
    span: "LMX: POST /admin/v1/models/{id}/load sent → answered; llama-server: /health answering 503 → 200" },
  { id: "ready", label: "start-up to ready ms", unit: "ms", better: "lower", measures: "process start, no model loaded",
    span: "spawn → GET /health answers (LMX: 200; llama-server: any status)" },
  { id: "rss_ready", label: "RSS at ready MB (no model)", unit: "MB", better: "lower", measures: "VmRSS of the server and its child processes",
    span: "sampled once /health answers, before any model is loaded" },
  { id: "rss_idle", label: "RSS idle MB (model loaded)", unit: "MB", better: "lower", measures: "VmRSS of the server and its child processes",
    span: "sampled 300 ms after one 8-token request to the loaded model" },
  { id: "rss_peak", label: "RSS peak MB under load", unit: "MB", better: "lower", measures: "VmRSS of the server and its child processes, sampled every 50 ms",
    span: "highest sample during the concurrent-stream runs" },
];

export function figure(id: FigureId): Figure {
  const f = FIGURES.find((x) => x.id === id);
  if (f === undefined) throw new Error(`unknown figure ${id}`);
  return f;
}

/**
 * Generation rate of streams that ran together: tokens after each stream's first (the first
 * belongs to prefill and TTFT) over the time from the earliest first token to the last token.
 * One stream gives the decode rate; several give the aggregate rate, so the two compare directly.
 */
export function generationRate(runs: readonly Pick<StreamTiming, "completionTokens" | "firstAt" | "endAt">[]): number {
  if (runs.length === 0) return Number.NaN;
  const tokens = runs.reduce((a, r) => a + Math.max(0, r.completionTokens - 1), 0);
  const ms = Math.max(...runs.map((r) => r.endAt)) - Math.min(...runs.map((r) => r.firstAt));
  return ms > 0 ? (tokens * 1000) / ms : Number.NaN;
}

/** Prompt tokens evaluated (not taken from the server's cache) per second up to the first token. */
export function prefillRate(run: Pick<StreamTiming, "promptTokens" | "cachedTokens" | "ttftMs">): number {
  return run.ttftMs > 0 ? ((run.promptTokens - run.cachedTokens) * 1000) / run.ttftMs : Number.NaN;
}

/** The definitions as the Markdown table in docs/performance.md. */
export function figuresMarkdown(): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  return [
    "| figure | unit | better | what is counted | timed from → to |",
    "| --- | --- | --- | --- | --- |",
    ...FIGURES.map((f) => `| ${esc(f.label)} | ${f.unit} | ${f.better} | ${esc(f.measures)} | ${esc(f.span)} |`),
  ].join("\n");
}
