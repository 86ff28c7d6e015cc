// What LMX compiles against node-llama-cpp's prebuilt engine package: the llama.cpp source that
// package was built from (node-llama-cpp ships it as `llama/gitRelease.bundle`, plus patches it
// applies itself) and the package's shared libraries. Used by the addon build (llama-addon.ts) and
// by the benchmark's same-kernel llama-server (bench/llama-build.ts). Needs git.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { llamaPlatform } from "../../src/engines/llama/platform.ts";

/** The shared libraries of a prebuilt engine package. */
export interface EngineLibs {
  nodeLlamaCppVersion: string;
  /** The prebuilt package, e.g. "@node-llama-cpp/linux-x64". */
  packageName: string;
  packageVersion: string;
  /** Folder holding llama-addon.node, libllama, libggml* and the libggml-cpu-* variants. */
  dir: string;
  /** node-llama-cpp renames libllama and libggml with the release ("libllama.v0.4.0.so", "libllama.metal.v0.4.0.dylib"). */
  llamaLib: string;
  ggmlLib: string;
}

export interface LlamaSource {
  /** The checked-out tree, node-llama-cpp's own patches applied. */
  dir: string;
  /** Commit of the bundle's HEAD. */
  commit: string;
  /** node-llama-cpp's name for the release (`llama.cpp.info.json`), e.g. "v0.4.0". */
  release: string;
}

/** node-llama-cpp's package folder as resolved from `root`. */
export function nodeLlamaCppDir(root: string): string {
  // Its "exports" hide package.json, so resolve the entry point and walk up from dist/.
  return dirname(dirname(Bun.resolveSync("node-llama-cpp", root)));
}

export function run(cmd: string[], cwd: string): string {
  const res = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  if (res.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${res.exitCode}):\n${(res.stdout.toString() + res.stderr.toString()).slice(-4000)}`);
  return res.stdout.toString();
}

export function sha256File(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** The commit at the bundle's HEAD, read without unpacking it (`git bundle list-heads`). */
function bundleHead(bundle: string, cwd: string): string {
  const out = run(["git", "bundle", "list-heads", bundle], cwd);
  const head = out.split("\n").find((l) => l.endsWith(" HEAD")) ?? out.split("\n")[0];
  const commit = head?.split(" ")[0];
  if (!commit || !/^[0-9a-f]{40}$/.test(commit)) throw new Error(`cannot read the HEAD of ${bundle}`);
  return commit;
}

/**
 * The shared libraries of `packageDir` (a prebuilt package such as @node-llama-cpp/linux-x64), by
 * default the one node-llama-cpp resolves from `root` for this host.
 */
export function engineLibs(root: string, packageDir?: string, target?: string): EngineLibs {
  const nlcDir = nodeLlamaCppDir(root);
  const nlc = JSON.parse(readFileSync(join(nlcDir, "package.json"), "utf8")) as { version: string };
  const platform = llamaPlatform(target);
  const pkgDir = packageDir ?? dirname(Bun.resolveSync(`${platform.packageName}/package.json`, nlcDir));
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { version: string };
  const binsRoot = join(pkgDir, "bins");
  const sub = existsSync(join(binsRoot, platform.target)) ? platform.target : readdirSync(binsRoot)[0];
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
    packageName: platform.packageName,
    packageVersion: pkg.version,
    dir,
    llamaLib: pick(/^libllama(\.[\w.-]+)?\.(so|dylib)$/, "libllama"),
    ggmlLib: pick(/^libggml(\.[\w.-]+)?\.(so|dylib)$/, "libggml"),
  };
}

/**
 * node-llama-cpp's llama.cpp source, checked out once per commit under `cacheDir`
 * (`llama.cpp-<commit>/src`) with node-llama-cpp's patches applied.
 */
export function ensureLlamaSource(root: string, cacheDir: string, log: (msg: string) => void): LlamaSource {
  const nlcDir = nodeLlamaCppDir(root);
  const bundle = join(nlcDir, "llama", "gitRelease.bundle");
  const info = JSON.parse(readFileSync(join(nlcDir, "llama", "llama.cpp.info.json"), "utf8")) as { tag: string };
  const commit = bundleHead(bundle, root);
  const dir = join(cacheDir, `llama.cpp-${commit.slice(0, 12)}`, "src");
  if (!existsSync(join(dir, "CMakeLists.txt"))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dirname(dir), { recursive: true });
    log(`unpacking llama.cpp ${info.tag} (${commit.slice(0, 12)}) from node-llama-cpp's source bundle`);
    run(["git", "clone", "--quiet", bundle, dir], dirname(dir));
    run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", commit], dir);
    applyShippedPatches(nlcDir, dir, log);
  }
  return { dir, commit, release: info.tag };
}

/**
 * node-llama-cpp applies its own fixes (`llama/patches/*.diff`) on top of the bundle before it
 * builds; they touch libllama, which is taken prebuilt, but what is compiled against it must see
 * the same headers. A patch already in the source (it reverse-applies cleanly) is skipped, as
 * node-llama-cpp does.
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
