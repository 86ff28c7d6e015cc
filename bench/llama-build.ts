// The same-kernel reference: llama.cpp's own `llama-server`, compiled from exactly the llama.cpp
// source node-llama-cpp ships (its git bundle plus the patches it applies itself) and linked against
// the shared libraries of the prebuilt engine package LMX runs (libggml-base, libggml, libllama,
// libllama-common from @node-llama-cpp/<target>). Only the server and what the package does not
// ship (mtmd, vendored helpers) are compiled (bench/llama-ref/CMakeLists.txt). Started with its
// working directory in the package's folder, the server's ggml backend loader picks the
// libggml-cpu-* variant from the same files by the same rule as LMX's, so both run one set of
// kernels and a ratio measures LMX's own cost. Built once per engine into
// `.cache/bench/llama-server-<engine>-<commit>/` (git-ignored); nothing here is committed.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { llamaPlatform } from "../src/engines/llama/platform.ts";

export const REPO_ROOT = resolve(import.meta.dir, "..");
export const CACHE_DIR = join(REPO_ROOT, ".cache", "bench");
const OVERLAY = join(import.meta.dir, "llama-ref");

/** The prebuilt engine whose libraries both servers load. */
export interface EngineLibs {
  nodeLlamaCppVersion: string;
  /** The prebuilt package, e.g. "@node-llama-cpp/linux-x64". */
  packageName: string;
  packageVersion: string;
  /** Folder holding libllama, libggml* and the libggml-cpu-* variants. */
  dir: string;
  llamaLib: string;
  ggmlLib: string;
}

export interface ReferenceServer {
  /** The llama-server executable. */
  server: string;
  /** Working directory to start it in: the engine folder, where ggml's loader finds the CPU variants. */
  cwd: string;
  engine: EngineLibs;
  /** Commit of the bundled source. */
  commit: string;
  /** node-llama-cpp's name for the release (`llama.cpp.info.json`). */
  release: string;
  /** How the reference was built, for the report. */
  build: string;
}

function nodeLlamaCppDir(): string {
  return dirname(dirname(Bun.resolveSync("node-llama-cpp", REPO_ROOT)));
}

function run(cmd: string[], cwd: string): string {
  const res = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  if (res.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${res.exitCode}):\n${(res.stdout.toString() + res.stderr.toString()).slice(-4000)}`);
  return res.stdout.toString();
}

/** Streams a long step's output to stderr; compiles run at lower priority (a shared machine). */
async function runLoud(cmd: string[], cwd: string): Promise<void> {
  const niced = Bun.which("nice") ? ["nice", "-n", "10", ...cmd] : cmd;
  const proc = Bun.spawn(niced, { cwd, stdout: "inherit", stderr: "inherit" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed with exit code ${code}`);
}

/** The commit at the bundle's HEAD, read without unpacking it (`git bundle list-heads`). */
function bundleHead(bundle: string): string {
  const out = run(["git", "bundle", "list-heads", bundle], REPO_ROOT);
  const head = out.split("\n").find((l) => l.endsWith(" HEAD")) ?? out.split("\n")[0];
  const commit = head?.split(" ")[0];
  if (!commit || !/^[0-9a-f]{40}$/.test(commit)) throw new Error(`cannot read the HEAD of ${bundle}`);
  return commit;
}

/**
 * The prebuilt package LMX loads from source on this host (a compiled lmx unpacks the same
 * package, byte for byte, into its engine folder). node-llama-cpp renames libllama and libggml with
 * the release ("libllama.v0.4.0.so"), so the names are looked up.
 */
export function engineLibs(): EngineLibs {
  const nlcDir = nodeLlamaCppDir();
  const nlc = JSON.parse(readFileSync(join(nlcDir, "package.json"), "utf8")) as { version: string };
  const { packageName, target } = llamaPlatform();
  const pkgDir = dirname(Bun.resolveSync(`${packageName}/package.json`, nlcDir));
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { version: string };
  const binsRoot = join(pkgDir, "bins");
  const sub = existsSync(join(binsRoot, target)) ? target : readdirSync(binsRoot)[0];
  if (sub === undefined) throw new Error(`${binsRoot} holds no binaries`);
  const dir = join(binsRoot, sub);
  const files = readdirSync(dir);
  const pick = (re: RegExp, what: string) => {
    const f = files.find((x) => re.test(x));
    if (f === undefined) throw new Error(`${dir} has no ${what}`);
    return f;
  };
  return {
    nodeLlamaCppVersion: nlc.version,
    packageName,
    packageVersion: pkg.version,
    dir,
    llamaLib: pick(/^libllama(\.v[\w.-]+)?\.so$/, "libllama"),
    ggmlLib: pick(/^libggml(\.v[\w.-]+)?\.so$/, "libggml"),
  };
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** Returns the cached reference server, building it first when missing (a few minutes; needs git, cmake, a C++ compiler). */
export async function ensureReferenceServer(log: (msg: string) => void = (m) => process.stderr.write(m + "\n")): Promise<ReferenceServer> {
  if (process.platform !== "linux") throw new Error("the same-kernel llama-server reference is built on Linux only (it links against the .so files of the prebuilt package)");
  const nlcDir = nodeLlamaCppDir();
  const bundle = join(nlcDir, "llama", "gitRelease.bundle");
  const info = JSON.parse(readFileSync(join(nlcDir, "llama", "llama.cpp.info.json"), "utf8")) as { tag: string };
  const commit = bundleHead(bundle);
  const engine = engineLibs();
  const src = join(CACHE_DIR, `llama.cpp-${commit.slice(0, 12)}`, "src");
  const root = join(CACHE_DIR, `llama-server-${engine.packageName.replace(/^@.*\//, "")}-${engine.packageVersion}-${commit.slice(0, 12)}`);
  const build = join(root, "build");
  const server = join(build, "server", "llama-server");
  const stampFile = join(root, "built.json");
  // Rebuilt when the libraries or the overlay change; the versions alone do not catch a reinstall.
  const key = { commit, engine: engine.packageVersion, llama: sha256(join(engine.dir, engine.llamaLib)), overlay: sha256(join(OVERLAY, "CMakeLists.txt")) };
  const ref: ReferenceServer = {
    server, cwd: engine.dir, engine, commit, release: info.tag,
    build: `llama-server from node-llama-cpp's llama.cpp ${info.tag} (${commit.slice(0, 12)}) linked against ${engine.packageName}@${engine.packageVersion}'s shared libraries`,
  };
  if (existsSync(stampFile) && existsSync(server)) {
    const saved = JSON.parse(readFileSync(stampFile, "utf8")) as { key?: unknown };
    if (JSON.stringify(saved.key) === JSON.stringify(key)) return ref;
  }
  if (!existsSync(join(src, "CMakeLists.txt"))) {
    rmSync(src, { recursive: true, force: true });
    mkdirSync(dirname(src), { recursive: true });
    log(`unpacking llama.cpp ${info.tag} (${commit.slice(0, 12)}) from node-llama-cpp's source bundle`);
    run(["git", "clone", "--quiet", bundle, src], dirname(src));
    run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", commit], src);
    applyShippedPatches(nlcDir, src, log);
  }
  log(`building llama-server against ${engine.dir} into ${build} (minutes; cached afterwards)`);
  mkdirSync(root, { recursive: true });
  const generator = Bun.which("ninja") ? ["-G", "Ninja"] : [];
  await runLoud(["cmake", "-S", OVERLAY, "-B", build, ...generator, "-DCMAKE_BUILD_TYPE=Release", `-DLLAMA_SRC=${src}`,
    `-DENGINE_LIBS=${engine.dir}`, `-DLLAMA_LIB=${engine.llamaLib}`, `-DGGML_LIB=${engine.ggmlLib}`], root);
  // Two jobs: the machine this runs on is usually shared, and the server is ~80 files.
  await runLoud(["cmake", "--build", build, "--target", "llama-server", "-j", "2"], root);
  writeFileSync(stampFile, JSON.stringify({ key, release: info.tag, builtAt: new Date().toISOString() }, null, 2));
  return ref;
}

/**
 * node-llama-cpp applies its own fixes (`llama/patches/*.diff`) on top of the bundle before it
 * builds; they touch libllama, which the reference takes prebuilt, but the headers the server is
 * compiled against must match that library, so they are applied here too. A patch already in the
 * source (it reverse-applies cleanly) is skipped, as node-llama-cpp does.
 */
function applyShippedPatches(nlcDir: string, src: string, log: (msg: string) => void): void {
  const dir = join(nlcDir, "llama", "patches");
  if (!existsSync(dir)) return;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".diff")).sort()) {
    const patch = join(dir, file);
    const already = Bun.spawnSync(["git", "apply", "--reverse", "--check", patch], { cwd: src, stdout: "ignore", stderr: "ignore" }).exitCode === 0;
    if (already) continue;
    log(`applying node-llama-cpp's patch ${file}`);
    run(["git", "apply", patch], src);
  }
}

if (import.meta.main) {
  console.log(JSON.stringify(await ensureReferenceServer(), null, 2));
}
