// Crash isolation for model loads. llama.cpp answers some malformed models with GGML_ASSERT, i.e.
// abort() of the whole process, and src/gguf/ cannot know every such case in every architecture.
// So the first load of each file runs in a short-lived child process (this executable again)
// that loads the model with the server's settings, evaluates a short prompt and generates one
// token: if that child dies, only the request that asked for the model fails, and the server keeps
// serving. A file that passed or crashed is remembered by its identity (path, size, mtime, inode)
// for the life of the process; a pass is also kept across restarts, per engine version
// (load-records.ts).

import { type ChildProcess, spawn } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { EngineCrashedError, errorMessage, InvalidModelFileError, ModelLoadError } from "../../errors.ts";
import { log } from "../../log.ts";
import type { LlamaOptions } from "node-llama-cpp";
import { type FileVersion, fileVersion, type LoadRecords } from "./load-records.ts";
import { currentEngineVersion, loadNodeLlamaCpp, type NodeLlamaCpp } from "./loader.ts";

/** The hidden argument that makes the executable run a trial load (see src/cli/main.ts). */
export const TRIAL_LOAD_ARG = "__lmx-trial-load";
const STDERR_LINES = 12;
const TRIAL_PROMPT_TOKENS = 8;
/** The child's exit code when llama.cpp refused the model with an ordinary error. */
const CLEAN_FAILURE = 3;

export interface TrialLoadRequest {
  path: string;
  lmxHome: string;
  contextLength: number;
  gpuLayers?: number;
  embedding: boolean;
}

export interface TrialLoadOptions {
  /** Defaults to a minute plus a second per 100 MB of model. */
  timeoutMs?: number;
  records?: Pick<LoadRecords, "trialPassed" | "rememberTrial">;
}

const results = new Map<string, Promise<void>>();

// A server that exits (or is killed by a second signal) does not leave trial children behind.
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** How to start this executable (compiled) or this module (from source) as the trial child. */
function childCommand(req: TrialLoadRequest): string[] {
  const arg = JSON.stringify(req);
  // A compiled executable serves its own modules from a virtual folder another process cannot read.
  if (Bun.main.startsWith("/$bunfs/")) return [process.execPath, TRIAL_LOAD_ARG, arg];
  return [process.execPath, join(import.meta.dir, "trial-load.ts"), TRIAL_LOAD_ARG, arg];
}

/**
 * Runs one trial load in a child process; rejects with what killed it. Resolves true when it
 * passed, false when llama.cpp refused the model with an ordinary error (the real load reports it).
 */
export function trialLoadInChild(req: TrialLoadRequest, opts: TrialLoadOptions = {}): Promise<boolean> {
  const timeoutMs = opts.timeoutMs ?? 60_000 + Math.ceil(statSync(req.path).size / 100e6) * 1000;
  const [cmd, ...args] = childCommand(req);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, args, { stdio: ["ignore", "ignore", "pipe"], env: process.env });
    running.add(child);
    child.once("exit", () => running.delete(child));
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      // Only the tail matters; keep the buffer bounded whatever the child prints.
      stderr = (stderr + chunk.toString("utf8")).slice(-16_384);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new ModelLoadError(`cannot start the trial load of ${req.path}: ${errorMessage(err)}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const ms = Math.round(performance.now() - started);
      const outcome = trialOutcome(req.path, { code, signal, timedOut, timeoutMs, stderr });
      if (typeof outcome === "boolean") {
        log.info(outcome ? "trial load passed" : "trial load failed cleanly", { path: req.path, ms });
        resolve(outcome);
      } else {
        if (outcome instanceof InvalidModelFileError || outcome instanceof EngineCrashedError) log.warn("trial load crashed", { path: req.path, how: signal ?? `code ${code}`, ms });
        reject(outcome);
      }
    });
  });
}

/**
 * What a finished trial child means: true (passed), false (failed cleanly, left to the real load),
 * or the error the load fails with.
 */
export function trialOutcome(
  path: string,
  end: { code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; timeoutMs: number; stderr: string },
): boolean | ModelLoadError {
  const { code, signal } = end;
  const tail = withoutBunCrashReport(end.stderr).trim().split("\n").slice(-STDERR_LINES).join("\n");
  // A clean failure (an exception, not an abort) is left to the real load, which reports it in
  // full (e.g. an unknown architecture) and cannot take the process down with it.
  if (code === 0 || code === CLEAN_FAILURE) return code === 0;
  if (end.timedOut) {
    return new ModelLoadError(`loading ${path} took longer than ${Math.round(end.timeoutMs / 1000)} s in the trial process and was stopped${tail ? `; its last output:\n${tail}` : ""}`, "model_load_timeout");
  }
  // The kernel's OOM killer, or someone else: not evidence against the file, so not remembered.
  if (signal === "SIGKILL") return new ModelLoadError(`the trial load of ${path} was killed by SIGKILL (out of memory?)${tail ? `; its last output:\n${tail}` : ""}`);
  if (signal === "SIGILL") {
    // A file cannot choose which instructions run: the engine holds code this CPU cannot execute
    // (a build for another CPU, or a miscompiled kernel such as AMX's under GCC 12 without -fno-dse).
    return new EngineCrashedError(
      `loading ${path} crashed the llama.cpp engine with an illegal instruction (SIGILL): the engine in use has code this CPU cannot run for this model's weights, which is not the file's fault. "lmx engine list" shows the installed engines and "lmx engine use VERSION" switches to another${tail ? `. Last output:\n${tail}` : ""}`,
    );
  }
  if (signal !== null || (code ?? 0) >= 128) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    return new InvalidModelFileError(`loading ${path} crashed llama.cpp (the trial process ${how}); the model file is broken or not supported${tail ? `. Last output:\n${tail}` : ""}`);
  }
  // Not the file's fault as far as we can tell (the trial itself could not run).
  return new ModelLoadError(`the trial load of ${path} exited with code ${code}${tail ? `: ${tail}` : ""}`);
}

/**
 * The child's output without Bun's crash report, which would fill the error's last lines with the
 * process's vitals and a request to report a bug in Bun; its one line that says what happened
 * ("panic: Illegal instruction at address …") is kept.
 */
export function withoutBunCrashReport(text: string): string {
  const lines = text.split("\n");
  const start = lines.findIndex((line) => /^={20,}$/.test(line));
  const panic = lines.findIndex((line, i) => i > start && /^panic\b/.test(line));
  if (start < 0 || panic < 0) return text;
  const link = lines.findIndex((line, i) => i > panic && line.includes("bun.report/"));
  return [...lines.slice(0, start), lines[panic]!, ...lines.slice(link < 0 ? lines.length : link + 1)].join("\n");
}

/** Whether the records say the file passed; records that cannot be read only cost a trial. */
function recordedPass(records: TrialLoadOptions["records"], file: FileVersion, engine: string): boolean {
  try {
    return records?.trialPassed(file, engine) ?? false;
  } catch (err) {
    log.warn("cannot read the trial load records", { path: file.path, error: errorMessage(err) });
    return false;
  }
}

/**
 * Resolves once the file has passed a trial load in this process's lifetime (running one if not).
 * A crash is remembered too, so requests for a broken model do not each start a process; a
 * changed file (another size, mtime or inode) or a retry after a timeout gets a new trial.
 */
export function ensureTrialLoaded(req: TrialLoadRequest, opts: TrialLoadOptions = {}): Promise<void> {
  const file = fileVersion(req.path);
  const key = `${file.path}\0${file.size}\0${file.mtimeMs}\0${file.inode}`;
  let hit = results.get(key);
  if (!hit) {
    const { records } = opts;
    // The engine the trial child would load: a pass with another engine proves nothing.
    const engine = records ? currentEngineVersion(req.lmxHome) : "";
    if (recordedPass(records, file, engine)) {
      hit = Promise.resolve();
    } else {
      const trial = trialLoadInChild(req, opts);
      trial.then((passed) => {
        try {
          if (passed) records?.rememberTrial(file, engine);
        } catch (err) {
          log.warn("cannot record a passed trial load", { path: req.path, error: errorMessage(err) });
        }
      }, (err: unknown) => {
        // A crash is remembered (the same engine would crash again); anything else gets a retry.
        if (!(err instanceof InvalidModelFileError) && !(err instanceof EngineCrashedError)) results.delete(key);
      });
      hit = trial.then(() => undefined);
    }
    results.set(key, hit);
  }
  return hit;
}

/**
 * How a checking child process (trial load, built-engine verify) opens llama.cpp: the engine's
 * backend choice, no build, and its log on stderr, which the parent keeps for its error message.
 */
export function childLlamaOptions(nlc: NodeLlamaCpp): LlamaOptions {
  return {
    gpu: process.platform === "darwin" ? "auto" : false,
    build: "never",
    maxThreads: 0,
    logLevel: nlc.LlamaLogLevel.error,
    logger: (_level: unknown, message: string) => process.stderr.write(message.endsWith("\n") ? message : message + "\n"),
  };
}

/**
 * The trial's prompt: `word` repeated to several tokens, within the context with room for the one
 * generated. ggml multiplies a batch of rows with other kernels than a single row (AMX tiles,
 * repacked GEMM: `M == 1` skips AMX), and a kernel that faults on this CPU must fault in the
 * trial, not in the server at the first real prompt.
 */
export function trialPrompt<T>(word: readonly T[], contextLength: number): T[] {
  const length = Math.max(1, Math.min(TRIAL_PROMPT_TOKENS, contextLength - 2));
  return Array.from({ length }, (_, i) => word[i % word.length]!);
}

/** The child's side: load, evaluate a short prompt and one token, exit 0. A native abort ends the process before that. */
async function runTrialLoad(req: TrialLoadRequest): Promise<void> {
  const nlc = await loadNodeLlamaCpp(req.lmxHome);
  const llama = await nlc.getLlama(childLlamaOptions(nlc));
  const model = await llama.loadModel({ modelPath: req.path, gpuLayers: req.gpuLayers ?? (llama.gpu ? "auto" : 0) });
  const threads = { ideal: 1, min: 1 };
  if (req.embedding) {
    const ctx = await model.createEmbeddingContext({ contextSize: Math.min(req.contextLength, 512), threads: 1 });
    await ctx.getEmbeddingFor("hello");
    return;
  }
  const ctx = await model.createContext({ contextSize: req.contextLength, sequences: 1, threads });
  const tokens = model.tokenize("Hello");
  const bos = model.tokens.bos;
  const word = tokens.length > 0 ? tokens : bos !== null ? [bos] : [];
  if (word.length === 0) throw new Error("the model's vocabulary cannot encode any text");
  for await (const token of ctx.getSequence().evaluate(trialPrompt(word, req.contextLength))) {
    void token;
    break;
  }
}

/** Entry point for the child: true when `argv` asked for a trial load (which then ends the process). */
export async function runTrialLoadChild(argv: readonly string[]): Promise<boolean> {
  const at = argv.indexOf(TRIAL_LOAD_ARG);
  if (at < 0 || at > 2) return false;
  let req: TrialLoadRequest;
  try {
    req = JSON.parse(argv[at + 1] ?? "") as TrialLoadRequest;
  } catch (err) {
    process.stderr.write(`bad trial load request: ${errorMessage(err)}\n`);
    process.exit(1);
  }
  try {
    await runTrialLoad(req);
    process.exit(0);
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    process.exit(CLEAN_FAILURE);
  }
}

if (import.meta.main) void runTrialLoadChild(process.argv);
