// Builds llama.cpp's own `llama-server` and `llama-bench` from exactly the llama.cpp source that
// node-llama-cpp ships (its git bundle plus the patches it applies itself), natively for this CPU,
// once, into `.cache/bench/llama.cpp-<commit>/` (git-ignored). Nothing here is ever committed.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export const REPO_ROOT = resolve(import.meta.dir, "..");
export const CACHE_DIR = join(REPO_ROOT, ".cache", "bench");

export interface LlamaCppTools {
  server: string;
  bench: string;
  /** Commit of the bundled source. */
  commit: string;
  /** node-llama-cpp's name for the release (`llama.cpp.info.json`). */
  release: string;
  cmakeFlags: string[];
}

function nodeLlamaCppDir(): string {
  return dirname(dirname(Bun.resolveSync("node-llama-cpp", REPO_ROOT)));
}

function run(cmd: string[], cwd: string, quiet = false): string {
  const res = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const out = res.stdout.toString() + res.stderr.toString();
  if (res.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${res.exitCode}):\n${out.slice(-4000)}`);
  if (!quiet && out.trim()) process.stderr.write(out.split("\n").slice(-3).join("\n") + "\n");
  return res.stdout.toString();
}

/** Streams a long step's output to stderr (the build takes minutes on small machines). */
async function runLoud(cmd: string[], cwd: string): Promise<void> {
  const proc = Bun.spawn(cmd, { cwd, stdout: "inherit", stderr: "inherit" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed with exit code ${code}`);
}

/** The commit at the bundle's HEAD, read without unpacking it (`git bundle list-heads`). */
function bundleHead(bundle: string): string {
  const out = run(["git", "bundle", "list-heads", bundle], REPO_ROOT, true);
  const head = out.split("\n").find((l) => l.endsWith(" HEAD")) ?? out.split("\n")[0];
  const commit = head?.split(" ")[0];
  if (!commit || !/^[0-9a-f]{40}$/.test(commit)) throw new Error(`cannot read the HEAD of ${bundle}`);
  return commit;
}

/**
 * Flags of the reference build: native CPU flags (`GGML_NATIVE`, -march=native), Release, static,
 * CPU only, no OpenSSL/curl (the server only listens on 127.0.0.1 here).
 */
export const REFERENCE_CMAKE_FLAGS = [
  ...amxOff(),
  "-DCMAKE_BUILD_TYPE=Release",
  "-DGGML_NATIVE=ON",
  "-DBUILD_SHARED_LIBS=OFF",
  "-DLLAMA_BUILD_TESTS=OFF",
  "-DLLAMA_BUILD_EXAMPLES=OFF",
  "-DLLAMA_OPENSSL=OFF",
  "-DLLAMA_CURL=OFF",
  "-DGGML_METAL=OFF",
  "-DGGML_CUDA=OFF",
  "-DGGML_VULKAN=OFF",
];

/**
 * Some VMs advertise AMX in /proc/cpuinfo (so -march=native enables it and ggml's AMX kernels are
 * compiled in and chosen for q8_0) yet fault on the first tile instruction: llama-bench died with
 * SIGILL in `tilezero` on the 2-core KVM guest this benchmark was written on. The reference build
 * therefore keeps every other native feature and leaves AMX out whenever the CPU reports it.
 */
function amxOff(): string[] {
  let flags = "";
  try {
    flags = /^flags\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "";
  } catch {
    return [];
  }
  if (!/\bamx_tile\b/.test(flags)) return [];
  const off = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16";
  return [`-DCMAKE_C_FLAGS=${off}`, `-DCMAKE_CXX_FLAGS=${off}`];
}

/** Returns the cached build, building it first when it is missing (minutes; needs git, cmake, a C++ compiler). */
export async function ensureLlamaCppTools(log: (msg: string) => void = (m) => process.stderr.write(m + "\n")): Promise<LlamaCppTools> {
  const nlcDir = nodeLlamaCppDir();
  const bundle = join(nlcDir, "llama", "gitRelease.bundle");
  const info = JSON.parse(readFileSync(join(nlcDir, "llama", "llama.cpp.info.json"), "utf8")) as { tag: string };
  const commit = bundleHead(bundle);
  const root = join(CACHE_DIR, `llama.cpp-${commit.slice(0, 12)}`);
  const src = join(root, "src");
  const build = join(root, "build");
  const stamp = join(root, "built.json");
  const server = join(build, "bin", "llama-server");
  const benchBin = join(build, "bin", "llama-bench");
  const tools: LlamaCppTools = { server, bench: benchBin, commit, release: info.tag, cmakeFlags: REFERENCE_CMAKE_FLAGS };
  if (existsSync(stamp) && existsSync(server) && existsSync(benchBin)) {
    const saved = JSON.parse(readFileSync(stamp, "utf8")) as { cmakeFlags?: string[] };
    if (JSON.stringify(saved.cmakeFlags) === JSON.stringify(REFERENCE_CMAKE_FLAGS)) return tools;
  }
  mkdirSync(root, { recursive: true });
  if (!existsSync(join(src, "CMakeLists.txt"))) {
    rmSync(src, { recursive: true, force: true });
    log(`unpacking llama.cpp ${info.tag} (${commit.slice(0, 12)}) from node-llama-cpp's source bundle`);
    run(["git", "clone", "--quiet", bundle, src], root, true);
    run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", commit], src, true);
    applyShippedPatches(nlcDir, src, log);
  }
  log(`building llama-server and llama-bench natively into ${build} (takes a while; cached afterwards)`);
  const generator = Bun.which("ninja") ? ["-G", "Ninja"] : [];
  await runLoud(["cmake", "-S", src, "-B", build, ...generator, ...REFERENCE_CMAKE_FLAGS], root);
  const jobs = String(Math.max(1, navigator.hardwareConcurrency));
  await runLoud(["cmake", "--build", build, "--target", "llama-server", "llama-bench", "-j", jobs], root);
  writeFileSync(stamp, JSON.stringify({ commit, release: info.tag, cmakeFlags: REFERENCE_CMAKE_FLAGS, builtAt: new Date().toISOString() }, null, 2));
  return tools;
}

/**
 * node-llama-cpp applies its own fixes (`llama/patches/*.diff`) on top of the bundle before it
 * builds; the reference build applies the same ones so both run identical code. A patch already
 * contained in the source (it reverse-applies cleanly) is skipped, as node-llama-cpp does.
 */
function applyShippedPatches(nlcDir: string, src: string, log: (msg: string) => void): void {
  const dir = join(nlcDir, "llama", "patches");
  if (!existsSync(dir)) return;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".diff")).sort()) {
    const patch = join(dir, file);
    const already = Bun.spawnSync(["git", "apply", "--reverse", "--check", patch], { cwd: src, stdout: "ignore", stderr: "ignore" }).exitCode === 0;
    if (already) continue;
    log(`applying node-llama-cpp's patch ${file}`);
    run(["git", "apply", patch], src, true);
  }
}

if (import.meta.main) {
  const tools = await ensureLlamaCppTools();
  console.log(JSON.stringify(tools, null, 2));
}
