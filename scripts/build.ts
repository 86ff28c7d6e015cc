// Builds the single `lmx` executable.
//
//   bun run scripts/build.ts [--outfile dist/lmx] [--version X] [--entry src/cli/main.ts] [--prebuilt-addon]
//
// node-llama-cpp cannot be compiled into the executable (it reads its own files and dlopens native
// libraries), so it travels as an "engine bundle": node-llama-cpp, its production dependency
// closure and this host's prebuilt binary package, tarred in a node_modules layout and embedded
// in the executable. src/engines/llama/bundle.ts unpacks it on first use. The package's addon is
// replaced by one compiled with LMX's patch against the package's own libraries
// (scripts/lib/llama-addon.ts).

import { copyFileSync, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { copyFile, link, mkdir, rm } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import { buildDashboardBundle, DASHBOARD_BUNDLE_FILE } from "../src/dashboard/bundle.ts";
import { engineBundleFileName } from "../src/engines/llama/bundle.ts";
import { llamaPlatform, type LlamaPlatform } from "../src/engines/llama/platform.ts";
import { packTarGz, type TarEntry } from "../src/util/tar.ts";
import { downloadUv } from "../src/runtimes/uv.ts";
import { ADDON_FILE, buildLlamaAddon, PREBUILT_ADDON_FILE } from "./lib/llama-addon.ts";
import { engineLibs } from "./lib/llama-source.ts";
import { UV_VERSION } from "../src/runtimes/versions.ts";

const ROOT = resolve(import.meta.dir, "..");
const TEMPLATE_WORKER = "src/engines/llama/template-worker.ts";

interface PackageJson {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

export interface BundlePackage {
  name: string;
  version: string;
  /** Absolute folder of the installed package. */
  dir: string;
  /** Where the package goes in the archive, e.g. "node_modules/@node-llama-cpp/mac-arm64-metal". */
  archiveDir: string;
}

function readPackageJson(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageJson;
}

/**
 * Finds the folder `name` resolves to from `fromDir`, the way Node does: `node_modules/<name>` in
 * `fromDir` and each ancestor. Only folders inside `root` count, since the bundle mirrors `root`.
 */
export function resolvePackageDir(root: string, fromDir: string, name: string): string | undefined {
  let dir = fromDir;
  for (;;) {
    if (basename(dir) !== "node_modules") {
      const candidate = join(dir, "node_modules", name);
      try {
        if (statSync(join(candidate, "package.json")).isFile()) return candidate;
      } catch {
        // not installed at this level; keep walking up
      }
    }
    if (dir === root) return undefined;
    const parent = dirname(dir);
    if (parent === dir || !parent.startsWith(root)) return undefined;
    dir = parent;
  }
}

/**
 * node-llama-cpp plus the transitive closure of `dependencies`, and the one prebuilt binary package
 * for `platform`. Other optionalDependencies, devDependencies and (optional) peers are left out.
 * `prebuiltDir` supplies the prebuilt package from elsewhere (another platform's package fetched
 * from npm for a cross build); it is archived where node-llama-cpp looks for it.
 */
export function collectBundlePackages(root: string, platform: LlamaPlatform, prebuiltDir?: string): BundlePackage[] {
  const nlcDir = resolvePackageDir(root, root, "node-llama-cpp");
  if (nlcDir === undefined) throw new Error("node-llama-cpp is not installed in node_modules (run bun install)");
  const found = new Map<string, BundlePackage>();
  const queue = [nlcDir];
  while (queue.length > 0) {
    const dir = queue.shift() as string;
    if (found.has(dir)) continue;
    const pkg = readPackageJson(dir);
    if (pkg.name === undefined || pkg.version === undefined) throw new Error(`${dir}/package.json has no name or version`);
    const archiveDir = dir === prebuiltDir ? `node_modules/${pkg.name}` : relative(root, dir).split(sep).join("/");
    found.set(dir, { name: pkg.name, version: pkg.version, dir, archiveDir });
    const wanted = Object.keys(pkg.dependencies ?? {});
    if (dir === nlcDir) {
      if (pkg.optionalDependencies?.[platform.packageName] === undefined) {
        throw new Error(`node-llama-cpp ${pkg.version} does not list ${platform.packageName} as a prebuilt binary package`);
      }
      wanted.push(platform.packageName);
    }
    for (const name of wanted) {
      const depDir = name === platform.packageName && prebuiltDir !== undefined ? prebuiltDir : resolvePackageDir(root, dir, name);
      if (depDir === undefined) {
        const hint = name === platform.packageName ? ` (install it for ${platform.target} before building)` : "";
        throw new Error(`cannot resolve ${name} from ${relative(root, dir)}${hint}`);
      }
      queue.push(depDir);
    }
  }
  return [...found.values()].sort((a, b) => a.dir.localeCompare(b.dir));
}

// node-llama-cpp's llama/ folder is the llama.cpp source checkout and build tooling (the 34 MB
// gitRelease.bundle, CMake files, addon sources); with `build: "never"` only the info files and
// grammars are read (traced with strace over getLlama/loadModel/chat/completion/grammars/embeddings).
// The build tooling (about 260 KB) travels too: `lmx engine build` compiles llama.cpp from source
// with it. Only the source bundle stays out; the build fetches the source it needs with git.
const NLC_LLAMA_EXCLUDED = ["llama/gitRelease.bundle", "llama/llama.cpp/", "llama/localBuilds/", "llama/lastBuild.json"];
// templates/ feeds `node-llama-cpp init`; bins/ only holds "moved to a package" placeholders.
const NLC_UNUSED_DIRS = ["templates/", "bins/"];

/** Files that are never read when running prebuilt binaries: docs, typings, source maps, build inputs. */
export function isExcludedFromBundle(packageName: string, relPath: string): boolean {
  const file = basename(relPath);
  // The prebuilt addon that scripts/llama-addon.ts keeps beside ours in node_modules.
  if (packageName.startsWith("@node-llama-cpp/") && file === PREBUILT_ADDON_FILE) return true;
  if (/\.(map|tsbuildinfo)$/.test(file) || /\.d\.[cm]?ts$/.test(file)) return true;
  if (/\.(md|markdown)$/i.test(file) && !/^(licen[cs]e|notice|copying)/i.test(file)) return true;
  if (packageName === "node-llama-cpp") {
    if (NLC_UNUSED_DIRS.some((dir) => relPath.startsWith(dir))) return true;
    if (NLC_LLAMA_EXCLUDED.some((path) => relPath === path || (path.endsWith("/") && relPath.startsWith(path)))) return true;
  }
  return false;
}

export interface BundleFile {
  /** Path inside the archive, e.g. "node_modules/node-llama-cpp/dist/index.js". */
  archivePath: string;
  absPath: string;
  kind: "file" | "symlink";
  size: number;
}

/** Every file of the bundle packages, minus exclusions; nested node_modules are packages of their own. */
export function collectBundleFiles(root: string, packages: BundlePackage[]): { files: BundleFile[]; excludedBytes: number } {
  const files: BundleFile[] = [];
  let excludedBytes = 0;
  for (const pkg of packages) {
    const walk = (dir: string): void => {
      for (const dirent of readdirSync(dir, { withFileTypes: true })) {
        const absPath = join(dir, dirent.name);
        const relPath = relative(pkg.dir, absPath).split(sep).join("/");
        if (dirent.isDirectory()) {
          if (dirent.name !== "node_modules") walk(absPath);
          continue;
        }
        const stat = lstatSync(absPath);
        if (isExcludedFromBundle(pkg.name, relPath)) {
          excludedBytes += stat.size;
          continue;
        }
        if (!stat.isFile() && !stat.isSymbolicLink()) continue;
        files.push({
          archivePath: `${pkg.archiveDir}/${relPath}`,
          absPath,
          kind: stat.isSymbolicLink() ? "symlink" : "file",
          size: stat.size,
        });
      }
    };
    walk(pkg.dir);
  }
  files.sort((a, b) => (a.archivePath < b.archivePath ? -1 : a.archivePath > b.archivePath ? 1 : 0));
  return { files, excludedBytes };
}

/** Rewrites a file's bytes on their way into the archive (the release build signs Mac binaries). */
export type BundleFileTransform = (file: BundleFile, data: Uint8Array) => Uint8Array;

function* tarEntries(files: BundleFile[], transform?: BundleFileTransform): Generator<TarEntry> {
  for (const file of files) {
    if (file.kind === "symlink") {
      yield { type: "symlink", path: file.archivePath, target: readlinkSync(file.absPath) };
      continue;
    }
    // Normalized modes and a zero mtime keep the archive (and its sha256) reproducible.
    const executable = (statSync(file.absPath).mode & 0o111) !== 0;
    const data = readFileSync(file.absPath);
    yield { type: "file", path: file.archivePath, data: transform ? transform(file, data) : data, mode: executable ? 0o755 : 0o644 };
  }
}

export interface EngineBundle {
  path: string;
  sha256: string;
  nodeLlamaCppVersion: string;
  /** node-llama-cpp's folder among the inputs (holds the llama.cpp release info and source bundle). */
  nodeLlamaCppDir: string;
  /** llama.cpp release the prebuilt binaries come from, e.g. "b6000". */
  llamaCppRelease: string;
  target: string;
  packages: number;
  files: number;
  uncompressedBytes: number;
  excludedBytes: number;
}

export interface EngineBundleOptions {
  /** The platform's prebuilt package folder, when it is not installed under `root`. */
  prebuiltDir?: string;
  /** A compiled llama-addon.node to ship instead of the prebuilt package's (scripts/lib/llama-addon.ts). */
  addon?: string;
  transform?: BundleFileTransform;
}

/** Packs the engine bundle for `platform` into `outDir`. */
export async function buildEngineBundle(root: string, outDir: string, platform: LlamaPlatform, options: EngineBundleOptions = {}): Promise<EngineBundle> {
  const packages = collectBundlePackages(root, platform, options.prebuiltDir);
  const nlc = packages.find((pkg) => pkg.name === "node-llama-cpp");
  const prebuilt = packages.find((pkg) => pkg.name === platform.packageName);
  if (nlc === undefined || prebuilt === undefined) throw new Error("engine bundle is missing node-llama-cpp or its prebuilt binaries");
  if (prebuilt.version !== nlc.version) {
    throw new Error(`${platform.packageName} ${prebuilt.version} does not match node-llama-cpp ${nlc.version}; reinstall dependencies`);
  }
  const { files, excludedBytes } = collectBundleFiles(root, packages);
  replaceAddon(files, prebuilt, options.addon);
  const archive = await packTarGz(tarEntries(files, options.transform), 9);
  const path = join(outDir, engineBundleFileName(nlc.version, platform.target));
  await mkdir(outDir, { recursive: true });
  await Bun.write(path, archive);
  return {
    path,
    sha256: new Bun.CryptoHasher("sha256").update(archive).digest("hex"),
    nodeLlamaCppVersion: nlc.version,
    nodeLlamaCppDir: nlc.dir,
    llamaCppRelease: readLlamaCppRelease(nlc.dir),
    target: platform.target,
    packages: packages.length,
    files: files.length,
    uncompressedBytes: files.reduce((sum, file) => sum + file.size, 0),
    excludedBytes,
  };
}

/**
 * Points the prebuilt package's llama-addon.node entry at `addon`; without one, at the prebuilt
 * addon that scripts/llama-addon.ts keeps beside ours in node_modules, if it installed ours there.
 */
function replaceAddon(files: BundleFile[], prebuilt: BundlePackage, addon: string | undefined): void {
  const entries = files.filter((f) => f.archivePath.startsWith(`${prebuilt.archiveDir}/bins/`) && basename(f.archivePath) === ADDON_FILE);
  const entry = entries[0];
  if (entries.length !== 1 || entry?.kind !== "file") throw new Error(`${prebuilt.name} should hold one ${ADDON_FILE}, found ${entries.length}`);
  const kept = join(dirname(entry.absPath), PREBUILT_ADDON_FILE);
  const source = addon ?? (existsSync(kept) ? kept : undefined);
  if (source === undefined) return;
  entry.absPath = source;
  entry.size = statSync(source).size;
}

function readLlamaCppRelease(nodeLlamaCppDir: string): string {
  const info = JSON.parse(readFileSync(join(nodeLlamaCppDir, "llama", "llama.cpp.info.json"), "utf8")) as { tag?: unknown };
  if (typeof info.tag !== "string") throw new Error(`${nodeLlamaCppDir}/llama/llama.cpp.info.json names no llama.cpp release`);
  return info.tag;
}

export interface CompileOptions {
  entry: string;
  outfile: string;
  version: string;
  bundle: EngineBundle;
  /** Bun's cross-compilation target ("bun-darwin-arm64"); the host when absent. */
  target?: string;
  /** That target's Bun runtime (from the npm package @oven/bun-<os>-<arch>), so nothing is downloaded. */
  executablePath?: string;
  /** More `--define NAME="value"` pairs (release channel, keys, update URL). */
  defines?: Record<string, string>;
  /** More files to embed as-is (the uv binary, see embedUv). */
  embed?: string[];
}

/**
 * How code in the executable names an extra entrypoint for `new Worker`: "./" and its path from the
 * folder that holds all entrypoints, files embedded as-is included (Bun lays them out from there).
 */
export function embeddedWorkerPath(entrypoints: string[], worker: string): string {
  const dirs = entrypoints.map((path) => resolve(ROOT, path).split(sep).slice(0, -1));
  const target = resolve(ROOT, worker).split(sep);
  let common = 0;
  while (common < target.length - 1 && dirs.every((dir) => dir[common] === target[common])) common++;
  return "./" + target.slice(common).join("/");
}

/**
 * Copies (or hard-links) the files to embed into a folder inside the repository. Bun lays out the
 * executable's files from a root it derives from where the entrypoints are; with files outside the
 * repository (an --outfile or a release --out in /tmp) that root is not the folder
 * embeddedWorkerPath computes, the worker is not found at run time, and every model with a chat
 * template fails to load. Inside the repository the two agree wherever the executable is written.
 */
async function stageEmbeds(files: string[]): Promise<{ paths: string[]; dir: string }> {
  const dir = join(ROOT, ".cache", "compile", `embed-${process.pid}-${Date.now()}`);
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const file of files) {
    const staged = join(dir, basename(file));
    if (paths.includes(staged)) throw new Error(`two files to embed are both named ${basename(file)}`);
    await link(file, staged).catch(() => copyFile(file, staged));
    paths.push(staged);
  }
  return { paths, dir };
}

/** The compiled executable's file table names the worker where LMX_TEMPLATE_WORKER points. */
export function workerIsEmbeddedAt(executable: Uint8Array, workerPath: string): boolean {
  const built = workerPath.replace(/^\.\//, "").replace(/\.ts$/, ".js");
  return Buffer.from(executable.buffer, executable.byteOffset, executable.byteLength).includes(`/root/${built}`);
}

/**
 * The web dashboard's script, built now and written next to the executable for `bun build
 * --compile` to embed (src/dashboard/bundle.ts explains why it is a file of its own).
 */
export async function writeDashboardBundle(outDir: string): Promise<string> {
  const path = join(outDir, DASHBOARD_BUNDLE_FILE);
  await mkdir(outDir, { recursive: true });
  await Bun.write(path, await buildDashboardBundle());
  return path;
}

/** Runs `bun build --compile`, embedding the engine bundle and the dashboard and telling the code where to find them. */
export async function compileExecutable(options: CompileOptions): Promise<void> {
  const { bundle } = options;
  const dashboard = await writeDashboardBundle(dirname(options.outfile));
  const staged = await stageEmbeds([bundle.path, dashboard, ...(options.embed ?? [])]);
  try {
    await compileStaged(options, staged.paths, basename(dashboard));
  } finally {
    await rm(staged.dir, { recursive: true, force: true });
  }
}

/** The compile itself, with every file to embed staged (same base names as the originals). */
async function compileStaged(options: CompileOptions, embeds: string[], dashboardName: string): Promise<void> {
  const { bundle } = options;
  const workerPath = embeddedWorkerPath([options.entry, ...embeds], TEMPLATE_WORKER);
  const define = (name: string, value: string): string[] => ["--define", `${name}=${JSON.stringify(value)}`];
  const args = [
    process.execPath,
    "build",
    "--compile",
    // Lets the executable's import() of the unpacked bundle read package.json "exports"/"type".
    "--compile-autoload-package-json",
    // A server must not pick up whatever .env or bunfig.toml sits in the directory it starts from.
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    "--external",
    "node-llama-cpp",
    ...define("LMX_BUILD_VERSION", options.version),
    ...define("LMX_TEMPLATE_WORKER", workerPath),
    ...define("LMX_DASHBOARD_BUNDLE", dashboardName),
    ...define("LMX_ENGINE_LLAMA_ARCHIVE", basename(bundle.path)),
    ...define("LMX_ENGINE_LLAMA_SHA256", bundle.sha256),
    ...define("LMX_ENGINE_LLAMA_VERSION", bundle.nodeLlamaCppVersion),
    ...define("LMX_ENGINE_LLAMA_TARGET", bundle.target),
    ...define("LMX_ENGINE_LLAMA_CPP_RELEASE", bundle.llamaCppRelease),
    ...Object.entries(options.defines ?? {}).flatMap(([name, value]) => define(name, value)),
    ...(options.target === undefined ? [] : [`--target=${options.target}`]),
    ...(options.executablePath === undefined ? [] : ["--compile-executable-path", options.executablePath]),
    options.entry,
    // Workers are separate entrypoints in a compiled executable (chat templates render in one).
    TEMPLATE_WORKER,
    // An extra entrypoint that is not code is embedded as-is and shows up in Bun.embeddedFiles.
    ...embeds,
    "--outfile",
    options.outfile,
  ];
  const proc = Bun.spawn(args, { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`bun build --compile failed with exit code ${code}`);
  if (!workerIsEmbeddedAt(await Bun.file(options.outfile).bytes(), workerPath)) {
    throw new Error(`${options.outfile} does not hold the chat template worker at ${workerPath}, where the executable looks for it`);
  }
}

// ---- uv for the MLX runtime (owned with src/runtimes/; keep this block self-contained) ----

/**
 * The uv binary for a platform, taken from the pinned `uv` wheel on PyPI (sha256 checked against
 * the index) and cached in .cache/uv/bin/, plus the defines that tell src/runtimes/uv.ts its name.
 * Pass `file` in CompileOptions.embed and merge `defines` into CompileOptions.defines.
 */
export async function embedUv(outDir: string, platform: string = process.platform, arch: string = process.arch): Promise<{ file: string; defines: Record<string, string> }> {
  const cached = join(ROOT, ".cache", "uv", "bin", `uv-${UV_VERSION}-${platform}-${arch}`);
  if (!existsSync(cached)) await downloadUv(cached, { version: UV_VERSION, platform, arch });
  const file = join(outDir, `uv-${UV_VERSION}-${platform}-${arch}.bin`);
  await mkdir(outDir, { recursive: true });
  copyFileSync(cached, file);
  return { file, defines: { LMX_UV_BINARY: basename(file), LMX_UV_VERSION: UV_VERSION } };
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      outfile: { type: "string", default: "dist/lmx" },
      version: { type: "string" },
      entry: { type: "string", default: "src/cli/main.ts" },
      "prebuilt-addon": { type: "boolean", default: false },
    },
    strict: true,
  });
  const started = performance.now();
  const outfile = resolve(ROOT, values.outfile);
  const entry = resolve(ROOT, values.entry);
  const version = values.version ?? `${readPackageJson(ROOT).version ?? "0.0.0"}-dev`;
  const platform = llamaPlatform();

  // The addon with LMX's patch (runs of tokens), compiled against the prebuilt package's libraries;
  // --prebuilt-addon ships node-llama-cpp's own, where no compiler is at hand.
  let addon: string | undefined;
  if (!values["prebuilt-addon"]) {
    try {
      addon = (await buildLlamaAddon(ROOT, engineLibs(ROOT, undefined, platform.target), (msg) => console.log(msg))).path;
    } catch (err) {
      throw new Error(`cannot compile node-llama-cpp's addon: ${err instanceof Error ? err.message : String(err)} (--prebuilt-addon ships node-llama-cpp's own addon instead, without runs of tokens)`);
    }
  }
  const bundle = await buildEngineBundle(ROOT, dirname(outfile), platform, { addon });
  const bundleSeconds = (performance.now() - started) / 1000;
  console.log(
    `engine bundle ${relative(ROOT, bundle.path)}${addon === undefined ? " (prebuilt addon)" : ""}: ${mb(Bun.file(bundle.path).size)} gzipped, ` +
      `${mb(bundle.uncompressedBytes)} in ${bundle.files} files from ${bundle.packages} packages ` +
      `(${mb(bundle.excludedBytes)} excluded), sha256 ${bundle.sha256}, ${bundleSeconds.toFixed(1)} s`,
  );

  const uv = await embedUv(dirname(outfile));
  await compileExecutable({ entry, outfile, version, bundle, embed: [uv.file], defines: uv.defines });
  const seconds = (performance.now() - started) / 1000;
  console.log(`${relative(ROOT, outfile)} ${version}: ${mb(statSync(outfile).size)}, built in ${seconds.toFixed(1)} s`);
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`build failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
