// The same-kernel reference: llama.cpp's own `llama-server`, compiled from exactly the llama.cpp
// source node-llama-cpp ships (its git bundle plus the patches it applies itself) and linked against
// the shared libraries of the prebuilt engine package LMX runs (libggml-base, libggml, libllama,
// libllama-common from @node-llama-cpp/<target>). Only the server and what the package does not
// ship (mtmd, vendored helpers) are compiled (bench/llama-ref/CMakeLists.txt). Started with its
// working directory in the package's folder, the server's ggml backend loader picks the
// libggml-cpu-* variant from the same files by the same rule as LMX's, so both run one set of
// kernels and a ratio measures LMX's own cost. Built once per engine into
// `.cache/bench/llama-server-<engine>-<commit>/` (git-ignored); nothing here is committed.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { engineLibs, type EngineLibs, ensureLlamaSource, sha256File } from "../scripts/lib/llama-source.ts";

export const REPO_ROOT = resolve(import.meta.dir, "..");
export const CACHE_DIR = join(REPO_ROOT, ".cache", "bench");
const OVERLAY = join(import.meta.dir, "llama-ref");

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

/** Streams a long step's output to stderr; compiles run at lower priority (a shared machine). */
async function runLoud(cmd: string[], cwd: string): Promise<void> {
  const niced = Bun.which("nice") ? ["nice", "-n", "10", ...cmd] : cmd;
  const proc = Bun.spawn(niced, { cwd, stdout: "inherit", stderr: "inherit" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed with exit code ${code}`);
}

/** Returns the cached reference server, building it first when missing (a few minutes; needs git, cmake, a C++ compiler). */
export async function ensureReferenceServer(log: (msg: string) => void = (m) => process.stderr.write(m + "\n")): Promise<ReferenceServer> {
  if (process.platform !== "linux") throw new Error("the same-kernel llama-server reference is built on Linux only (it links against the .so files of the prebuilt package)");
  const source = ensureLlamaSource(REPO_ROOT, join(REPO_ROOT, ".cache"), log);
  const { commit, release } = source;
  // The prebuilt package LMX loads from source on this host; a compiled lmx unpacks the same
  // package's libraries, byte for byte, into its engine folder.
  const engine = engineLibs(REPO_ROOT);
  const src = source.dir;
  const root = join(CACHE_DIR, `llama-server-${engine.packageName.replace(/^@.*\//, "")}-${engine.packageVersion}-${commit.slice(0, 12)}`);
  const build = join(root, "build");
  const server = join(build, "server", "llama-server");
  const stampFile = join(root, "built.json");
  // Rebuilt when the libraries or the overlay change; the versions alone do not catch a reinstall.
  const key = { commit, engine: engine.packageVersion, llama: sha256File(join(engine.dir, engine.llamaLib)), overlay: sha256File(join(OVERLAY, "CMakeLists.txt")) };
  const ref: ReferenceServer = {
    server, cwd: engine.dir, engine, commit, release,
    build: `llama-server from node-llama-cpp's llama.cpp ${release} (${commit.slice(0, 12)}) linked against ${engine.packageName}@${engine.packageVersion}'s shared libraries`,
  };
  if (existsSync(stampFile) && existsSync(server)) {
    const saved = JSON.parse(readFileSync(stampFile, "utf8")) as { key?: unknown };
    if (JSON.stringify(saved.key) === JSON.stringify(key)) return ref;
  }
  log(`building llama-server against ${engine.dir} into ${build} (minutes; cached afterwards)`);
  mkdirSync(root, { recursive: true });
  const generator = Bun.which("ninja") ? ["-G", "Ninja"] : [];
  await runLoud(["cmake", "-S", OVERLAY, "-B", build, ...generator, "-DCMAKE_BUILD_TYPE=Release", `-DLLAMA_SRC=${src}`,
    `-DENGINE_LIBS=${engine.dir}`, `-DLLAMA_LIB=${engine.llamaLib}`, `-DGGML_LIB=${engine.ggmlLib}`], root);
  // Two jobs: the machine this runs on is usually shared, and the server is ~80 files.
  await runLoud(["cmake", "--build", build, "--target", "llama-server", "-j", "2"], root);
  writeFileSync(stampFile, JSON.stringify({ key, release, builtAt: new Date().toISOString() }, null, 2));
  return ref;
}

if (import.meta.main) {
  console.log(JSON.stringify(await ensureReferenceServer(), null, 2));
}
