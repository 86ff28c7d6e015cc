// Per-token cost of the token path, as process CPU time per generated token (wall clock is noisy on
// shared cores; one thread makes CPU time the work itself): node-llama-cpp's bare evaluation loop
// (`sequence.evaluate`), its LlamaCompletion with an onToken callback (what LMX drives), LMX's
// server streaming /v1/completions, and the same-kernel llama-server. Each server's CPU time is read
// from /proc/PID/stat around one streamed request, so the client's own work is not in it; the
// JavaScript thread's share (the process's main thread) is shown apart, as it is the part that
// runs between two decodes on the thread pool and so adds to the wall time of every token.
//
//   bun bench/experiments/token-path.ts MODEL.gguf [--tokens N] [--reps R] [--lmx DIR ...] [--lmx-bin FILE ...]
//
// Every `--lmx DIR` is a checkout whose `src/cli/main.ts` is started, every `--lmx-bin FILE` a
// compiled `lmx` (or a main.ts); with neither, this checkout. `--lmx-home DIR` after one of them
// serves it from that LMX home, with the engine the home selects (one built by `lmx engine
// build`). Runs alternate in ABBA order across the servers and the bare loops.

import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { getLlama, LlamaCompletion, LlamaLogLevel, type Token, TokenBias } from "node-llama-cpp";
import { prompt, streamCompletion } from "../../src/throughput/probes.ts";
import { ensureReferenceServer, REPO_ROOT } from "../llama-build.ts";
import { type RunningServer, type ServerConfig, startLlamaServer, startLmx } from "../servers.ts";

const args = process.argv.slice(2);
const modelPath = args[0] ? resolve(args[0]) : undefined;
if (!modelPath) throw new Error("usage: bun bench/experiments/token-path.ts MODEL.gguf [--tokens N] [--reps R] [--lmx DIR ...] [--fa on|off]");
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i === -1 ? fallback : args[i + 1]!;
};
const tokens = Number(opt("--tokens", "512"));
const reps = Number(opt("--reps", "4"));
const fa = opt("--fa", "off") as "on" | "off";
/** The LMX home given right after the option at i (`--lmx-home DIR`), if any. */
const homeAfter = (i: number) => (args[i + 2] === "--lmx-home" ? resolve(args[i + 3]!) : undefined);
const checkouts = args.flatMap((a, i) => (a === "--lmx" ? [{ path: resolve(args[i + 1]!), home: homeAfter(i) }] : []));
const binaries = args.flatMap((a, i) => (a === "--lmx-bin" ? [{ path: resolve(args[i + 1]!), home: homeAfter(i) }] : []));
if (checkouts.length === 0 && binaries.length === 0) checkouts.push({ path: REPO_ROOT, home: undefined });

const TICK_MS = 10; // USER_HZ is 100 on Linux
/** CPU ms of a process, or of one of its threads (`/proc/PID/task/TID/stat`). */
function cpuMs(pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

const cfg: ServerConfig = { modelId: "m", modelPath, threads: 1, parallel: 8, ctx: 4096, flashAttention: fa };

interface Sample { cpuPerToken: number; jsPerToken: number; wallPerToken: number; ttft?: number }

async function serverRun(server: RunningServer, nonce: number): Promise<Sample> {
  const before = cpuMs(server.pid);
  const jsBefore = cpuMs(server.pid, server.pid);
  const t = await streamCompletion(server.endpoint, prompt(nonce, 8), tokens);
  const cpu = cpuMs(server.pid) - before;
  const js = cpuMs(server.pid, server.pid) - jsBefore;
  return { cpuPerToken: cpu / t.completionTokens, jsPerToken: js / t.completionTokens, wallPerToken: (t.endAt - t.firstAt) / (t.completionTokens - 1), ttft: t.ttftMs };
}

const llama = await getLlama({ gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 4096, sequences: 8, threads: { ideal: 1, min: 1 }, flashAttention: fa === "on" });
const seq = context.getSequence();
const noEog = new TokenBias(model.tokenizer);
const table = (noEog as unknown as { _biases: Map<number, number> })._biases;
const vocab = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly unknown[] } } }).tokenizer?.ggml?.tokens?.length ?? 0;
for (let t = 0; t < vocab; t++) if (model.isEogToken(t as Token)) table.set(t, -Infinity);

/** node-llama-cpp's own evaluation loop: evaluate, sample, feed the token back. */
async function bareLoop(nonce: number): Promise<Sample> {
  await seq.clearHistory();
  // The servers' prompt for this repetition, so prefill (inside the CPU time) is the same work.
  const promptTokens = model.tokenize(prompt(nonce, 8));
  const c0 = process.cpuUsage();
  const js0 = cpuMs(process.pid, process.pid);
  let n = 0;
  let first = 0;
  const t0 = performance.now();
  let ttft = 0;
  for await (const _ of seq.evaluate(promptTokens, { temperature: 0, tokenBias: noEog })) {
    if (n === 0) { first = performance.now(); ttft = first - t0; }
    if (++n >= tokens) break;
  }
  const wall = performance.now() - first;
  const c = process.cpuUsage(c0);
  return { cpuPerToken: (c.user + c.system) / 1000 / n, jsPerToken: (cpuMs(process.pid, process.pid) - js0) / n, wallPerToken: wall / (n - 1), ttft };
}

/** LlamaCompletion with onToken, as LMX's completion path calls it. */
async function completionLoop(nonce: number): Promise<Sample> {
  await seq.clearHistory();
  const promptTokens = model.tokenize(prompt(nonce, 8));
  const completion = new LlamaCompletion({ contextSequence: seq, autoDisposeSequence: false });
  const c0 = process.cpuUsage();
  const js0 = cpuMs(process.pid, process.pid);
  let first = 0;
  let n = 0;
  const t0 = performance.now();
  let ttft = 0;
  await completion.generateCompletionWithMeta(promptTokens, {
    maxTokens: tokens, temperature: 0, tokenBias: noEog, disableContextShift: true,
    onToken: (t) => { if (n === 0) { first = performance.now(); ttft = first - t0; } n += t.length; },
  });
  const wall = performance.now() - first;
  const c = process.cpuUsage(c0);
  completion.dispose({ disposeSequence: false });
  return { cpuPerToken: (c.user + c.system) / 1000 / n, jsPerToken: (cpuMs(process.pid, process.pid) - js0) / n, wallPerToken: wall / (n - 1), ttft };
}

const ref = await ensureReferenceServer();
const servers: { label: string; server: RunningServer }[] = [];
const homeLabel = (home: string | undefined) => (home === undefined ? "" : ` (home ${home})`);
for (const { path: dir, home } of checkouts) {
  const label = `lmx ${dir === REPO_ROOT ? "(this checkout)" : dir}${homeLabel(home)}`;
  servers.push({ label, server: await startLmx(cfg, { argv: ["bun", join(dir, "src/cli/main.ts")], home }) });
}
for (const { path: bin, home } of binaries) {
  servers.push({ label: `lmx ${bin}${homeLabel(home)}`, server: await startLmx(cfg, { argv: bin.endsWith(".ts") ? ["bun", bin] : [bin], home }) });
}
servers.push({ label: "llama-server", server: await startLlamaServer(cfg, ref) });
type Runner = { label: string; run: (nonce: number) => Promise<Sample> };
const runners: Runner[] = [
  { label: "bare evaluate", run: (n: number) => bareLoop(n) },
  { label: "LlamaCompletion", run: (n: number) => completionLoop(n) },
  ...servers.map(({ label, server }) => ({ label, run: (n: number) => serverRun(server, n) })),
];
const samples = new Map<string, Sample[]>();
let nonce = 1000;
try {
  for (const r of runners) await r.run(nonce++); // warm-up
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? runners : [...runners].reverse();
    for (const r of order) {
      const s = await r.run(nonce++);
      samples.set(r.label, [...(samples.get(r.label) ?? []), s]);
    }
  }
} finally {
  for (const { server } of servers) await server.stop();
}
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
console.log(`${modelPath}: ${tokens} tokens, ${reps} reps, 1 thread, fa ${fa}; load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
console.log("path".padEnd(44) + "CPU ms/token (min–max)      − bare, same rep   JS thread ms/token   wall ms/token   TTFT ms (medians)");
const bare = samples.get("bare evaluate")!;
for (const [label, xs] of samples) {
  const cpu = xs.map((x) => x.cpuPerToken);
  const overBare = median(xs.map((x, i) => x.cpuPerToken - bare[i]!.cpuPerToken));
  console.log(`${label.padEnd(44)}${median(cpu).toFixed(3).padStart(8)} (${Math.min(...cpu).toFixed(3)}–${Math.max(...cpu).toFixed(3)})  ${overBare.toFixed(3).padStart(10)}   ${median(xs.map((x) => x.jsPerToken)).toFixed(3).padStart(18)}   ${median(xs.map((x) => x.wallPerToken)).toFixed(3).padStart(12)}   ${median(xs.map((x) => x.ttft ?? NaN)).toFixed(2).padStart(8)}`);
}
await context.dispose();
await model.dispose();
await llama.dispose();
