// node-llama-cpp's addon (llama-addon.node) compiled from its patched source
// (patches/node-llama-cpp+3.21.1.patch) against the shared libraries of the prebuilt engine
// package. The patch's C++ half (a lone stream's token decoded and sampled in one call; runs of
// tokens for every stream of a context generated without returning to JavaScript) lives in the
// addon alone, so this is the only file that has to be compiled for LMX to have it: llama.cpp's
// libraries and kernels stay the prebuilt package's. About 20 s on two cores; cached under
// .cache/llama-addon/ by its inputs.
//
// The addon replaces the prebuilt one in the engine bundle (scripts/build.ts) and, for runs from
// source and the tests, in node_modules (scripts/llama-addon.ts install; the prebuilt one is kept
// beside it as llama-addon.prebuilt.node).

import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { hostTarget } from "../../src/engines/llama/platform.ts";
import { type EngineLibs, ensureLlamaSource, nodeLlamaCppDir, sha256File } from "./llama-source.ts";

export const ADDON_FILE = "llama-addon.node";
/** The prebuilt addon, kept beside ours in node_modules so that `restore` can put it back. */
export const PREBUILT_ADDON_FILE = "llama-addon.prebuilt.node";
/** Methods the patch adds to the addon's context; their names are in a compiled addon's strings. */
export const ADDON_METHODS = ["decodeBatchAndSampleToken", "generateTokenRuns"] as const;

const OVERLAY = resolve(import.meta.dir, "..", "..", "native", "llama-addon");

export interface AddonBuild {
  /** The compiled llama-addon.node (in the cache). */
  path: string;
  /** Hash of everything the build read. */
  key: string;
  cached: boolean;
}

/** Why the addon cannot be compiled here for `target`, or undefined when it can. */
export function addonBuildBlocker(root: string, target: string = hostTarget()): string | undefined {
  if (target !== hostTarget()) return `the addon for ${target} has to be compiled on ${target} (this is ${hostTarget()})`;
  if (process.platform !== "linux" && process.platform !== "darwin") return `compiling the addon is supported on Linux and macOS, not ${process.platform}`;
  const missing = ["git", "cmake"].filter((tool) => Bun.which(tool) === null);
  if (Bun.which(process.env.CXX ?? "c++") === null && Bun.which("g++") === null && Bun.which("clang++") === null) missing.push("a C++ compiler");
  if (missing.length > 0) return `${missing.join(", ")} not found`;
  if (!addonSourceIsPatched(root)) return "node-llama-cpp's addon source lacks LMX's patch (run npm ci, which applies patches/)";
  return undefined;
}

function addonSourceIsPatched(root: string): boolean {
  const file = join(nodeLlamaCppDir(root), "llama", "addon", "AddonContext.cpp");
  if (!existsSync(file)) return false;
  const source = readFileSync(file, "utf8");
  return ADDON_METHODS.every((m) => source.includes(`"${m}"`));
}

function addonSources(root: string): string[] {
  const dir = join(nodeLlamaCppDir(root), "llama", "addon");
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  return walk(dir).sort();
}

/**
 * Compiles the addon against `libs` (cached by every input: the addon's sources, the overlay, the
 * libraries, the llama.cpp commit and the compiler), then checks it: it asks no newer C or C++
 * runtime than the prebuilt addon does, loads beside those libraries, and has the patch's methods.
 */
export async function buildLlamaAddon(root: string, libs: EngineLibs, log: (msg: string) => void): Promise<AddonBuild> {
  const blocker = addonBuildBlocker(root);
  if (blocker !== undefined) throw new Error(blocker);
  const source = ensureLlamaSource(root, join(root, ".cache"), log);
  const hash = createHash("sha256");
  const addonDir = join(nodeLlamaCppDir(root), "llama");
  for (const file of addonSources(root)) hash.update(file.slice(addonDir.length)).update(readFileSync(file));
  hash.update(readFileSync(join(OVERLAY, "CMakeLists.txt")));
  for (const lib of [libs.llamaLib, libs.ggmlLib, libraryName("libllama-common"), libraryName("libggml-base")]) hash.update(lib).update(sha256File(join(libs.dir, lib)));
  hash.update(`${source.commit} ${process.env.CXX ?? ""} ${process.env.CXXFLAGS ?? ""}`);
  const key = hash.digest("hex");
  const outDir = join(root, ".cache", "llama-addon", key.slice(0, 16));
  const path = join(outDir, ADDON_FILE);
  if (existsSync(path)) return { path, key, cached: true };

  const build = join(outDir, "build");
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  log(`compiling node-llama-cpp's addon against ${libs.packageName}@${libs.packageVersion}'s libraries (llama.cpp ${source.release}, ${source.commit.slice(0, 12)})`);
  const generator = Bun.which("ninja") ? ["-G", "Ninja"] : [];
  await runLogged(["cmake", "-S", OVERLAY, "-B", build, ...generator, "-DCMAKE_BUILD_TYPE=Release",
    `-DADDON_SRC=${addonDir}`, `-DLLAMA_SRC=${source.dir}`, `-DENGINE_LIBS=${libs.dir}`, `-DLLAMA_LIB=${libs.llamaLib}`, `-DGGML_LIB=${libs.ggmlLib}`,
    `-DNODE_API_INC=${packageDir(root, "node-api-headers", "include")}`, `-DNODE_ADDON_API_INC=${packageDir(root, "node-addon-api")}`], outDir);
  await runLogged(["cmake", "--build", build, "-j", "2"], outDir);
  const built = join(build, ADDON_FILE);
  checkRuntimeVersions(built, libs.dir);
  checkLoads(built, libs.dir);
  // Last, so an interrupted or failed build is never taken for a cached one.
  copyFileSync(built, `${path}.tmp`);
  renameSync(`${path}.tmp`, path);
  rmSync(build, { recursive: true, force: true });
  return { path, key, cached: false };
}

function libraryName(stem: string): string {
  return `${stem}${process.platform === "darwin" ? ".dylib" : ".so"}`;
}

/** A package folder as node-llama-cpp's own build resolves it (from node-llama-cpp's folder). */
function packageDir(root: string, name: string, sub?: string): string {
  const dir = resolve(Bun.resolveSync(`${name}/package.json`, nodeLlamaCppDir(root)), "..");
  return sub === undefined ? dir : join(dir, sub);
}

/** Runs a build step at lower priority; its output is shown only when it fails. */
async function runLogged(cmd: string[], cwd: string): Promise<void> {
  const niced = Bun.which("nice") ? ["nice", "-n", "10", ...cmd] : cmd;
  const proc = Bun.spawn(niced, { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed with exit code ${code}:\n${(out + err).slice(-4000)}`);
}

/**
 * The newest version of each runtime symbol family (GLIBC, GLIBCXX, CXXABI) an ELF binary names.
 * The version names sit in its dynamic string table, so a scan of the bytes finds them all.
 */
export function runtimeVersions(bytes: Uint8Array): Map<string, string> {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  const newest = new Map<string, string>();
  for (const m of text.matchAll(/\b(GLIBCXX|GLIBC|CXXABI)_(\d+(?:\.\d+)+)\b/g)) {
    const [, family, version] = m as unknown as [string, string, string];
    const known = newest.get(family);
    if (known === undefined || compareDotted(version, known) > 0) newest.set(family, version);
  }
  return newest;
}

function compareDotted(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** What `ours` needs beyond `reference` ("GLIBCXX_3.4.30 (the prebuilt addon needs 3.4.29)"). */
export function newerRuntimeNeeds(ours: Uint8Array, reference: Uint8Array): string[] {
  const theirs = runtimeVersions(reference);
  return [...runtimeVersions(ours)].flatMap(([family, version]) => {
    const limit = theirs.get(family);
    if (limit !== undefined && compareDotted(version, limit) <= 0) return [];
    return [`${family}_${version} (the prebuilt addon needs ${limit === undefined ? `no ${family}` : limit})`];
  });
}

/**
 * A compiled addon must run wherever the prebuilt one does: one that asks a newer glibc or
 * libstdc++ than the prebuilt (a newer build machine) would fail to load on older systems.
 */
function checkRuntimeVersions(built: string, libsDir: string): void {
  if (process.platform !== "linux") return;
  const kept = join(libsDir, PREBUILT_ADDON_FILE);
  const prebuilt = existsSync(kept) ? kept : join(libsDir, ADDON_FILE);
  if (!existsSync(prebuilt) || hasPatchMethods(prebuilt)) throw new Error(`${libsDir} holds no prebuilt addon to compare the compiled one with; reinstall the package (npm ci)`);
  const newer = newerRuntimeNeeds(readFileSync(built), readFileSync(prebuilt));
  if (newer.length > 0) {
    throw new Error(`the compiled addon needs a newer C/C++ runtime than node-llama-cpp's prebuilt one: ${newer.join(", ")}; build on an older system (the prebuilt packages are built on Ubuntu 22.04)`);
  }
}

/** Loads the addon in a child process, beside the prebuilt libraries, and looks for the patch's methods. */
function checkLoads(addon: string, libsDir: string): void {
  const probe = `const a = require(${JSON.stringify(addon)}); const p = a.AddonContext && a.AddonContext.prototype;
const missing = ${JSON.stringify(ADDON_METHODS)}.filter((m) => !p || typeof p[m] !== "function");
if (missing.length) { console.error("missing " + missing.join(", ")); process.exit(3); }`;
  const pathVar = process.platform === "darwin" ? "DYLD_LIBRARY_PATH" : "LD_LIBRARY_PATH";
  const res = Bun.spawnSync([process.execPath, "-e", probe], { env: { ...process.env, [pathVar]: libsDir }, stdout: "pipe", stderr: "pipe" });
  if (res.exitCode !== 0) throw new Error(`the compiled addon does not load beside ${libsDir}: ${(res.stderr.toString() || res.stdout.toString()).trim().slice(-2000)}`);
}

/** Whether an addon file is one compiled with the patch (its strings name the patch's methods). */
export function hasPatchMethods(addon: string): boolean {
  const text = readFileSync(addon).toString("latin1");
  return ADDON_METHODS.every((m) => text.includes(m));
}

/**
 * Puts `addon` in place of the prebuilt addon in `binsDir`, keeping the prebuilt one beside it
 * (once: a second install does not take ours for the prebuilt). Returns false when it was there.
 */
export function installLlamaAddon(addon: string, binsDir: string): boolean {
  const target = join(binsDir, ADDON_FILE);
  const kept = join(binsDir, PREBUILT_ADDON_FILE);
  if (existsSync(target) && sha256File(target) === sha256File(addon)) return false;
  if (!existsSync(kept)) {
    if (!existsSync(target)) throw new Error(`${binsDir} has no ${ADDON_FILE} to keep`);
    if (hasPatchMethods(target)) throw new Error(`${target} is not node-llama-cpp's prebuilt addon and none is kept beside it; reinstall the package (npm ci)`);
    copyFileSync(target, kept);
  }
  copyFileSync(addon, `${target}.tmp`);
  renameSync(`${target}.tmp`, target);
  return true;
}

/** Puts the kept prebuilt addon back; false when there is none to put back. */
export function restoreLlamaAddon(binsDir: string): boolean {
  const kept = join(binsDir, PREBUILT_ADDON_FILE);
  if (!existsSync(kept)) return false;
  const target = join(binsDir, ADDON_FILE);
  copyFileSync(kept, `${target}.tmp`);
  renameSync(`${target}.tmp`, target);
  rmSync(kept);
  return true;
}

/** For reports: which addon a bins folder holds. */
export function addonKind(binsDir: string): "lmx" | "prebuilt" | "missing" {
  const file = join(binsDir, ADDON_FILE);
  if (!existsSync(file)) return "missing";
  return hasPatchMethods(file) ? "lmx" : "prebuilt";
}
