// The fast parts of `lmx engine build`: what a REF and a repository may be, how build output turns
// into phases and percentages, which missing tool is named with which install command, and the
// build's bookkeeping on fake folders (a tiny local git repository stands in for llama.cpp; no
// compiler runs): failures and cancels leave nothing behind, a build of an already registered
// commit compiles nothing, stale temp folders are swept, built engines show up in listings and in
// the unsupported_architecture message. The real compile is test/engine-build.test.ts.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { isExcludedFromBundle } from "../../scripts/build.ts";
import { ENGINE_MARKER_FILE } from "../../src/engines/llama/bundle.ts";
import { hostTarget } from "../../src/engines/llama/platform.ts";
import { listInstalledEngines } from "../../src/engines/llama/selection.ts";
import { configureLog } from "../../src/log.ts";
import { buildEngine } from "../../src/update/engine-build/builder.ts";
import { EngineBuildCancelled, EngineBuildError } from "../../src/update/engine-build/errors.ts";
import { BUILD_INFO_FILE, readBuildInfo } from "../../src/update/engine-build/built.ts";
import { missingPrerequisites, prerequisitesMessage, type PrerequisiteProbe } from "../../src/update/engine-build/prereqs.ts";
import { BuildOutputParser, isErrorLine, type PhaseProgress } from "../../src/update/engine-build/progress.ts";
import { builtEngineVersion, parseBuildRef, parseLlamaRepo } from "../../src/update/engine-build/ref.ts";
import { resolveBuildRequest } from "../../src/update/engine-build/request.ts";
import { builtEngines, listEngines, unsupportedArchitectureMessage } from "../../src/update/engines.ts";

configureLog({ level: "error" });
const MODEL = resolve(import.meta.dir, "../../../shared/models/stories260K.gguf");
const scratch = mkdtempSync(join(tmpdir(), "lmx-engine-build-unit-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("build refs", () => {
  test("release tags, commits, branches and pull requests", () => {
    expect(parseBuildRef("b6000")).toEqual({ kind: "tag", ref: "b6000", remote: "refs/tags/b6000", label: "b6000" });
    expect(parseBuildRef("80FB11AC")).toEqual({ kind: "commit", ref: "80fb11ac", remote: "80fb11ac", label: "" });
    const sha = "80fb11ac73e66d89eae2c6a91d8a77428fa733ed";
    expect(parseBuildRef(sha)).toMatchObject({ kind: "commit", remote: sha });
    expect(parseBuildRef("pr/123")).toEqual({ kind: "pr", ref: "pr/123", remote: "refs/pull/123/head", label: "pr-123" });
    expect(parseBuildRef("PR/0042")).toMatchObject({ ref: "pr/42", remote: "refs/pull/42/head" });
    expect(parseBuildRef("master")).toEqual({ kind: "branch", ref: "master", remote: "master", label: "master" });
    expect(parseBuildRef("gg/glm_5-support")).toMatchObject({ kind: "branch", remote: "gg/glm_5-support", label: "gg-glm-5-support" });
  });

  test("hostile input never reaches git", () => {
    const hostile = [
      "", " ", "-b", "--upload-pack=touch /tmp/x", "main branch", "..", "../x", "a/../b", "a..b", ".hidden", "x/.git",
      "x.lock", "x/", "x.", "a//b", "pr/0", "tag\nx", "a;rm -rf /", "$(id)", "`id`", "a@{1}", "x~1", "x^", "a:b", "*", "x".repeat(201),
    ];
    for (const ref of hostile) expect(() => parseBuildRef(ref), JSON.stringify(ref)).toThrow(/invalid llama\.cpp ref/);
  });

  test("engine versions carry the ref and the commit, in semver build metadata", () => {
    const sha = "51412c3a03e66d89eae2c6a91d8a77428fa733ed";
    expect(builtEngineVersion("3.21.1", parseBuildRef("pr/7"), sha)).toBe("3.21.1+pr-7.51412c3a03");
    expect(builtEngineVersion("3.21.1", parseBuildRef("b6000"), sha)).toBe("3.21.1+b6000.51412c3a03");
    expect(builtEngineVersion("3.21.1", parseBuildRef(sha), sha)).toBe("3.21.1+51412c3a03");
    expect(builtEngineVersion("3.21.1", parseBuildRef("feature/x_y"), sha)).toMatch(/^3\.21\.1\+feature-x-y\.51412c3a03$/);
  });

  test("repositories: URLs of fetch transports and absolute paths only", () => {
    for (const ok of ["https://github.com/ggml-org/llama.cpp", "http://mirror.local/llama.cpp.git", "git://127.0.0.1:9418/llama.cpp.git", "ssh://git@host/llama.cpp", "file:///srv/llama.cpp", "/srv/llama.cpp"]) {
      expect(parseLlamaRepo(ok)).toBe(ok);
    }
    for (const bad of ["", "ext::sh -c id", "ext::sh%20-c%20id", "fd::3", "-u", "--upload-pack=x", "relative/path", "https://", "ftp://host/x", "https://host/a b", "https://host/\u0000"]) {
      expect(() => parseLlamaRepo(bad), JSON.stringify(bad)).toThrow(/invalid llama\.cpp repository/);
    }
  });

  test("a request needs a model to verify with", () => {
    const request = { ref: "b6000", repo: "https://github.com/ggml-org/llama.cpp" };
    expect(() => resolveBuildRequest(request, [])).toThrow(/--verify-model PATH/);
    expect(() => resolveBuildRequest({ ...request, verifyModel: "models/x.gguf" }, [])).toThrow(/absolute path/);
    expect(() => resolveBuildRequest({ ...request, verifyModel: "/etc/passwd" }, [])).toThrow(/absolute path/);
    const known = [
      { path: "/nonexistent/big.gguf", format: "gguf", sizeBytes: 1 },
      { path: MODEL, format: "gguf", sizeBytes: 1_185_376 },
      { path: "/some/mlx", format: "mlx", sizeBytes: 0 },
    ];
    expect(resolveBuildRequest(request, known)).toMatchObject({ verifyModel: MODEL, cpu: "all" });
    expect(resolveBuildRequest({ ...request, verifyModel: MODEL, native: true }, [])).toMatchObject({ verifyModel: MODEL, cpu: "native" });
  });
});

describe("build output", () => {
  const captured = readFileSync(join(import.meta.dir, "../fixtures/engine-build-output.txt"), "utf8");

  test("captured output of a real build becomes phases and percentages", () => {
    const seen: PhaseProgress[] = [];
    const parser = new BuildOutputParser("fetch", (p) => seen.push(p));
    // Chunks split anywhere, as pipes deliver them.
    for (let i = 0; i < captured.length; i += 97) parser.feed(captured.slice(i, i + 97));
    parser.end();
    const fetch = seen.filter((p) => p.phase === "fetch").map((p) => p.percent);
    expect(fetch).toContain(100);
    expect(fetch.every((p, i) => i === 0 || p === null || p >= (fetch[i - 1] ?? 0) || p === 0)).toBe(true);
    const phases = [...new Set(seen.map((p) => p.phase))];
    expect(phases).toEqual(["fetch", "configure", "compile"]);
    const compile = seen.filter((p) => p.phase === "compile").map((p) => p.percent ?? -1);
    expect(compile[0]).toBe(0);
    expect(Math.max(...compile)).toBeGreaterThanOrEqual(5);
    expect(compile).toEqual([...compile].sort((a, b) => a - b));
    // The failure summary is the compiler's message, not the last lines of noise.
    const summary = parser.failureSummary();
    expect(summary).toContain("ggml.c:519:2: error: #error lmx test: this commit does not compile");
    expect(summary).toContain("FAILED: llama.cpp/ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o");
    expect(summary).not.toContain("Building CXX object");
  });

  test("make's percentages and diagnostics of other compilers", () => {
    const seen: PhaseProgress[] = [];
    const parser = new BuildOutputParser("configure", (p) => seen.push(p));
    parser.feed("-- Configuring done\n[  3%] Building C object ggml.c.o\n[ 57%] Built target llama\n[100%] Linking CXX shared module llama-addon.node\n");
    expect(seen.map((p) => p.percent)).toEqual([3, 57, 100]);
    expect(isErrorLine("src/llama.cpp:12:3: error: 'foo' was not declared in this scope")).toBe(true);
    expect(isErrorLine("C:\\src\\x.cpp(12): error C2065: 'foo': undeclared identifier")).toBe(true);
    expect(isErrorLine("clang: fatal error: no input files")).toBe(true);
    expect(isErrorLine("CMake Error at CMakeLists.txt:3 (project):")).toBe(true);
    expect(isErrorLine("src/x.c:1:1: warning: unused variable 'error' [-Wunused-variable]")).toBe(false);
    expect(isErrorLine("/usr/bin/c++ -Werror=format -c x.cpp")).toBe(false);
  });

  test("without compiler errors the summary is the output's tail, bounded", () => {
    const parser = new BuildOutputParser("compile");
    for (let i = 0; i < 100; i++) parser.feed(`line ${i}\n`);
    parser.feed("x".repeat(100_000));
    parser.end();
    const summary = parser.failureSummary().split("\n");
    expect(summary.length).toBe(12);
    expect(summary.at(-1)!.length).toBeLessThanOrEqual(2000);
  });
});

test("the engine bundle carries node-llama-cpp's build tooling but not the llama.cpp source", () => {
  for (const kept of ["llama/CMakeLists.txt", "llama/addon/addon.cpp", "llama/cmake/addVariantSuffix.cmake", "llama/package.json", "llama/toolchains/linux.host-x64.target-arm64.cmake", "llama/llama.cpp.info.json", "llama/grammars/json.gbnf", "dist/cli/cli.js"]) {
    expect(isExcludedFromBundle("node-llama-cpp", kept), kept).toBe(false);
  }
  for (const dropped of ["llama/gitRelease.bundle", "llama/llama.cpp/CMakeLists.txt", "llama/localBuilds/linux-x64/Release/llama-addon.node", "llama/lastBuild.json", "dist/index.d.ts", "templates/x.json"]) {
    expect(isExcludedFromBundle("node-llama-cpp", dropped), dropped).toBe(true);
  }
});

describe("prerequisites", () => {
  const probe = (platform: NodeJS.Platform, missing: string[], extra: Partial<PrerequisiteProbe> = {}): PrerequisiteProbe => ({
    platform,
    which: (name) => (missing.includes(name) ? null : `/usr/bin/${name}`),
    ...extra,
  });

  test("nothing missing, nothing said", () => {
    expect(missingPrerequisites(probe("linux", [], { linuxInstaller: "apt" }))).toEqual([]);
    expect(missingPrerequisites(probe("darwin", [], { xcodeTools: () => true }))).toEqual([]);
  });

  test("each missing tool is named with the command that installs it", () => {
    const linux = missingPrerequisites(probe("linux", ["cmake", "c++", "g++", "clang++", "npm"], { linuxInstaller: "apt" }));
    expect(linux).toEqual([
      { tool: "cmake", install: "sudo apt-get install -y cmake" },
      { tool: "C++ compiler", install: "sudo apt-get install -y g++" },
      { tool: "Node.js (node, npm)", install: "sudo apt-get install -y nodejs npm" },
    ]);
    expect(missingPrerequisites(probe("linux", ["git"], { linuxInstaller: "dnf" }))).toEqual([{ tool: "git", install: "sudo dnf install -y git" }]);
    expect(missingPrerequisites(probe("linux", ["make", "ninja"], { linuxInstaller: null }))[0]?.install).toContain("package manager");
    // One compiler is enough.
    expect(missingPrerequisites(probe("linux", ["c++", "g++"], { linuxInstaller: "apk" }))).toEqual([]);
    const mac = missingPrerequisites(probe("darwin", ["cmake"], { xcodeTools: () => false }));
    expect(mac).toEqual([
      { tool: "Xcode Command Line Tools (clang, git, make)", install: "xcode-select --install" },
      { tool: "cmake", install: "brew install cmake" },
    ]);
    expect(prerequisitesMessage(mac)).toContain("  Xcode Command Line Tools (clang, git, make): xcode-select --install");
  });
});

// ---- the build's bookkeeping, on fake folders

const TARGET = hostTarget();
const allTools: PrerequisiteProbe = { platform: "linux", which: (name) => `/usr/bin/${name}`, linuxInstaller: "apt" };

async function sh(cwd: string, ...args: string[]): Promise<string> {
  const proc = Bun.spawn(args, { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${args.join(" ")}: ${err}`);
  return out.trim();
}

/** A llama.cpp stand-in: one commit with the architecture table, branch "main". */
async function fakeLlamaRepo(): Promise<{ dir: string; commit: string }> {
  const dir = mkdtempSync(join(scratch, "repo-"));
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src/llama-arch.cpp"), 'static const std::map<llm_arch, const char *> LLM_ARCH_NAMES = {\n    { LLM_ARCH_LLAMA, "llama" },\n    { LLM_ARCH_MAPLE, "maple" },\n};\n');
  await sh(dir, "git", "init", "-q", "-b", "main");
  await sh(dir, "git", "add", ".");
  await sh(dir, "git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", "x");
  return { dir, commit: await sh(dir, "git", "rev-parse", "HEAD") };
}

function fakeBase(): string {
  const dir = mkdtempSync(join(scratch, "base-"));
  mkdirSync(join(dir, "node_modules/node-llama-cpp/llama"), { recursive: true });
  writeFileSync(join(dir, "node_modules/node-llama-cpp/package.json"), '{"name":"node-llama-cpp","version":"3.21.1"}');
  writeFileSync(join(dir, "node_modules/node-llama-cpp/llama/CMakeLists.txt"), "");
  writeFileSync(join(dir, ENGINE_MARKER_FILE), "{}");
  return dir;
}

/** A registered built engine folder, as a finished build leaves it. */
function fakeBuilt(home: string, version: string, info: { ref: string; commit: string; architectures: string[] }): string {
  const dir = join(home, "engines", "llama.cpp", `${version}-${TARGET}`);
  mkdirSync(join(dir, "node_modules/node-llama-cpp/llama"), { recursive: true });
  writeFileSync(join(dir, BUILD_INFO_FILE), JSON.stringify({
    ...info, kind: "pr", repo: "git://x/llama.cpp", reportedCommit: info.commit.slice(0, 7), builtAt: "2026-12-03T10:00:00.000Z",
    nodeLlamaCppVersion: "3.21.1", cpu: "native", log: "/x.log", verify: { commit: info.commit.slice(0, 7), release: "x", buildType: "prebuilt", systemInfo: "", text: " there", tokens: 2 },
  }));
  writeFileSync(join(dir, ENGINE_MARKER_FILE), JSON.stringify({ sha256: "0".repeat(64), nodeLlamaCppVersion: version, target: TARGET, extractedAt: "x" }));
  return dir;
}

function entries(home: string): string[] {
  const dir = join(home, "engines", "llama.cpp");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

describe("build bookkeeping", () => {
  test("a missing tool stops the build before it fetches, leaving only the log", async () => {
    const home = mkdtempSync(join(scratch, "home-"));
    const { dir } = await fakeLlamaRepo();
    const err = await buildEngine({
      lmxHome: home, ref: parseBuildRef("main"), repo: dir, baseDir: fakeBase(), target: TARGET, verifyModel: MODEL, cpu: "native",
      probe: { ...allTools, which: (name) => (name === "cmake" ? null : `/usr/bin/${name}`) },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineBuildError);
    expect((err as Error).message).toContain("cmake: sudo apt-get install -y cmake");
    expect((err as Error).message).toMatch(/Full log: .*engine-build-.*-main\.log/);
    expect(entries(home)).toEqual([]);
    expect(readdirSync(join(home, "logs"))).toHaveLength(1);
  });

  test("a ref the repository lacks fails, and the temp folder is gone", async () => {
    const home = mkdtempSync(join(scratch, "home-"));
    const { dir } = await fakeLlamaRepo();
    for (const ref of ["nope", "pr/9", "b1"]) {
      const err = await buildEngine({ lmxHome: home, ref: parseBuildRef(ref), repo: dir, baseDir: fakeBase(), target: TARGET, verifyModel: MODEL, cpu: "native", probe: allTools }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EngineBuildError);
      expect((err as Error).message).toMatch(/cannot fetch (branch or tag nope|pull request 9|release tag b1) from /);
      expect((err as Error).message).toContain("couldn't find remote ref");
      expect(entries(home)).toEqual([]);
    }
    const missing = await buildEngine({ lmxHome: home, ref: parseBuildRef("deadbeef"), repo: dir, baseDir: fakeBase(), target: TARGET, verifyModel: MODEL, cpu: "native", probe: allTools }).catch((e: unknown) => e);
    expect((missing as Error).message).toContain(`commit deadbeef is not in ${dir}`);
    expect(entries(home)).toEqual([]);
  });

  test("a cancel during the fetch leaves nothing behind", async () => {
    const home = mkdtempSync(join(scratch, "home-"));
    const { dir } = await fakeLlamaRepo();
    const ac = new AbortController();
    const err = await buildEngine({
      lmxHome: home, ref: parseBuildRef("main"), repo: dir, baseDir: fakeBase(), target: TARGET, verifyModel: MODEL, cpu: "native", probe: allTools,
      signal: ac.signal, onProgress: (p) => p.phase === "fetch" && ac.abort(),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineBuildCancelled);
    expect(entries(home)).toEqual([]);
  });

  test("a commit already built and registered is not compiled again", async () => {
    const home = mkdtempSync(join(scratch, "home-"));
    const { dir, commit } = await fakeLlamaRepo();
    const version = builtEngineVersion("3.21.1", parseBuildRef("main"), commit);
    fakeBuilt(home, version, { ref: "main", commit, architectures: ["llama", "maple"] });
    // With a base that carries no compiler setup at all, only the early return can succeed.
    const built = await buildEngine({ lmxHome: home, ref: parseBuildRef("main"), repo: dir, baseDir: fakeBase(), target: TARGET, verifyModel: MODEL, cpu: "native", probe: allTools });
    expect(built).toMatchObject({ version, existed: true, info: { commit } });
    expect(entries(home)).toEqual([`${version}-${TARGET}`]);
  });

  test("a short commit id is found in the repository's branches", async () => {
    const home = mkdtempSync(join(scratch, "home-"));
    const { dir, commit } = await fakeLlamaRepo();
    const ref = parseBuildRef(commit.slice(0, 8));
    const version = builtEngineVersion("3.21.1", ref, commit);
    expect(version).toBe(`3.21.1+${commit.slice(0, 10)}`);
    fakeBuilt(home, version, { ref: ref.ref, commit, architectures: ["llama"] });
    const built = await buildEngine({ lmxHome: home, ref, repo: dir, baseDir: fakeBase(), target: TARGET, verifyModel: MODEL, cpu: "native", probe: allTools });
    expect(built).toMatchObject({ version, existed: true });
    expect(entries(home)).toEqual([`${version}-${TARGET}`]);
  });

  test("temp folders of dead builds are swept once old; a live one is kept", async () => {
    const home = mkdtempSync(join(scratch, "home-"));
    const root = join(home, "engines", "llama.cpp");
    const dead = Bun.spawn([process.execPath, "-e", "0"]);
    await dead.exited;
    const old = join(root, `.build-${dead.pid}-0000aaaa`);
    const fresh = join(root, `.build-${dead.pid}-0000bbbb`);
    const live = join(root, `.build-${process.pid === 1 ? 2 : 1}-0000cccc`);
    for (const dir of [old, fresh, live]) mkdirSync(dir, { recursive: true });
    const longAgo = new Date(Date.now() - 3600_000);
    utimesSync(old, longAgo, longAgo);
    utimesSync(live, longAgo, longAgo);
    const { dir } = await fakeLlamaRepo();
    await buildEngine({ lmxHome: home, ref: parseBuildRef("nope"), repo: dir, baseDir: fakeBase(), target: TARGET, verifyModel: MODEL, cpu: "native", probe: allTools }).catch(() => undefined);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(live)).toBe(true);
  });

  test("built engines are listed with their source and named by unsupported_architecture", async () => {
    const home = mkdtempSync(join(scratch, "home-"));
    const maple = fakeBuilt(home, "3.21.1+pr-7.51412c3a03", { ref: "pr/7", commit: "51412c3a03e66d89eae2c6a91d8a77428fa733ed", architectures: ["llama", "maple"] });
    fakeBuilt(home, "3.21.1+b6000.80fb11ac73", { ref: "b6000", commit: "80fb11ac73e66d89eae2c6a91d8a77428fa733ed", architectures: ["llama"] });
    // A folder without its marker is an unfinished one: never listed.
    mkdirSync(join(home, "engines", "llama.cpp", `3.21.1+pr-8.0000000000-${TARGET}`));
    expect(listInstalledEngines(home, TARGET).map((e) => e.version).sort()).toEqual(["3.21.1+b6000.80fb11ac73", "3.21.1+pr-7.51412c3a03"]);
    expect(readBuildInfo(maple)).toMatchObject({ ref: "pr/7", architectures: ["llama", "maple"] });
    expect(builtEngines(home).map((b) => b.version).sort()).toEqual(["3.21.1+b6000.80fb11ac73", "3.21.1+pr-7.51412c3a03"]);
    const row = listEngines(home).find((r) => r.version === "3.21.1+pr-7.51412c3a03");
    expect(row).toMatchObject({ installed: true, selected: false, compatible: true, architectures: 2, build: { ref: "pr/7", commit: "51412c3a03e66d89eae2c6a91d8a77428fa733ed", cpu: "native" } });

    const knows = await unsupportedArchitectureMessage(home, "m", "maple");
    expect(knows).toContain('its architecture "maple" is not supported by the active llama.cpp engine');
    expect(knows).toContain('The engine built from llama.cpp pr/7 (51412c3a03) supports it: run "lmx engine use 3.21.1+pr-7.51412c3a03".');
    const none = await unsupportedArchitectureMessage(home, "m", "glm5");
    expect(none).toContain("Installed built engines do not know it either (");
    expect(none).toContain("3.21.1+b6000.80fb11ac73 from b6000");
    expect(none).toContain('"lmx engine build <ref>" builds an engine from the llama.cpp release, commit, branch or pr/NUMBER that adds it.');
    const empty = await unsupportedArchitectureMessage(mkdtempSync(join(scratch, "home-")), "m", "glm5");
    expect(empty).not.toContain("Installed built engines");
    expect(empty).toContain('"lmx engine build <ref>"');
  });
});
