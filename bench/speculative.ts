// Speculative decoding against plain decoding, through a real LMX server (in this process) on the
// engine it ships: decode tok/s and the share of drafted tokens accepted, per model and mode. Run
// by hand, not part of the tests:
//
//   bun bench/speculative.ts [--threads 1] [--reps 6] [--tokens 96] [--mlx]
//
// --mlx: the MLX fixture (test/fixtures/mlx-model.ts, a 2-layer qwen2 with random weights, served
// by the MLX runtime the tests install) with "off" and "draft" (itself as the draft; mlx-lm has no
// prompt lookup) instead of the GGUF models.
//
// Models: the trained copy model (it repeats its prompt, so prompt lookup has something to find;
// test/fixtures/copy-model.ts) with "off" and "lookup", and stories260K (TinyStories prose) with
// "off", "lookup" and "draft" (itself as the draft: the same vocabulary, so the highest acceptance
// a draft can reach, at the cost of a draft as slow as the target). Each mode is its own model id
// (config.json-style per-model settings), all loaded with one sequence, so every mode is measured
// in the same process; the modes run in an order that reverses every repetition (A B C C B A …) so
// drifting machine load hits them alike. Per request: /v1/completions, temperature 0, --tokens
// tokens; decode tok/s is the server's own `timings.predicted_per_second` ((tokens − 1) / time from
// the first token to the last), and `draft_n` / `draft_n_accepted` its counts. Every mode's text is
// checked to be the plain one. Prints medians with the range (min–max) over the repetitions.

import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseFlags, resolveSettings } from "../src/config/resolve.ts";
import { serveSettings } from "../src/config/settings.ts";
import type { LoadSettings } from "../src/config/load-settings.ts";
import { configureLog } from "../src/log.ts";
import { startServer } from "../src/server.ts";
import { ensureCopyModel } from "../test/fixtures/copy-model.ts";
import { ensureFixtures } from "../test/fixtures/models.ts";
import { mlxTestEnv } from "../test/helpers/mlx.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { threads: { type: "string", default: "1" }, reps: { type: "string", default: "6" }, tokens: { type: "string", default: "96" }, mlx: { type: "boolean", default: false } },
  strict: true,
});
const threads = Number(values.threads);
const reps = Number(values.reps);
const tokens = Number(values.tokens);


// The copy model continues a passage of one-token words it saw earlier (test/speculative.test.ts).
const passage = "saw they she nam very happ upon his friend his she was you her big friend and the day play big happy happ day for little there day her fri and but";
type Case = { model: string; path: string; prompt: string; modes: Record<string, LoadSettings> };
async function ggufCases(): Promise<Case[]> {
  const copy = await ensureCopyModel();
  const fx = ensureFixtures();
  return [
    { model: "copy", path: copy.gguf, prompt: `${passage}. The harbour town woke slowly on winter mornings. saw they she nam`, modes: { off: {}, lookup: { speculative: "lookup" } } },
    { model: "stories260K", path: fx.stories260K, prompt: "Once upon a time, there was a little girl named Lily. She loved to play outside.", modes: { off: {}, lookup: { speculative: "lookup" }, draft: { draft: "stories260K.off" } } },
  ];
}
const mlx = values.mlx ? await mlxTestEnv() : undefined;
const home = mkdtempSync(join(tmpdir(), "lmx-bench-spec-"));
// MLX folders are imported, not configured by path: each mode is the fixture under its own folder
// name (a symlink), its mode set as that model's saved load defaults once the server runs.
const cases: Case[] = mlx
  ? [{ model: "mlx-qwen2-tiny", path: mlx.model, prompt: "Once upon a time, there was a little girl named Lily. She loved to play outside.", modes: { off: {}, draft: { draft: "mlx-qwen2-tiny.draft" } } }]
  : await ggufCases();

const configured = mlx ? {} : Object.fromEntries(cases.flatMap((c) => Object.entries(c.modes).map(([mode, load]) => [`${c.model}.${mode}`, { path: c.path, load }])));
configureLog({ level: "warn" });
const config = resolveSettings(serveSettings, parseFlags(["--port", "0", "--threads", String(threads), "--parallel", "1", "--ctx", "512", ...(mlx ? ["--python", mlx.python] : [])], serveSettings), {}, { values: {}, models: {} });
const server = await startServer(config, home, configured, {});
if (mlx) {
  const admin = (path: string, method: string, body: object) =>
    fetch(`${server.url}${path}`, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then(async (r) => {
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    });
  for (const c of cases) {
    for (const [mode, load] of Object.entries(c.modes)) {
      const folder = join(home, `${c.model}.${mode}`);
      symlinkSync(c.path, folder);
      await admin("/admin/v1/import", "POST", { paths: [folder] });
      await admin(`/admin/v1/models/${c.model}.${mode}`, "PATCH", { load_defaults: load });
    }
  }
}

interface Run { tps: number; drafted: number; accepted: number; text: string }
async function once(model: string, prompt: string): Promise<Run> {
  const res = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt, max_tokens: tokens, temperature: 0, ignore_eos: true }),
  });
  if (!res.ok) throw new Error(`${model}: ${res.status} ${await res.text()}`);
  const r = (await res.json()) as { choices: { text: string }[]; timings: { predicted_per_second: number; draft_n?: number; draft_n_accepted?: number } };
  return { tps: r.timings.predicted_per_second, drafted: r.timings.draft_n ?? 0, accepted: r.timings.draft_n_accepted ?? 0, text: r.choices[0]!.text };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (xs: number[]) => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;

try {
  console.log(`threads ${threads}, ${reps} repetitions, ${tokens} tokens per request, temperature 0`);
  for (const c of cases) {
    const modes = Object.keys(c.modes);
    // Loads every mode and warms it up; the plain text is the reference.
    const reference = (await once(`${c.model}.off`, c.prompt)).text;
    for (const mode of modes) await once(`${c.model}.${mode}`, c.prompt);
    const runs: Record<string, Run[]> = Object.fromEntries(modes.map((m) => [m, []]));
    for (let rep = 0; rep < reps; rep++) {
      for (const mode of rep % 2 ? [...modes].reverse() : modes) {
        const r = await once(`${c.model}.${mode}`, c.prompt);
        if (r.text !== reference) throw new Error(`${c.model} ${mode}: the text differs from plain decoding`);
        runs[mode]!.push(r);
      }
    }
    const base = median(runs.off!.map((r) => r.tps));
    console.log(`\n${c.model}`);
    console.log("mode     decode tok/s median (min–max)   × off   drafted  accepted  acceptance");
    for (const mode of modes) {
      const rs = runs[mode]!;
      const drafted = median(rs.map((r) => r.drafted));
      const accepted = median(rs.map((r) => r.accepted));
      console.log(`${mode.padEnd(8)} ${fmt(rs.map((r) => r.tps)).padEnd(32)} ${(median(rs.map((r) => r.tps)) / base).toFixed(2).padStart(5)}  ${String(drafted).padStart(8)}  ${String(accepted).padStart(8)}  ${drafted ? `${((accepted / drafted) * 100).toFixed(0)}%` : "-"}`);
    }
  }
} finally {
  await server.stop();
  rmSync(home, { recursive: true, force: true });
}
