// Real coding agents from npm, for end-to-end tests against LMX: installed once per checkout into
// <repo>/.cache/agent-clis/<package>@<version> (each ships a native binary of ~350 MB through an
// optional per-platform package, so they are not dev dependencies every `npm ci` would fetch).

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../fixtures/prepare.ts";

const HOME = join(REPO_ROOT, ".cache", "agent-clis");

export interface AgentCli {
  /** The package name on npm. */
  name: string;
  version: string;
  /** Its executable, as npm linked it. */
  bin: string;
}

function npmInstall(dir: string, spec: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("npm", ["install", "--prefix", dir, "--no-audit", "--no-fund", "--no-save", "--loglevel", "error", spec], { stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`npm install ${spec} failed (${signal ?? `exit ${code}`})`))));
  });
}

/** The agent's executable, installed from npm the first time (a minute or so; nothing after). */
export async function ensureAgentCli(name: string, version: string, bin: string): Promise<AgentCli> {
  const dir = join(HOME, `${name.replace("/", "__")}@${version}`);
  const path = join(dir, "node_modules", ".bin", bin);
  if (!existsSync(path)) {
    // A half-finished install from a killed run is started over.
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    await npmInstall(dir, `${name}@${version}`);
    if (!existsSync(path)) throw new Error(`npm installed ${name}@${version} but ${path} is missing`);
  }
  return { name, version, bin: path };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs an agent to completion (or kills it at `timeoutMs`) without blocking the event loop, which serves LMX in this process. */
export function runAgent(bin: string, args: string[], opts: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
