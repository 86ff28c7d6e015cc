// Starting, timing and stopping the two servers under test as real processes on 127.0.0.1.

import type { Subprocess } from "bun";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { type Endpoint, httpEndpoint } from "../src/throughput/probes.ts";
import { CACHE_DIR, REPO_ROOT } from "./llama-build.ts";

export interface ServerConfig {
  modelId: string;
  modelPath: string;
  threads: number;
  parallel: number;
  /** Context tokens per parallel sequence (LMX's --ctx; llama-server gets ctx × parallel in total). */
  ctx: number;
  /** Given to both explicitly when set, so defaults that differ between the two cannot skew a ratio. */
  flashAttention?: "on" | "off";
}

export type ServerKind = "lmx" | "llama-server";

export interface RunningServer {
  kind: ServerKind;
  endpoint: Endpoint & { baseUrl: string };
  pid: number;
  /** Spawn → the HTTP port answers. */
  startupMs: number;
  /** The model load: LMX's admin load call; llama-server's /health turning from 503 to 200. */
  loadMs: number;
  /** RSS when /health first answered (LMX: no model loaded yet; llama-server: already loading). */
  readyRssMb: number;
  /** The command line, for the report. */
  command: string[];
  logFile: string;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** HTTP status of GET url, or 0 while nothing listens. */
async function status(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

async function waitFor(what: string, proc: Subprocess, logFile: string, until: () => Promise<boolean>, timeoutMs = 300_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what}: the process exited with ${proc.exitCode}; see ${logFile}:\n${tail(logFile)}`);
    if (await until()) return;
    await sleep(5);
  }
  throw new Error(`${what}: timed out; see ${logFile}`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "";
  }
}

function stopper(proc: Subprocess): () => Promise<void> {
  return async () => {
    if (proc.exitCode !== null) return;
    proc.kill("SIGTERM");
    const exited = await Promise.race([proc.exited.then(() => true), sleep(15_000).then(() => false)]);
    if (!exited) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  };
}

function logPath(kind: ServerKind): string {
  const dir = join(CACHE_DIR, "logs");
  mkdirSync(dir, { recursive: true });
  return join(dir, `${kind}-${process.pid}-${Date.now()}.log`);
}

export interface LmxLaunch {
  /** argv that runs the `lmx` CLI: ["bun", "src/cli/main.ts"] from source or ["dist/lmx"]. */
  argv: string[];
  /** More `lmx serve` options (e.g. `--peer NAME=URL`). */
  extraArgs?: string[];
  /**
   * An LMX home to serve from, with the engine it selects (one built by `lmx engine build`, say),
   * kept as it is; by default a fresh home for each server, removed when it stops.
   */
  home?: string;
}

export async function startLmx(cfg: ServerConfig, launch: LmxLaunch): Promise<RunningServer> {
  const port = await freePort();
  const home = launch.home ?? join(CACHE_DIR, "tmp", `lmx-home-${process.pid}-${port}`);
  if (launch.home === undefined) {
    rmSync(home, { recursive: true, force: true });
    mkdirSync(home, { recursive: true });
  }
  const command = [...launch.argv, "serve", "--host", "127.0.0.1", "--port", String(port), "--model", `${cfg.modelId}=${cfg.modelPath}`,
    "--threads", String(cfg.threads), "--parallel", String(cfg.parallel), "--ctx", String(cfg.ctx),
    ...(cfg.flashAttention === undefined ? [] : ["--flash-attention", cfg.flashAttention]), "--log-level", "warn", ...(launch.extraArgs ?? [])];
  const logFile = logPath("lmx");
  const spawnAt = performance.now();
  const proc = Bun.spawn(command, { cwd: REPO_ROOT, env: { ...process.env, LMX_HOME: home }, stdout: Bun.file(logFile), stderr: Bun.file(logFile + ".err") });
  const baseUrl = `http://127.0.0.1:${port}`;
  const stopProc = stopper(proc);
  try {
    await waitFor("lmx start", proc, logFile + ".err", async () => (await status(`${baseUrl}/health`)) === 200);
    const startupMs = performance.now() - spawnAt;
    const readyRssMb = rssMb(proc.pid);
    const loadStart = performance.now();
    const res = await fetch(`${baseUrl}/admin/v1/models/${encodeURIComponent(cfg.modelId)}/load`, {
      method: "POST", headers: { "content-type": "application/json" }, body: "{}",
    });
    if (!res.ok) throw new Error(`lmx: loading ${cfg.modelId} failed: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
    const loadMs = performance.now() - loadStart;
    return {
      kind: "lmx", endpoint: httpEndpoint("lmx", baseUrl, cfg.modelId), pid: proc.pid, startupMs, loadMs, readyRssMb, command, logFile,
      stop: async () => {
        await stopProc();
        if (launch.home === undefined) rmSync(home, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopProc();
    throw err;
  }
}

/**
 * Starts the reference llama-server in `cwd`: the engine folder, where ggml's backend loader (it
 * searches the executable's folder and the working directory) finds the libggml-cpu-* variants.
 */
export async function startLlamaServer(cfg: ServerConfig, binary: { server: string; cwd: string }, extraArgs: string[] = []): Promise<RunningServer> {
  const port = await freePort();
  const command = [binary.server, "-m", cfg.modelPath, "--alias", cfg.modelId, "--host", "127.0.0.1", "--port", String(port),
    "-t", String(cfg.threads), "-tb", String(cfg.threads), "-np", String(cfg.parallel), "-c", String(cfg.ctx * cfg.parallel),
    ...(cfg.flashAttention === undefined ? [] : ["-fa", cfg.flashAttention]), "--no-webui", ...extraArgs];
  const logFile = logPath("llama-server");
  const spawnAt = performance.now();
  const proc = Bun.spawn(command, { cwd: binary.cwd, stdout: Bun.file(logFile), stderr: Bun.file(logFile + ".err") });
  const baseUrl = `http://127.0.0.1:${port}`;
  const stopProc = stopper(proc);
  try {
    let first = 0;
    await waitFor("llama-server start", proc, logFile + ".err", async () => {
      first = await status(`${baseUrl}/health`);
      return first !== 0;
    });
    const startupMs = performance.now() - spawnAt;
    const readyRssMb = rssMb(proc.pid);
    if (first !== 200) await waitFor("llama-server model load", proc, logFile + ".err", async () => (await status(`${baseUrl}/health`)) === 200);
    const loadMs = performance.now() - spawnAt - startupMs;
    return { kind: "llama-server", endpoint: httpEndpoint("llama-server", baseUrl, cfg.modelId), pid: proc.pid, startupMs, loadMs, readyRssMb, command, logFile, stop: stopProc };
  } catch (err) {
    await stopProc();
    throw err;
  }
}

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // The process is gone or /proc is not Linux's.
  }
  return out;
}

function statusKb(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Resident memory of the process and its children, in MB (Linux /proc). */
export function rssMb(pid: number): number {
  let kb = statusKb(pid, "VmRSS");
  for (const child of children(pid)) kb += rssMb(child) * 1024;
  return kb / 1024;
}

/** Samples rssMb every `everyMs` while `work` runs; returns the work's result and the peak. */
export async function withPeakRss<T>(pid: number, work: () => Promise<T>, everyMs = 50): Promise<{ result: T; peakMb: number }> {
  let peak = rssMb(pid);
  const timer = setInterval(() => { peak = Math.max(peak, rssMb(pid)); }, everyMs);
  try {
    const result = await work();
    peak = Math.max(peak, rssMb(pid));
    return { result, peakMb: peak };
  } finally {
    clearInterval(timer);
  }
}
