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
import { ArchitectureAnswer, SelfTest } from "../engines/mlx/protocol.ts";
import { writeWorkerScript, WORKER_HASH } from "../engines/mlx/worker-source.ts";
import { errorMessage, RuntimeBusyError, RuntimeInstallError, RuntimeNotInstalledError } from "../errors.ts";
import { log } from "../log.ts";
import type { Db } from "../store/db.ts";
import { runtimes } from "../store/schema.ts";
import { locateUv, type UvLocation } from "./uv.ts";
import { otherEnvs, readEnvRecord, writeEnvRecord } from "./mlx-envs.ts";
import { describeSpec } from "./package-spec.ts";
import { run } from "./run-command.ts";
import { MANAGED_PYTHON, type MlxChoice, mlxRequirements, PINNED, PYTHON_MAX, PYTHON_MIN } from "./versions.ts";

export const INSTALL_COMMAND = "lmx runtime install mlx";

export type InstallStep = "uv" | "python" | "venv" | "packages" | "verify" | "record" | "done";

export interface InstallProgress {
  step: InstallStep;
  message: string;
}

export interface InstallOptions {
  /** Base interpreter for the environment instead of the one uv picks. */
  python?: string;
  /** Versions instead of the pins (update only). */
  choice?: MlxChoice;
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
  /** What the user asked for instead of the pins (e.g. {"mlx-lm": "git+https://…@main"}); empty for the pins. */
  requested: Record<string, string>;
  upToDate: boolean;
  device: string | null;
  /** Milliseconds since the epoch. */
  installedAt: number | null;
  updatedAt: number | null;
  verifiedAt: number | null;
  /** Hash of the embedded worker program. */
  worker: string;
  /** The verified environment a rollback would switch to. */
  previous: { path: string; packages: Record<string, string>; requested: Record<string, string> } | null;
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

  private get envsDir(): string {
    return join(this.dir, "envs");
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
        packages: {}, requested: {}, upToDate: true, device: null, installedAt: null, updatedAt: null, verifiedAt: null, previous: null,
      };
    }
    const row = this.row();
    const present = row !== undefined && existsSync(row.pythonPath);
    const previous = otherEnvs(this.envsDir, row?.path)[0];
    return {
      ...base,
      installed: present,
      source: row ? "managed" : null,
      path: row?.path ?? null,
      python: row ? { path: row.pythonPath, version: row.pythonVersion } : null,
      packages: row?.packages ?? {},
      requested: (row && readEnvRecord(row.path)?.requested) ?? {},
      previous: previous ? { path: previous.path, packages: previous.record.packages, requested: previous.record.requested } : null,
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
      const existed = existsSync(this.envsDir);
      rmSync(this.envsDir, { recursive: true, force: true });
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

  /**
   * What to tell someone whose model's architecture the active mlx-lm lacks: which runtimes are
   * installed, whether any of them knows it, and the command that gets one that does.
   */
  async unsupportedArchitectureHint(architecture: string): Promise<string> {
    if (this.opts.python) {
      return `The mlx-lm of the Python the python setting names (${this.opts.python}) has no model class for "${architecture}". ` +
        "Upgrade mlx-lm in that environment, or remove the setting and install one that has it: 'lmx runtime update mlx --mlx-lm VERSION|git+URL@REF'.";
    }
    const row = this.row();
    const active = `mlx-lm ${row?.packages["mlx-lm"] ?? "?"}`;
    const others = otherEnvs(this.envsDir, row?.path).slice(0, 4);
    const answers = await Promise.all(others.map(async (e) => {
      try {
        const out = await run([e.record.pythonPath, writeWorkerScript(e.path), "--knows-architecture", architecture.slice(0, 100)], this.uvEnv(), undefined, 60_000);
        return { env: e, known: v.parse(ArchitectureAnswer, JSON.parse(out.trim().split("\n").at(-1) ?? "")).known };
      } catch {
        return { env: e, known: false };
      }
    }));
    const knowing = answers.find((a) => a.known);
    const installed = answers.map((a) => `mlx-lm ${a.env.record.packages["mlx-lm"]} (previous, ${a.known ? "knows it" : "does not know it either"})`);
    const lines = [`The active MLX runtime (${active}) has no model class for "${architecture}".`];
    if (installed.length > 0) lines.push(`Also installed: ${installed.join("; ")}.`);
    lines.push(knowing
      ? "Switch to it with 'lmx runtime rollback mlx' (POST /admin/v1/runtimes/mlx/rollback)."
      : "Install an mlx-lm that has it: a newer release with 'lmx runtime update mlx --mlx-lm VERSION', or the day its support merges " +
        "with 'lmx runtime update mlx --mlx-lm git+https://github.com/ml-explore/mlx-lm@main' (POST /admin/v1/runtimes/mlx/update {\"mlx_lm\": …}).");
    return lines.join(" ");
  }

  /** Switches back to the previous verified environment, once it passes the check again. */
  rollback(opts: Pick<InstallOptions, "onProgress"> = {}): Promise<RuntimeStatus> {
    return this.exclusive(async () => {
      const row = this.row();
      const previous = otherEnvs(this.envsDir, row?.path)[0];
      if (!previous) throw new RuntimeInstallError("there is no previous MLX runtime to roll back to (one is kept after each successful update)");
      const { record } = previous;
      opts.onProgress?.({ step: "verify", message: `checking ${previous.path} (mlx ${record.packages.mlx}, mlx-lm ${record.packages["mlx-lm"]})` });
      const test = await this.selfTest(record.pythonPath, previous.path, this.uvEnv());
      for (const name of ["mlx", "mlx-lm"] as const) {
        const found = name === "mlx" ? test.mlx : test.mlx_lm;
        if (found !== record.packages[name]) {
          throw new RuntimeInstallError(`the previous MLX runtime at ${previous.path} changed since it was checked: ${name} ${found ?? "(missing)"} instead of ${record.packages[name]}`);
        }
      }
      const now = Date.now();
      this.record(previous.path, record, row?.installedAt ?? now, now);
      opts.onProgress?.({ step: "done", message: `switched back to mlx ${record.packages.mlx}, mlx-lm ${record.packages["mlx-lm"]}` });
      log.info("mlx runtime rolled back", { path: previous.path, from: row?.path });
      return this.status();
    });
  }

  private record(path: string, r: { pythonPath: string; pythonVersion: string; packages: Record<string, string>; uvVersion: string | null; device: string | null }, installedAt: number, now: number): void {
    const row = {
      name: "mlx", path, pythonPath: r.pythonPath, pythonVersion: r.pythonVersion, packages: r.packages, uvVersion: r.uvVersion, device: r.device,
      installedAt, updatedAt: now, verifiedAt: now,
    };
    this.db.insert(runtimes).values(row).onConflictDoUpdate({ target: runtimes.name, set: row }).run();
  }

  /** Imports mlx and mlx-lm in `python` and generates a few tokens. */
  private async selfTest(python: string, folder: string, env: Record<string, string | undefined>): Promise<SelfTest> {
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
    return test;
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
    const choice = opts.choice ?? {};
    const requested: Record<string, string> = {};
    if (choice.mlx) requested.mlx = describeSpec(choice.mlx);
    if (choice.mlxLm) requested["mlx-lm"] = describeSpec(choice.mlxLm);
    // Versions the check must find: the pins, a chosen version, or (from git) whatever it builds.
    const expected: Record<string, string | undefined> = {
      mlx: choice.mlx ? (choice.mlx.kind === "version" ? choice.mlx.version : undefined) : PINNED.mlx,
      "mlx-lm": choice.mlxLm ? (choice.mlxLm.kind === "version" ? choice.mlxLm.version : undefined) : PINNED["mlx-lm"],
    };
    mkdirSync(this.envsDir, { recursive: true });
    const folder = join(this.envsDir, `${expected["mlx-lm"] ?? "git"}-${Date.now()}`);
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
        throw new RuntimeInstallError(`Python ${version} is not supported by mlx: use ${PYTHON_MIN.join(".")} up to (not including) ${PYTHON_MAX.join(".")}`);
      }
      progress("python", `Python ${version}`);
      const reqs = mlxRequirements(process.platform, choice);
      progress("packages", `installing ${reqs.join(" ")}`);
      await run([uv.path, "pip", "install", "--python", python, ...reqs], env, (l) => progress("packages", l));
      progress("verify", "checking the runtime: importing mlx and mlx-lm and generating a few tokens");
      const test = await this.selfTest(python, folder, env);
      const packages = { mlx: test.mlx ?? "", "mlx-lm": test.mlx_lm ?? "" };
      for (const [name, found] of Object.entries(packages)) {
        const want = expected[name];
        if (!found || (want !== undefined && found !== want)) throw new RuntimeInstallError(`${name} ${found || "(missing)"} was installed, expected ${want ?? "a version"}`);
      }
      progress("verify", `ok: generated ${test.tokens.length} tokens on ${test.device} in ${Math.round(test.ms)} ms`);
      const now = Date.now();
      const previous = this.row();
      const record = { pythonPath: python, pythonVersion: test.python, packages, requested, device: test.device, uvVersion: uv.version, verifiedAt: now };
      writeEnvRecord(folder, record);
      this.record(folder, record, previous?.installedAt ?? now, now);
      progress("record", `recorded mlx ${packages.mlx}, mlx-lm ${packages["mlx-lm"]}, Python ${test.python}`);
      // The previous folder stays (workers started from it keep running, and a rollback returns to it); older ones go.
      for (const name of readdirSync(this.envsDir)) {
        const path = join(this.envsDir, name);
        if (path !== folder && path !== previous?.path) rmSync(path, { recursive: true, force: true });
      }
      log.info("mlx runtime installed", { path: folder, python: test.python, mlx: packages.mlx, mlx_lm: packages["mlx-lm"], requested, ms: Math.round(performance.now() - started) });
      progress("done", `the MLX runtime is ready (${Math.round((performance.now() - started) / 1000)} s)`);
    } catch (err) {
      rmSync(folder, { recursive: true, force: true });
      if (err instanceof RuntimeInstallError) throw err;
      throw new RuntimeInstallError(`installing the MLX runtime failed: ${errorMessage(err)}`);
    }
  }
}
