// Checks a freshly built engine bundle before it may be registered: in a child process (a native
// crash must not take the caller down, and one process cannot hold two engines), import the
// bundle's node-llama-cpp, load a small model, generate a few tokens, and report which llama.cpp
// commit the binaries were compiled from. The commit comes from the binary itself: ggml exports
// ggml_commit(), which CMake fills with `git rev-parse --short HEAD` of the source it compiled.

import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { errorMessage } from "../../errors.ts";
import type { NodeLlamaCpp } from "./loader.ts";
import { childLlamaOptions } from "./trial-load.ts";

/** The hidden argument that makes the executable run a verification (see src/cli/main.ts). */
export const VERIFY_BUILD_ARG = "__lmx-engine-verify";

export interface VerifyRequest {
  /** Engine folder (holds node_modules/node-llama-cpp). */
  dir: string;
  modelPath: string;
  maxTokens: number;
}

export interface VerifyReport {
  /** What ggml_commit() of the bundle's libggml-base returns, e.g. "1a2b3c4" or "1a2b3c4-dirty". */
  commit: string;
  /** node-llama-cpp's record of the release the loaded binaries were built as. */
  release: string;
  buildType: string;
  systemInfo: string;
  text: string;
  tokens: number;
}

const REPORT_PREFIX = "LMX_VERIFY_REPORT ";

/** The native library that exports ggml_commit(), in the bundle's binary package. */
export function findGgmlBase(dir: string): string | undefined {
  const scope = join(dir, "node_modules", "@node-llama-cpp");
  if (!existsSync(scope)) return undefined;
  const name = process.platform === "darwin" ? "libggml-base.dylib" : process.platform === "win32" ? "ggml-base.dll" : "libggml-base.so";
  for (const pkg of readdirSync(scope)) {
    const bins = join(scope, pkg, "bins");
    if (!existsSync(bins)) continue;
    for (const variant of readdirSync(bins)) {
      const path = join(bins, variant, name);
      if (existsSync(path)) return path;
    }
  }
  return undefined;
}

function childCommand(req: VerifyRequest): string[] {
  const arg = JSON.stringify(req);
  // A compiled executable serves its own modules from a virtual folder another process cannot read.
  if (Bun.main.startsWith("/$bunfs/")) return [process.execPath, VERIFY_BUILD_ARG, arg];
  return [process.execPath, join(import.meta.dir, "build-verify.ts"), VERIFY_BUILD_ARG, arg];
}

/** Runs the verification in a child; resolves with its report or rejects with what went wrong. */
export function verifyBuiltEngine(req: VerifyRequest, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<VerifyReport> {
  const [cmd, ...args] = childCommand(req);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe"], env: process.env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout = (stdout + chunk.toString("utf8")).slice(-65_536);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-16_384);
    });
    const stop = (): void => void child.kill("SIGKILL");
    const timer = setTimeout(stop, opts.timeoutMs ?? 180_000);
    opts.signal?.addEventListener("abort", stop, { once: true });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start the verification process: ${errorMessage(err)}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", stop);
      const line = stdout.split("\n").find((l) => l.startsWith(REPORT_PREFIX));
      const tail = stderr.trim().split("\n").slice(-12).join("\n");
      if (code === 0 && line !== undefined) {
        try {
          resolve(JSON.parse(line.slice(REPORT_PREFIX.length)) as VerifyReport);
          return;
        } catch (err) {
          reject(new Error(`the verification process answered garbage: ${errorMessage(err)}`));
          return;
        }
      }
      const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
      reject(new Error(`the built engine failed its check (the process ${how})${tail ? `:\n${tail}` : ""}`));
    });
  });
}

/** The child's side. */
async function runVerify(req: VerifyRequest): Promise<VerifyReport> {
  const nlc = (await import(pathToFileURL(join(req.dir, "node_modules", "node-llama-cpp", "dist", "index.js")).href)) as NodeLlamaCpp;
  const llama = await nlc.getLlama(childLlamaOptions(nlc));
  const model = await llama.loadModel({ modelPath: req.modelPath, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 256, sequences: 1, threads: { ideal: 1, min: 1 } });
  const completion = new nlc.LlamaCompletion({ contextSequence: context.getSequence() });
  let tokens = 0;
  const text = await completion.generateCompletion("Once upon a time", {
    maxTokens: req.maxTokens,
    temperature: 0,
    onToken: (chunk) => {
      tokens += chunk.length;
    },
  });
  if (tokens === 0) throw new Error("the model generated no tokens");

  const library = findGgmlBase(req.dir);
  if (library === undefined) throw new Error(`no libggml-base in ${req.dir}: cannot read the commit the binaries were built from`);
  const { dlopen, FFIType } = await import("bun:ffi");
  const ggml = dlopen(library, { ggml_commit: { args: [], returns: FFIType.cstring } });
  const commit = String(ggml.symbols.ggml_commit());
  return { commit, release: llama.llamaCppRelease.release, buildType: llama.buildType, systemInfo: llama.systemInfo, text, tokens };
}

/** Entry point for the child: true when `argv` asked for a verification (which then ends the process). */
export async function runVerifyChild(argv: readonly string[]): Promise<boolean> {
  const at = argv.indexOf(VERIFY_BUILD_ARG);
  if (at < 0 || at > 2) return false;
  try {
    const req = JSON.parse(argv[at + 1] ?? "") as VerifyRequest;
    const report = await runVerify(req);
    // Exit only once the report is out: a pipe may not take it all in one write.
    await new Promise<void>((resolve) => process.stdout.write(`${REPORT_PREFIX}${JSON.stringify(report)}\n`, () => resolve()));
    process.exit(0);
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    process.exit(3);
  }
}

if (import.meta.main) void runVerifyChild(process.argv);
