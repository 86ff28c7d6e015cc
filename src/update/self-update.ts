// `lmx update`: replaces the running executable with a newer signed release, or puts the previous
// one back. The order of operations is what makes it safe:
//
//   1. the manifest's signature is checked against the keys built into this executable;
//   2. the archive is downloaded to a temp file beside the executable (same file system, so the
//      final rename is atomic) and must have exactly the manifest's size and SHA-256;
//   3. only then is the new `lmx` unpacked and run with `--version` (the smoke test);
//   4. the current executable is hard-linked to `lmx.old`, and the new one renamed over `lmx`.
//
// Any failure before step 4 removes the temp files and leaves the installed binary as it was; at
// every moment of step 4 the path `lmx` holds a complete, runnable executable.

import { randomBytes } from "node:crypto";
import { constants, existsSync, realpathSync } from "node:fs";
import { access, chmod, copyFile, link, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { UpdateError } from "../errors.ts";
import { readTarGz } from "../util/tar.ts";
import { downloadVerified } from "./download.ts";
import { type AppRelease, type Artifact, artifactUrl, fetchManifest, type VerifiedManifest } from "./manifest.ts";
import { compareVersions } from "../engines/llama/selection.ts";
import type { PublicKeyInfo } from "./signing.ts";

const SMOKE_TEST_TIMEOUT_MS = 60_000;
const TEMP_PREFIXES = [".lmx-update-", ".lmx-new-", ".lmx-prev-"];

export interface SelfUpdateContext {
  lmxHome: string;
  baseUrl: string;
  keys: readonly PublicKeyInfo[];
  /** The installed executable to replace. */
  executable: string;
  currentVersion: string;
  target: string;
}

/** Whether this process is a compiled lmx executable (as opposed to `bun src/cli/main.ts`). */
export function isCompiledExecutable(): boolean {
  // Bun serves a compiled executable's own modules from this virtual folder.
  return Bun.main.startsWith("/$bunfs/");
}

/** The real path of the running executable; refuses when running from source. */
export function runningExecutable(): string {
  if (!isCompiledExecutable()) {
    throw new UpdateError("lmx is running from source (bun src/cli/main.ts); update the checkout instead of the executable");
  }
  return realpathSync(process.execPath);
}

export function previousPath(executable: string): string {
  return join(dirname(executable), `${basename(executable)}.old`);
}

export interface UpdatePlan {
  verified: VerifiedManifest;
  release: AppRelease;
  artifact: Artifact;
  /** >0 newer than the running version, 0 the same, <0 older. */
  direction: number;
}

/** Fetches and verifies the manifest and picks the release: `version` if given, else the channel's latest. */
export async function planUpdate(ctx: SelfUpdateContext, choice: { version?: string; channel: string }): Promise<UpdatePlan> {
  const verified = await fetchManifest(ctx.baseUrl, ctx.keys, ctx.lmxHome);
  const { manifest } = verified;
  let version = choice.version;
  if (version === undefined) {
    version = manifest.latest[choice.channel];
    if (version === undefined) {
      throw new UpdateError(`no release on channel "${choice.channel}" (channels: ${Object.keys(manifest.latest).join(", ") || "none"})`);
    }
  }
  const release = manifest.releases[version];
  if (release === undefined) {
    const known = Object.keys(manifest.releases).sort(compareVersions).reverse().slice(0, 10).join(", ");
    throw new UpdateError(`lmx ${version} is not published (recent: ${known || "none"})`);
  }
  const artifact = release.platforms[ctx.target];
  if (artifact === undefined) {
    throw new UpdateError(`lmx ${version} has no build for ${ctx.target} (built for ${Object.keys(release.platforms).join(", ")})`);
  }
  return { verified, release, artifact, direction: compareVersions(release.version, ctx.currentVersion) };
}

/** Runs `<path> --version` and returns the version it prints; an UpdateError if it does not work. */
export async function smokeTest(path: string, lmxHome: string): Promise<string> {
  let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  try {
    proc = Bun.spawn([path, "--version"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, LMX_HOME: lmxHome },
      timeout: SMOKE_TEST_TIMEOUT_MS,
    });
  } catch (err) {
    throw new UpdateError(`smoke test failed: cannot run ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const version = /^lmx (\S+)\s*$/.exec(stdout.trim())?.[1];
  if (code !== 0 || version === undefined) {
    const output = `${stdout}${stderr}`.trim().split("\n").slice(-5).join("\n");
    throw new UpdateError(`smoke test failed: "${basename(path)} --version" exited with ${proc.signalCode ?? code}${output ? `:\n${output}` : ""}`);
  }
  return version;
}

function tempName(dir: string, prefix: string): string {
  return join(dir, `${prefix}${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** Removes temp files of updates that crashed (older than an hour, so never a running one's). */
async function removeStaleTemps(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!TEMP_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info !== undefined && Date.now() - info.mtimeMs > 3_600_000) await rm(path, { force: true });
  }
}

/** The executable file inside a release archive, written to `dest` with mode 0755. */
async function unpackExecutable(archive: string, dest: string): Promise<void> {
  for await (const entry of readTarGz(Bun.file(archive))) {
    if (entry.type !== "file" || entry.path.replace(/^\.\//, "") !== "lmx") continue;
    await writeFile(dest, entry.data, { mode: 0o700, flag: "wx" });
    await chmod(dest, 0o755);
    return;
  }
  throw new UpdateError("the release archive holds no lmx executable");
}

/** Keeps the current executable as `lmx.old` (hard link where possible) without ever removing `lmx`. */
async function keepPrevious(executable: string, dir: string): Promise<void> {
  const temp = tempName(dir, ".lmx-prev-");
  try {
    await link(executable, temp);
  } catch {
    await copyFile(executable, temp);
    await chmod(temp, 0o755);
  }
  await rename(temp, previousPath(executable));
}

async function assertWritable(dir: string): Promise<void> {
  try {
    await access(dir, constants.W_OK);
  } catch {
    throw new UpdateError(`cannot write to ${dir}; run the update as the user that installed lmx`);
  }
}

/** Downloads, verifies, smoke-tests and installs `plan`; returns the installed version. */
export async function applyUpdate(ctx: SelfUpdateContext, plan: UpdatePlan): Promise<string> {
  const dir = dirname(ctx.executable);
  await assertWritable(dir);
  await removeStaleTemps(dir);
  const archive = tempName(dir, ".lmx-update-");
  const fresh = tempName(dir, ".lmx-new-");
  try {
    await downloadVerified(artifactUrl(plan.verified.baseUrl, plan.artifact), archive, plan.artifact);
    await unpackExecutable(archive, fresh);
    const reported = await smokeTest(fresh, ctx.lmxHome);
    if (reported !== plan.release.version) {
      throw new UpdateError(`smoke test failed: the downloaded executable reports version ${reported}, the manifest says ${plan.release.version}`);
    }
    await keepPrevious(ctx.executable, dir);
    await rename(fresh, ctx.executable);
    return reported;
  } finally {
    await rm(archive, { force: true });
    await rm(fresh, { force: true });
  }
}

/** Swaps `lmx` and `lmx.old` after smoke-testing the old one; returns the version now installed. */
export async function rollback(ctx: Pick<SelfUpdateContext, "executable" | "lmxHome">): Promise<{ from: string; to: string }> {
  const previous = previousPath(ctx.executable);
  if (!existsSync(previous)) throw new UpdateError(`there is no previous version to roll back to (${previous} does not exist)`);
  const dir = dirname(ctx.executable);
  await assertWritable(dir);
  const to = await smokeTest(previous, ctx.lmxHome);
  const from = await smokeTest(ctx.executable, ctx.lmxHome).catch(() => "unknown");
  const temp = tempName(dir, ".lmx-prev-");
  try {
    await link(ctx.executable, temp).catch(async () => {
      await copyFile(ctx.executable, temp);
      await chmod(temp, 0o755);
    });
    await rename(previous, ctx.executable);
    await rename(temp, previous);
  } finally {
    await rm(temp, { force: true });
  }
  return { from, to };
}
