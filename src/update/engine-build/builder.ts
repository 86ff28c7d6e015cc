// `lmx engine build REF`: a llama.cpp engine bundle compiled on this machine from any release tag,
// commit, branch or pull request. Everything happens in a dot-folder beside the installed engines
// (which `lmx engine list` never shows): copy the base bundle (this lmx's node-llama-cpp with its
// build tooling), fetch the source with git into the place node-llama-cpp builds from, run
// node-llama-cpp's own source build, swap the compiled binaries in for the prebuilt ones, verify
// in a child process, then rename the folder into place. Only that last rename makes the engine
// exist, so a failure or a signal at any earlier point leaves nothing but the log behind, and the
// selected engine is never touched (`lmx engine use` switches, as for downloaded engines).

import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, readdirSync, readFileSync, type WriteStream } from "node:fs";
import { cp, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { removeStaleFolders } from "../../util/stale-folders.ts";
import { basename, join } from "node:path";
import { errorMessage } from "../../errors.ts";
import { ARCH_SOURCE, parseArchitectureNames } from "../../engines/llama/architectures.ts";
import { ENGINE_MARKER_FILE, type EngineMarker, engineDir } from "../../engines/llama/bundle.ts";
import { verifyBuiltEngine, type VerifyReport } from "../../engines/llama/build-verify.ts";
import { llamaPlatform } from "../../engines/llama/platform.ts";
import { enginesRoot, installedEngine } from "../../engines/llama/selection.ts";
import { BUILD_INFO_FILE, type BuildInfo } from "./built.ts";
import { type CompilerProbe, compilerWorkarounds, hostCompilerProbe, withFlags } from "./compiler-workarounds.ts";
import { hostProbe, missingPrerequisites, type PrerequisiteProbe, prerequisitesMessage } from "./prereqs.ts";
import { EngineBuildCancelled, EngineBuildError } from "./errors.ts";
import { fetchSource } from "./fetch.ts";
import { runLogged } from "./process.ts";
import { BuildOutputParser, type PhaseProgress } from "./progress.ts";
import { type BuildRef, builtEngineVersion } from "./ref.ts";

export interface EngineBuildOptions {
  lmxHome: string;
  ref: BuildRef;
  repo: string;
  /** A complete engine folder whose node-llama-cpp carries its build tooling (the embedded bundle). */
  baseDir: string;
  target: string;
  /** A small GGUF the new engine must load and generate with before it is registered. */
  verifyModel: string;
  /** "all": the prebuilt bundle's backend choices; "native": this CPU only, much faster to build. */
  cpu: "all" | "native";
  signal?: AbortSignal;
  onProgress?: (p: PhaseProgress) => void;
  /** Called once the log file is open, before any work starts. */
  onLog?: (path: string) => void;
  probe?: PrerequisiteProbe;
  /** The compiler the build will run, for its known bugs (compiler-workarounds.ts); the host's when absent. */
  compiler?: CompilerProbe;
}

export interface BuiltEngine {
  version: string;
  dir: string;
  info: BuildInfo;
  report: VerifyReport;
  logPath: string;
  /** The same ref and commit was built before; that engine is kept and nothing was compiled. */
  existed: boolean;
}

const TEMP_PREFIX = ".build-";
const STALE_AFTER_MS = 10 * 60 * 1000;

export function buildLogPath(lmxHome: string, ref: BuildRef): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  return join(lmxHome, "logs", `engine-build-${stamp}-${ref.label || ref.ref.slice(0, 10)}.log`);
}

export async function buildEngine(options: EngineBuildOptions): Promise<BuiltEngine> {
  const { ref, signal } = options;
  const logPath = buildLogPath(options.lmxHome, ref);
  await mkdir(join(options.lmxHome, "logs"), { recursive: true });
  const log = createWriteStream(logPath, { flags: "a" });
  options.onLog?.(logPath);
  const note = (line: string): void => void log.write(`[${new Date().toISOString()}] ${line}\n`);
  let lastPhase: string | undefined;
  const progress = (p: PhaseProgress): void => {
    // The log marks where each phase starts; the percentages are in the tool output around it.
    if (p.phase !== lastPhase) note(`phase ${p.phase}`);
    lastPhase = p.phase;
    options.onProgress?.(p);
  };
  const root = enginesRoot(options.lmxHome);
  const temp = join(root, `${TEMP_PREFIX}${process.pid}-${randomBytes(4).toString("hex")}`);
  note(`lmx engine build ${ref.ref} from ${options.repo} (cpu: ${options.cpu}), base ${options.baseDir}`);
  try {
    progress({ phase: "prepare", percent: null });
    const missing = missingPrerequisites(options.probe ?? hostProbe());
    if (missing.length > 0) throw new EngineBuildError(prerequisitesMessage(missing));
    if (!existsSync(options.verifyModel)) throw new EngineBuildError(`the model to verify the build with does not exist: ${options.verifyModel}`);
    const nlcVersion = readVersion(join(options.baseDir, "node_modules", "node-llama-cpp"));
    if (!existsSync(join(options.baseDir, "node_modules", "node-llama-cpp", "llama", "CMakeLists.txt"))) {
      throw new EngineBuildError(`the engine in ${options.baseDir} carries no build tooling (llama/CMakeLists.txt); update lmx to build engines`);
    }
    await mkdir(root, { recursive: true });
    await removeStaleBuilds(root);
    checkAborted(signal);
    await cp(options.baseDir, temp, { recursive: true, verbatimSymlinks: true, filter: (src) => ![ENGINE_MARKER_FILE, BUILD_INFO_FILE].includes(basename(src)) });

    const nlcDir = join(temp, "node_modules", "node-llama-cpp");
    const sourceDir = join(nlcDir, "llama", "llama.cpp");
    progress({ phase: "fetch", percent: null });
    const commit = await fetchSource({ repo: options.repo, ref, dir: sourceDir, log, signal, onProgress: progress });
    const version = builtEngineVersion(nlcVersion, ref, commit);
    note(`fetched ${commit}; engine version ${version}`);
    const existing = installedEngine(options.lmxHome, version, options.target);
    if (existing !== undefined) {
      const info = readInfo(existing.dir);
      if (info !== undefined) {
        note("already built; nothing to do");
        await rm(temp, { recursive: true, force: true });
        return { version, dir: existing.dir, info: info.info, report: info.report, logPath, existed: true };
      }
    }
    const architectures = parseArchitectureNames(await readFile(join(sourceDir, ARCH_SOURCE), "utf8"));
    const tag = version.slice(version.indexOf("+") + 1);
    // node-llama-cpp records this as the release its binaries were built from (llama.cppRelease).
    await writeFile(join(nlcDir, "llama", "llama.cpp.info.json"), `${JSON.stringify({ tag, llamaCppGithubRepo: "ggml-org/llama.cpp" }, null, 4)}\n`);
    await ensureCmakeJsBin(temp);

    progress({ phase: "configure", percent: null });
    await compile({ nlcDir, cpu: options.cpu, target: options.target, compiler: options.compiler, log, signal, onProgress: progress });
    const binsDir = await installCompiledBinaries(temp, nlcDir, options.target);
    // The source and build tree are not part of the engine.
    await rm(sourceDir, { recursive: true, force: true });
    await rm(join(nlcDir, "llama", "localBuilds"), { recursive: true, force: true });
    await rm(join(nlcDir, "llama", "lastBuild.json"), { force: true });
    await rm(join(nlcDir, ".temp"), { recursive: true, force: true });

    const info: BuildInfo = {
      ref: ref.ref, kind: ref.kind, repo: options.repo, commit, reportedCommit: "", builtAt: new Date().toISOString(),
      nodeLlamaCppVersion: nlcVersion, cpu: options.cpu, architectures, log: logPath,
    };
    const marker: EngineMarker = { sha256: await sha256File(join(binsDir, "llama-addon.node")), nodeLlamaCppVersion: version, target: options.target, extractedAt: info.builtAt };
    // The marker goes in before the check: in the compiled executable, node-llama-cpp's binary test
    // forks this executable with a script, which is only run when it lies inside a marked engine
    // folder. The folder's dot-name keeps it out of every listing until the rename below.
    await writeFile(join(temp, BUILD_INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
    await writeFile(join(temp, ENGINE_MARKER_FILE), `${JSON.stringify(marker, null, 2)}\n`);

    progress({ phase: "verify", percent: null });
    checkAborted(signal);
    const report = await verifyBuiltEngine({ dir: temp, modelPath: options.verifyModel, maxTokens: 8 }, { signal }).catch((err: unknown) => {
      checkAborted(signal);
      throw new EngineBuildError(errorMessage(err));
    });
    note(`verify: commit ${report.commit}, release ${report.release}, ${report.tokens} tokens: ${JSON.stringify(report.text)}`);
    const reported = report.commit.replace(/-dirty$/, "");
    if (reported.length < 7 || !commit.startsWith(reported)) {
      throw new EngineBuildError(`the built engine reports llama.cpp commit ${report.commit}, not the ${commit.slice(0, 10)} that was fetched; it was not registered`);
    }
    if (report.release !== tag) throw new EngineBuildError(`the engine loaded binaries built as "${report.release}", not this build ("${tag}"); it was not registered`);

    progress({ phase: "register", percent: null });
    checkAborted(signal);
    info.reportedCommit = report.commit;
    await writeFile(join(temp, BUILD_INFO_FILE), `${JSON.stringify({ ...info, verify: report }, null, 2)}\n`);
    const dest = engineDir(options.lmxHome, version, options.target);
    try {
      await rename(temp, dest);
    } catch (err) {
      // Another build of the same commit finished first: its folder is as good as ours.
      if (!["ENOTEMPTY", "EEXIST"].includes(String((err as { code?: unknown }).code))) throw err;
      await rm(temp, { recursive: true, force: true });
      return { version, dir: dest, info, report, logPath, existed: true };
    }
    note(`registered ${dest}`);
    return { version, dir: dest, info, report, logPath, existed: false };
  } catch (err) {
    await rm(temp, { recursive: true, force: true }).catch(() => undefined);
    const cancelled = signal?.aborted === true;
    note(cancelled ? "cancelled" : `failed: ${errorMessage(err)}`);
    if (cancelled) throw new EngineBuildCancelled("the build was cancelled; nothing was registered", logPath);
    if (err instanceof EngineBuildError) throw new EngineBuildError(err.message.replace(/\nFull log: .*$/, ""), logPath);
    throw new EngineBuildError(errorMessage(err), logPath);
  } finally {
    await new Promise<void>((resolve) => log.end(() => resolve()));
  }
}

function readInfo(dir: string): { info: BuildInfo; report: VerifyReport } | undefined {
  try {
    const parsed = JSON.parse(readFileSync(join(dir, BUILD_INFO_FILE), "utf8")) as BuildInfo & { verify: VerifyReport };
    const { verify, ...info } = parsed;
    return { info, report: verify };
  } catch {
    return undefined;
  }
}

function readVersion(packageDir: string): string {
  try {
    const version = (JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")) as { version?: unknown }).version;
    if (typeof version === "string") return version;
  } catch {
    // reported below
  }
  throw new EngineBuildError(`no node-llama-cpp in ${packageDir}`);
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new EngineBuildCancelled("cancelled");
}

async function sha256File(path: string): Promise<string> {
  return new Bun.CryptoHasher("sha256").update(await readFile(path)).digest("hex");
}

/** npm runs node-llama-cpp's "cmake-js-llama" script, which needs cmake-js on node_modules/.bin. */
async function ensureCmakeJsBin(bundleDir: string): Promise<void> {
  const bin = join(bundleDir, "node_modules", ".bin");
  await mkdir(bin, { recursive: true });
  if (!existsSync(join(bin, "cmake-js"))) await symlink(join("..", "cmake-js", "bin", "cmake-js"), join(bin, "cmake-js"));
}

/** node-llama-cpp's documented source build, with the backend choices of its prebuilt binaries. */
async function compile(o: { nlcDir: string; cpu: "all" | "native"; target: string; compiler?: CompilerProbe; log: WriteStream; signal?: AbortSignal; onProgress: (p: PhaseProgress) => void }): Promise<void> {
  const parser = new BuildOutputParser("configure", o.onProgress);
  const gpu = o.target === "darwin-arm64" ? "metal" : "false";
  // --ciMode (honoured only with CI=true) is how node-llama-cpp builds its prebuilt binaries: every
  // CPU variant as a loadable backend, no -march=native. Without it the build targets this CPU.
  const all = o.cpu === "all";
  const args = [join(o.nlcDir, "dist", "cli", "cli.js"), "source", "build", "--gpu", gpu, "--noUsageExample", ...(all ? ["--ciMode", "--noCustomCmakeBuildOptionsInBinaryFolderName"] : [])];
  const workarounds = compilerWorkarounds(o.target, o.compiler ?? hostCompilerProbe());
  for (const w of workarounds) o.log.write(`[${new Date().toISOString()}] adding ${w.flag}: ${w.reason}\n`);
  const env = withFlags({ ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true", ...(all ? { CI: "true" } : {}) }, workarounds.map((w) => w.flag));
  if (!all) delete env.CI;
  try {
    await runLogged("node", args, { cwd: o.nlcDir, env, log: o.log, signal: o.signal, parser });
  } catch (err) {
    if (err instanceof EngineBuildCancelled) throw err;
    throw new EngineBuildError(`compiling llama.cpp failed:\n${parser.failureSummary()}`);
  }
}

/** Puts the compiled binaries where the bundle's prebuilt ones were, so the engine loads exactly them. */
async function installCompiledBinaries(bundleDir: string, nlcDir: string, target: string): Promise<string> {
  const builds = join(nlcDir, "llama", "localBuilds");
  const results = existsSync(builds)
    ? readdirSync(builds).map((name) => join(builds, name, "Release")).filter((dir) => existsSync(join(dir, "llama-addon.node")))
    : [];
  if (results.length !== 1) throw new EngineBuildError(`expected one compiled llama.cpp in ${builds}, found ${results.length}`);
  const bins = join(bundleDir, "node_modules", llamaPlatform(target).packageName, "bins");
  const variants = existsSync(bins) ? await readdir(bins) : [];
  if (variants.length !== 1) throw new EngineBuildError(`the base engine's binary package has ${variants.length} binary folders in ${bins}, expected one`);
  const dest = join(bins, variants[0]!);
  await rm(dest, { recursive: true, force: true });
  await rename(results[0]!, dest);
  return dest;
}

/** Deletes build folders left by processes that died without cleaning up (SIGKILL, power loss). */
function removeStaleBuilds(root: string): Promise<void> {
  return removeStaleFolders(root, new RegExp(`^\\${TEMP_PREFIX}(\\d+)-[0-9a-f]+$`), STALE_AFTER_MS);
}
