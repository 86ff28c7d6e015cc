// The MLX runtime: an isolated Python environment with pinned mlx and mlx-lm that LMX creates,
// checks, records and removes by itself (the user never makes a virtualenv).
//
//   $LMX_HOME/runtimes/
//     mlx/envs/<mlx-lm version>-<time>/   one install: venv/ (the environment), the worker script
//     python/                             CPython builds uv installs (macOS: always used)
//     bin/uv-<version>                    uv unpacked from the lmx executable
//     cache/                              uv's download cache (unless UV_CACHE_DIR is set)
//
// SQLite (table `runtimes`) names the folder in use. An install or update builds a new folder,
// checks it (imports, tiny generation) and only then records it, so a failed update leaves the
// previous runtime in place and working.

import { eq } from "drizzle-orm";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { SelfTest } from "../engines/mlx/protocol.ts";
import { writeWorkerScript, WORKER_HASH } from "../engines/mlx/worker-source.ts";
import { errorMessage, RuntimeBusyError, RuntimeInstallError, RuntimeNotInstalledError } from "../errors.ts";
import { log } from "../log.ts";
import type { Db } from "../store/db.ts";
import { runtimes } from "../store/schema.ts";
import { locateUv, type UvLocation } from "./uv.ts";
import { MANAGED_PYTHON, MLX_LM_VERSION, mlxRequirements, PINNED, PYTHON_MAX, PYTHON_MIN } from "./versions.ts";

export const INSTALL_COMMAND = "lmx runtime install mlx";

export type InstallStep = "uv" | "python" | "venv" | "packages" | "verify" | "record" | "done";

export interface InstallProgress {
  step: InstallStep;
  message: string;
}

export interface InstallOptions {
  /** Base interpreter for the environment instead of the one uv picks. */
  python?: string;
  onProgress?: (p: InstallProgress) => void;
}

export interface ResolvedRuntime {
  python: string;
  worker: string;
  source: "managed" | "external";
}

export interface RuntimeStatus {
  name: "mlx";
  installed: boolean;
  /** managed: the environment LMX installed; external: the interpreter the `python` setting names. */
  source: "managed" | "external" | null;
  path: string | null;
  python: { path: string; version: string | null } | null;
  packages: Record<string, string>;
  pinned: Record<string, string>;
  upToDate: boolean;
  device: string | null;
  /** Milliseconds since the epoch. */
  installedAt: number | null;
  updatedAt: number | null;
  verifiedAt: number | null;
  /** Hash of the embedded worker program. */
  worker: string;
  installCommand: string;
}

export interface MlxRuntimeOptions {
  /** An existing interpreter that already has mlx-lm (the `python` setting): used as is, nothing installed. */
  python?: string;
  /** Install the runtime on first use instead of answering runtime_not_installed. */
  autoInstall?: boolean;
  /** Extra environment for uv (UV_CACHE_DIR, UV_INDEX_URL, UV_OFFLINE, UV_FIND_LINKS, …). */
  env?: Record<string, string | undefined>;
  /** True while MLX models are loaded (removal waits for them to be unloaded). */
  inUse?: () => boolean;
  /** Seconds the post-install check may take (imports are slow on a cold disk). */
  verifyTimeoutSeconds?: number;
}

type Row = typeof runtimes.$inferSelect;


/** Runs a command, streaming its stderr lines to `onLine`; resolves with stdout, rejects with the tail of stderr. */
async function run(argv: string[], env: Record<string, string | undefined>, onLine?: (line: string) => void, timeoutMs?: number): Promise<string> {
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env });
  const timer = timeoutMs ? setTimeout(() => proc.kill("SIGKILL"), timeoutMs) : undefined;
  const tail: string[] = [];
  const readErr = (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stderr) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.search(/[\r\n]/)) !== -1) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        onLine?.(line);
      }
    }
    if (buf.trim()) { tail.push(buf.trim()); onLine?.(buf.trim()); }
  })();
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited, readErr]);
  if (timer) clearTimeout(timer);
  if (code !== 0) {
    const why = proc.signalCode ? `was killed (${proc.signalCode}${timeoutMs ? `, time limit ${Math.round(timeoutMs / 1000)} s` : ""})` : `exited with ${code}`;
    throw new RuntimeInstallError(`${argv.slice(0, 3).join(" ")} ${why}: ${tail.slice(-8).join(" | ") || "(no output)"}`);
  }
  return stdout;
}

export class MlxRuntime {
  private op: Promise<unknown> = Promise.resolve();
  private autoInstalling: Promise<ResolvedRuntime> | undefined;

  constructor(private readonly db: Db, private readonly home: string, private readonly opts: MlxRuntimeOptions = {}) {}

  get runtimesDir(): string {
    return join(this.home, "runtimes");
  }

  get dir(): string {
    return join(this.runtimesDir, "mlx");
  }

  private row(): Row | undefined {
    return this.db.select().from(runtimes).where(eq(runtimes.name, "mlx")).get();
  }

  /** One install, update or removal at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.op.then(fn);
    this.op = next.catch(() => undefined);
    return next;
  }

  status(): RuntimeStatus {
    const base = { name: "mlx" as const, pinned: { ...PINNED }, worker: WORKER_HASH, installCommand: INSTALL_COMMAND };
    if (this.opts.python) {
      return {
        ...base, installed: existsSync(this.opts.python), source: "external", path: null, python: { path: this.opts.python, version: null },
        packages: {}, upToDate: true, device: null, installedAt: null, updatedAt: null, verifiedAt: null,
      };
    }
    const row = this.row();
    const present = row !== undefined && existsSync(row.pythonPath);
    return {
      ...base,
      installed: present,
      source: row ? "managed" : null,
      path: row?.path ?? null,
      python: row ? { path: row.pythonPath, version: row.pythonVersion } : null,
      packages: row?.packages ?? {},
      upToDate: row !== undefined && Object.entries(PINNED).every(([k, ver]) => row.packages[k] === ver),
      device: row?.device ?? null,
      installedAt: row?.installedAt || null,
      updatedAt: row?.updatedAt || null,
      verifiedAt: row?.verifiedAt || null,
    };
  }

  /** A short description for `Engine.version()`. */
  describe(): string {
    const s = this.status();
    if (!s.installed) return "mlx runtime not installed";
    if (s.source === "external") return `mlx (external python ${s.python?.path})`;
    return `mlx ${s.packages.mlx ?? "?"}, mlx-lm ${s.packages["mlx-lm"] ?? "?"}, python ${s.python?.version ?? "?"}`;
  }

  /** The interpreter and worker script to run, installing first when auto-install is on. */
  async resolve(): Promise<ResolvedRuntime> {
    if (this.opts.python) {
      if (!existsSync(this.opts.python)) {
        throw new RuntimeNotInstalledError(`the configured Python for MLX (${this.opts.python}) does not exist; fix the python setting or remove it to use the managed runtime (${INSTALL_COMMAND})`);
      }
      return { python: this.opts.python, worker: writeWorkerScript(join(this.dir, "external-worker")), source: "external" };
    }
    const row = this.row();
    if (row && existsSync(row.pythonPath)) return { python: row.pythonPath, worker: writeWorkerScript(row.path), source: "managed" };
    if (!this.opts.autoInstall) {
      throw new RuntimeNotInstalledError(
        row
          ? `the MLX runtime at ${row.path} is missing files; reinstall it with 'lmx runtime update mlx' (or POST /admin/v1/runtimes/mlx/update)`
          : `MLX models need the MLX runtime, which is not installed. Install it with '${INSTALL_COMMAND}' (or POST /admin/v1/runtimes/mlx/install), ` +
            "or start the server with --auto-install-runtimes to install it on first use.");
    }
    this.autoInstalling ??= (async () => {
      log.info("installing the MLX runtime on first use (--auto-install-runtimes)");
      await this.install({ onProgress: (p) => log.info(`mlx runtime: ${p.message}`, { step: p.step }) });
      const now = this.row();
      if (!now) throw new RuntimeInstallError("the MLX runtime install finished without a record");
      return { python: now.pythonPath, worker: writeWorkerScript(now.path), source: "managed" as const };
    })().finally(() => { this.autoInstalling = undefined; });
    return this.autoInstalling;
  }

  /** Installs the pinned runtime unless a working one is recorded already. */
  install(opts: InstallOptions = {}): Promise<RuntimeStatus> {
    return this.exclusive(async () => {
      const row = this.row();
      if (row && existsSync(row.pythonPath)) {
        opts.onProgress?.({ step: "done", message: `the MLX runtime is already installed at ${row.path} (use 'lmx runtime update mlx' to reinstall)` });
        return this.status();
      }
      await this.build(opts);
      return this.status();
    });
  }

  /** Builds a fresh environment with this lmx's pins and switches to it once it passes the check. */
  update(opts: InstallOptions = {}): Promise<RuntimeStatus> {
    return this.exclusive(async () => {
      await this.build(opts);
      return this.status();
    });
  }

  remove(): Promise<{ removed: boolean; path: string | null }> {
    return this.exclusive(async () => {
      if (this.opts.inUse?.()) throw new RuntimeBusyError("MLX models are loaded; unload them before removing the MLX runtime");
      const row = this.row();
      this.db.delete(runtimes).where(eq(runtimes.name, "mlx")).run();
      const envs = join(this.dir, "envs");
      const existed = existsSync(envs);
      rmSync(envs, { recursive: true, force: true });
      log.info("mlx runtime removed", { path: row?.path });
      return { removed: row !== undefined || existed, path: row?.path ?? null };
    });
  }

  private uvEnv(): Record<string, string | undefined> {
    return {
      ...process.env,
      UV_CACHE_DIR: process.env.UV_CACHE_DIR ?? join(this.runtimesDir, "cache"),
      UV_PYTHON_INSTALL_DIR: join(this.runtimesDir, "python"),
      // No project files or virtualenvs of the caller's working directory may leak in.
      VIRTUAL_ENV: undefined,
      UV_NO_PROGRESS: "1",
      NO_COLOR: "1",
      ...this.opts.env,
    };
  }

  private async build(opts: InstallOptions): Promise<void> {
    const progress = (step: InstallStep, message: string) => {
      log.debug("mlx runtime install", { step, message });
      opts.onProgress?.({ step, message });
    };
    const started = performance.now();
    let uv: UvLocation;
    try {
      uv = await locateUv(this.runtimesDir);
    } catch (err) {
      throw err instanceof RuntimeInstallError ? err : new RuntimeInstallError(`cannot get uv: ${errorMessage(err)}`);
    }
    progress("uv", `using uv ${uv.version} (${uv.source}: ${uv.path})`);
    const env = this.uvEnv();
    const envs = join(this.dir, "envs");
    mkdirSync(envs, { recursive: true });
    const folder = join(envs, `${MLX_LM_VERSION}-${Date.now()}`);
    const venv = join(folder, "venv");
    const python = join(venv, "bin", "python");
    try {
      let pythonArgs: string[];
      if (opts.python) {
        pythonArgs = ["--python", opts.python];
      } else if (process.platform === "darwin") {
        // /usr/bin/python3 on a Mac without developer tools is a stub that opens an install dialog.
        progress("python", `installing CPython ${MANAGED_PYTHON} with uv`);
        await run([uv.path, "python", "install", MANAGED_PYTHON], env, (l) => progress("python", l));
        pythonArgs = ["--python", MANAGED_PYTHON, "--python-preference", "only-managed"];
      } else {
        pythonArgs = ["--python", `>=${PYTHON_MIN.join(".")},<${PYTHON_MAX.join(".")}`, "--python-preference", "system"];
      }
      progress("venv", `creating the environment in ${venv}`);
      await run([uv.path, "venv", "--no-project", ...pythonArgs, venv], env, (l) => progress("venv", l));
      const version = (await run([python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"], env)).trim();
      const [major = 0, minor = 0] = version.split(".").map(Number);
      const tooOld = major < PYTHON_MIN[0] || (major === PYTHON_MIN[0] && minor < PYTHON_MIN[1]);
      const tooNew = major > PYTHON_MAX[0] || (major === PYTHON_MAX[0] && minor >= PYTHON_MAX[1]);
      if (tooOld || tooNew) {
        throw new RuntimeInstallError(`Python ${version} is not supported by mlx ${PINNED.mlx}: use ${PYTHON_MIN.join(".")} up to (not including) ${PYTHON_MAX.join(".")}`);
      }
      progress("python", `Python ${version}`);
      const reqs = mlxRequirements();
      progress("packages", `installing ${reqs.join(" ")}`);
      await run([uv.path, "pip", "install", "--python", python, ...reqs], env, (l) => progress("packages", l));
      progress("verify", "checking the runtime: importing mlx and mlx-lm and generating a few tokens");
      const worker = writeWorkerScript(folder);
      const out = await run([python, worker, "--self-test"], env, (l) => log.debug(`mlx self-test: ${l}`), (this.opts.verifyTimeoutSeconds ?? 300) * 1000);
      const line = out.trim().split("\n").at(-1) ?? "";
      let test: SelfTest;
      try {
        test = v.parse(SelfTest, JSON.parse(line));
      } catch {
        throw new RuntimeInstallError(`the runtime check printed no result: ${line.slice(0, 300)}`);
      }
      if (!test.ok) throw new RuntimeInstallError("the runtime check generated no tokens");
      const packages = { mlx: test.mlx ?? "", "mlx-lm": test.mlx_lm ?? "" };
      for (const [name, want] of Object.entries(PINNED)) {
        if (packages[name as keyof typeof packages] !== want) throw new RuntimeInstallError(`${name} ${packages[name as keyof typeof packages] || "(missing)"} was installed, expected ${want}`);
      }
      progress("verify", `ok: generated ${test.tokens.length} tokens on ${test.device} in ${Math.round(test.ms)} ms`);
      const now = Date.now();
      const previous = this.row();
      const row = {
        name: "mlx", path: folder, pythonPath: python, pythonVersion: test.python, packages, uvVersion: uv.version, device: test.device,
        installedAt: previous?.installedAt ?? now, updatedAt: now, verifiedAt: now,
      };
      this.db.insert(runtimes).values(row).onConflictDoUpdate({ target: runtimes.name, set: row }).run();
      progress("record", `recorded mlx ${packages.mlx}, mlx-lm ${packages["mlx-lm"]}, Python ${test.python}`);
      // The previous folder stays (workers started from it keep running); older ones go.
      for (const name of readdirSync(envs)) {
        const path = join(envs, name);
        if (path !== folder && path !== previous?.path) rmSync(path, { recursive: true, force: true });
      }
      log.info("mlx runtime installed", { path: folder, python: test.python, mlx: packages.mlx, mlx_lm: packages["mlx-lm"], ms: Math.round(performance.now() - started) });
      progress("done", `the MLX runtime is ready (${Math.round((performance.now() - started) / 1000)} s)`);
    } catch (err) {
      rmSync(folder, { recursive: true, force: true });
      if (err instanceof RuntimeInstallError) throw err;
      throw new RuntimeInstallError(`installing the MLX runtime failed: ${errorMessage(err)}`);
    }
  }
}
