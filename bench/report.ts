// The bench's result shapes: one row per figure (LMX, the reference, their ratio), the issue's
// goals evaluated next to the ratios, the printed table and the JSON line appended to
// bench/results/history.jsonl. Pure functions, unit-tested in test/unit/bench-report.test.ts.

import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { figure, type FigureId } from "../src/throughput/figures.ts";
import { fmtSpread, round, spread, type Spread } from "../src/throughput/stats.ts";

export interface Row {
  figure: FigureId;
  lmx: Spread;
  ref: Spread;
  /** LMX / reference: per repetition where the two ran back to back, else the ratio of the medians. */
  ratio: Spread;
}

/** A row from paired repetitions (index i of both ran back to back). */
export function pairedRow(id: FigureId, lmx: readonly number[], ref: readonly number[]): Row {
  return { figure: id, lmx: spread(lmx), ref: spread(ref), ratio: spread(lmx.map((v, i) => v / ref[i]!)) };
}

/** A row from two single figures (percentiles, peaks), or two unpaired series. */
export function medianRow(id: FigureId, lmx: Spread | number, ref: Spread | number): Row {
  const s = (x: Spread | number) => (typeof x === "number" ? spread([x]) : x);
  const l = s(lmx);
  const r = s(ref);
  return { figure: id, lmx: l, ref: r, ratio: spread([l.median / r.median]) };
}

export type GoalKind =
  /** LMX / reference ≥ limit. */
  | "ratio_at_least"
  /** LMX − reference (median) ≤ limit, in the figure's unit. */
  | "overhead_at_most"
  /** LMX's own median ≤ limit, in the figure's unit. */
  | "lmx_at_most";

export interface Goal {
  figure: FigureId;
  kind: GoalKind;
  limit: number;
}

/** Issue 18's goals against llama-server built on the same kernels. */
export const GGUF_GOALS: readonly Goal[] = [
  { figure: "decode", kind: "ratio_at_least", limit: 0.98 },
  { figure: "prefill256", kind: "ratio_at_least", limit: 0.98 },
  { figure: "prefill2048", kind: "ratio_at_least", limit: 0.98 },
  { figure: "ttft_p50", kind: "overhead_at_most", limit: 2 },
  { figure: "aggregate4", kind: "ratio_at_least", limit: 1.0 },
  { figure: "ready", kind: "lmx_at_most", limit: 300 },
  { figure: "rss_ready", kind: "lmx_at_most", limit: 120 },
];

/** Issue 18's goal against mlx-lm on the same MLX model. */
export const MLX_GOALS: readonly Goal[] = [{ figure: "decode", kind: "ratio_at_least", limit: 0.97 }];

export interface GoalResult {
  goal: string;
  value: number;
  met: boolean;
}

export function goalText(g: Goal): string {
  const unit = figure(g.figure).unit;
  if (g.kind === "ratio_at_least") return `≥ ${g.limit.toFixed(2)}×`;
  if (g.kind === "overhead_at_most") return `+≤ ${g.limit} ${unit}`;
  return `≤ ${g.limit} ${unit}`;
}

export function evaluateGoal(g: Goal, row: Row): GoalResult {
  const value = g.kind === "ratio_at_least" ? row.ratio.median
    : g.kind === "overhead_at_most" ? row.lmx.median - row.ref.median
    : row.lmx.median;
  const met = Number.isFinite(value) && (g.kind === "ratio_at_least" ? value >= g.limit : value <= g.limit);
  return { goal: goalText(g), value: round(value, 3), met };
}

/** Every row with its goal (if the figure has one). */
export function withGoals(rows: readonly Row[], goals: readonly Goal[]): { row: Row; goal?: GoalResult }[] {
  return rows.map((row) => {
    const g = goals.find((x) => x.figure === row.figure);
    return g === undefined ? { row } : { row, goal: evaluateGoal(g, row) };
  });
}

function fmtValue(id: FigureId, s: Spread): string {
  const unit = figure(id).unit;
  return fmtSpread(s, unit === "ms" && s.median < 100 ? 1 : unit === "tok/s" && s.median < 100 ? 1 : 0);
}

/** The printed table: figure, LMX, reference, ratio, goal, met. */
export function renderTable(title: string, refName: string, rows: readonly Row[], goals: readonly Goal[]): string {
  const cells = withGoals(rows, goals).map(({ row, goal }) => {
    const ratio = row.figure === "ttft_p50"
      ? `${fmtSpread(row.ratio, 2)} (${signed(row.lmx.median - row.ref.median)} ms)`
      : fmtSpread(row.ratio, 2);
    return [figure(row.figure).label, fmtValue(row.figure, row.lmx), fmtValue(row.figure, row.ref), ratio,
      goal?.goal ?? "", goal === undefined ? "" : goal.met ? "met" : "not met"];
  });
  const head = ["figure", "LMX", refName, `LMX / ${refName}`, "goal", ""];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 || i === 5 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ").trimEnd();
  return [title, line(head), line(w.map((n) => "-".repeat(n))), ...cells.map(line)].join("\n");
}

function signed(x: number): string {
  return `${x >= 0 ? "+" : ""}${x.toFixed(1)}`;
}

const r3 = (s: Spread) => ({ median: round(s.median, 3), min: round(s.min, 3), max: round(s.max, 3), n: s.n });

/** One model's part of the history line. */
export function modelRecord(model: { id: string; shape: string; size_bytes: number }, reference: string, rows: readonly Row[], goals: readonly Goal[]) {
  return {
    ...model,
    reference,
    rows: withGoals(rows, goals).map(({ row, goal }) => ({
      figure: row.figure, unit: figure(row.figure).unit, lmx: r3(row.lmx), ref: r3(row.ref), ratio: r3(row.ratio),
      ...(goal === undefined ? {} : { goal: goal.goal, goal_value: goal.value, met: goal.met }),
    })),
  };
}

export type ModelRecord = ReturnType<typeof modelRecord>;

/**
 * Mean prompt tokens the requests took from the server's prompt cache: a prefill or TTFT figure
 * compares servers only while both evaluate (nearly) the whole prompt.
 */
export function meanCached(requests: readonly { cachedTokens: number }[]): number {
  return requests.length === 0 ? 0 : round(requests.reduce((a, r) => a + r.cachedTokens, 0) / requests.length, 1);
}

export interface HistoryRecord {
  schema: 2;
  at: string;
  command: string;
  mode: "quick" | "full";
  duration_s: number;
  git: { commit: string; dirty: boolean };
  machine: { cpu: string; logical_cores: number; physical_cores: number; ram_gb: number; os: string; arch: string; cpu_flags: string[]; load_average: { before: number[]; after: number[] } };
  versions: { lmx: string; bun: string; node_llama_cpp: string; llama_cpp: { release: string; commit: string }; mlx?: string; mlx_lm?: string };
  settings: { threads: number; parallel: number; ctx_per_sequence: number };
  /** How the llama-server reference was built and the proof that it ran LMX's kernels. */
  reference: { build: string; kernels: unknown };
  models: ModelRecord[];
  notes: string[];
}

/** Checks the fields a plot of the history relies on; returns what is missing or malformed. */
export function recordProblems(rec: unknown): string[] {
  const out: string[] = [];
  const r = rec as Partial<HistoryRecord> | null;
  if (r === null || typeof r !== "object") return ["not an object"];
  if (r.schema !== 2) out.push("schema");
  if (typeof r.at !== "string" || Number.isNaN(Date.parse(r.at))) out.push("at");
  if (typeof r.git?.commit !== "string" || !/^[0-9a-f]{40}$/.test(r.git.commit)) out.push("git.commit");
  for (const k of ["cpu", "logical_cores", "ram_gb", "os"] as const) if (r.machine?.[k] === undefined) out.push(`machine.${k}`);
  for (const k of ["lmx", "node_llama_cpp", "llama_cpp"] as const) if (r.versions?.[k] === undefined) out.push(`versions.${k}`);
  if (!Array.isArray(r.models) || r.models.length === 0) out.push("models");
  for (const m of r.models ?? []) {
    if (!Array.isArray(m.rows) || m.rows.length === 0) out.push(`models.${m.id}.rows`);
    for (const row of m.rows ?? []) if (!Number.isFinite(row.ratio.median) && row.ratio.n > 0) out.push(`models.${m.id}.${row.figure}.ratio`);
  }
  return out;
}

/** Appends the record as one line (the file is a JSON Lines history, one run per line). */
export function appendHistory(file: string, rec: HistoryRecord): void {
  const problems = recordProblems(rec);
  if (problems.length > 0) throw new Error(`bench record is incomplete: ${problems.join(", ")}`);
  mkdirSync(dirname(file), { recursive: true });
  appendFileSync(file, JSON.stringify(rec) + "\n");
}
