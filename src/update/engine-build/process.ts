// Runs the build's commands (git, node-llama-cpp's build) with their output copied to the build
// log and a progress parser, in their own process group so a cancel reaches every descendant.

import { type ChildProcess, spawn } from "node:child_process";
import type { WriteStream } from "node:fs";
import { basename } from "node:path";
import { errorMessage } from "../../errors.ts";
import { EngineBuildCancelled, EngineBuildError } from "./errors.ts";
import type { BuildOutputParser } from "./progress.ts";

export interface RunOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  log: WriteStream;
  signal?: AbortSignal;
  parser?: BuildOutputParser;
}

/**
 * Runs a command in its own process group (a build is npm → cmake → ninja → compilers; a cancel
 * must reach all of them), copying its output to the log and the parser.
 */
export function runLogged(cmd: string, args: string[], options: RunOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(new EngineBuildCancelled("cancelled"));
    options.log.write(`$ ${[cmd, ...args].join(" ")}\n`);
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    } catch (err) {
      return reject(new EngineBuildError(`cannot run ${cmd}: ${errorMessage(err)}`));
    }
    const onData = (chunk: Buffer): void => {
      options.log.write(chunk);
      options.parser?.feed(chunk.toString("utf8"));
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    const kill = (): void => {
      killGroup(child, "SIGTERM");
      killTimer = setTimeout(() => killGroup(child, "SIGKILL"), 5000);
    };
    options.signal?.addEventListener("abort", kill, { once: true });
    // A build that outlives its parent would keep writing into a folder that is being deleted.
    const onExit = (): void => killGroup(child, "SIGKILL");
    process.once("exit", onExit);
    child.on("error", (err) => reject(new EngineBuildError(`cannot run ${cmd}: ${errorMessage(err)}`)));
    child.on("close", (code, signal) => {
      clearTimeout(killTimer);
      options.signal?.removeEventListener("abort", kill);
      process.removeListener("exit", onExit);
      options.parser?.end();
      if (options.signal?.aborted) return reject(new EngineBuildCancelled("cancelled"));
      if (code === 0) return resolve();
      reject(new EngineBuildError(`${basename(cmd)} ${signal !== null ? `was killed by ${signal}` : `exited with code ${code}`}`));
    });
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}
