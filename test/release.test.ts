// The whole distribution path, for real: `bun run release` builds signed releases (linux-x64 to run
// here, darwin-arm64 and darwin-x64 to check their code signatures) into a folder served from
// 127.0.0.1; install.sh installs from it with dash and with bash into temp HOMEs; the installed
// lmx updates itself, rolls back, refuses every kind of bad download, installs and switches engine
// bundles under a running server, and names the engine to install for an unknown architecture.
//
// Builds are shared by all tests (each target is built once per run) and npm tarballs are cached
// in .cache/npm, so only the first run downloads.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { isMachO, MachOSignatureError, verifyMachOSignature } from "../scripts/lib/macho.ts";
import { generateKeyPair, parsePrivateKey, signDetached, verifyDetached, parsePublicKey } from "../src/update/signing.ts";
import { packTarGz, readTarGz } from "../src/util/tar.ts";
import { kv, readGgufFile, writeGgufFile, type GgufValue } from "./fixtures/gguf.ts";
import { ensureFixtures } from "./fixtures/models.ts";

const REPO = resolve(import.meta.dir, "..");
const MODEL = resolve(REPO, "../shared/models/stories260K.gguf");
/** Has a Jinja chat template (ChatML). */
const TEMPLATED_MODEL = ensureFixtures().qwen2Tiny;
const root = mkdtempSync(join(tmpdir(), "lmx-release-test-"));
const relDir = join(root, "release");
const trusted = generateKeyPair();
const rogue = generateKeyPair();
const trustedKey = parsePrivateKey(trusted.privatePem);
const rogueKey = parsePrivateKey(rogue.privatePem);
const OLD = "1.0.0";
const NEW = "1.1.0";
const NEXT_ENGINE = "3.22.1";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], options: { env?: Record<string, string>; cwd?: string; stdin?: Uint8Array } = {}): Promise<Result> {
  const proc = Bun.spawn(argv, {
    cwd: options.cwd ?? root,
    env: options.env ?? (process.env as Record<string, string>),
    stdin: options.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** A user's environment: its own HOME, no LMX_* settings from the test process. */
function userEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith("LMX_")) env[key] = value;
  return { ...env, HOME: home, SHELL: "/bin/bash", PATH: "/usr/local/bin:/usr/bin:/bin", XDG_CONFIG_HOME: join(home, ".config"), ...extra };
}

function sha256(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

function fileSha(path: string): string {
  return sha256(readFileSync(path));
}

// ---- The release server: serves the release folder; /s/<scenario>/… can override single files.

type Override = Uint8Array | string | number | (() => Response);
const overrides = new Map<string, Override>();
const requests: string[] = [];
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const path = new URL(req.url).pathname;
    requests.push(path);
    const override = overrides.get(path);
    if (override !== undefined) {
      if (typeof override === "number") return new Response("no", { status: override });
      if (typeof override === "function") return override();
      return new Response(override);
    }
    const rel = (/^\/s\/[^/]+(\/.*)$/.exec(path)?.[1] ?? path).split("/").filter((part) => part !== "" && part !== "..").join("/");
    const file = Bun.file(join(relDir, rel));
    return (await file.exists()) ? new Response(file) : new Response("not found", { status: 404 });
  },
});
const base = `http://127.0.0.1:${server.port}`;

async function release(args: string[]): Promise<Result> {
  return run([process.execPath, "run", "scripts/release.ts", ...args, "--out", relDir, "--signing-key", join(root, "keys", "lmx-release.key"), "--public-key", join(root, "keys", "lmx-release.pub")], { cwd: REPO });
}

async function mustRelease(args: string[]): Promise<void> {
  const result = await release(args);
  if (result.code !== 0) throw new Error(`release ${args.join(" ")} failed (${result.code}):\n${result.stdout}\n${result.stderr}`);
}

beforeAll(async () => {
  mkdirSync(join(root, "keys"), { recursive: true });
  writeFileSync(join(root, "keys", "lmx-release.key"), trusted.privatePem, { mode: 0o600 });
  writeFileSync(join(root, "keys", "lmx-release.pub"), trusted.publicPem);
  await mustRelease(["--version", OLD, "--targets", "linux-x64,darwin-arm64,darwin-x64", "--base-url", base]);
  await mustRelease(["--version", NEW, "--targets", "linux-x64", "--base-url", base]);
  await mustRelease(["--engine-only", "--node-llama-cpp", NEXT_ENGINE, "--targets", "linux-x64"]);
}, 600_000);

afterAll(async () => {
  await server.stop(true);
  rmSync(root, { recursive: true, force: true });
});

interface ArtifactEntry {
  url: string;
  size: number;
  sha256: string;
}

function manifest(): {
  latest: Record<string, string>;
  releases: Record<string, { platforms: Record<string, ArtifactEntry> }>;
  engines: Record<string, Record<string, { llamaCpp: string; architectures: string[]; platforms: Record<string, ArtifactEntry> }>>;
} {
  return JSON.parse(readFileSync(join(relDir, "manifest.json"), "utf8"));
}

describe("release build", () => {
  test("writes a signed, self-consistent publishable folder", () => {
    const bytes = readFileSync(join(relDir, "manifest.json"));
    expect(verifyDetached(bytes, readFileSync(join(relDir, "manifest.json.sig"), "utf8"), [parsePublicKey(trusted.publicPem)], "manifest")).toBe(trusted.id);
    const m = manifest();
    expect(m.latest.stable).toBe(NEW);
    expect(Object.keys(m.releases).sort()).toEqual([OLD, NEW]);
    expect(Object.keys(m.releases[OLD]?.platforms ?? {}).sort()).toEqual(["darwin-arm64", "darwin-x64", "linux-x64"]);
    for (const version of [OLD, NEW]) {
      const sums = readFileSync(join(relDir, version, "SHA256SUMS"));
      verifyDetached(sums, readFileSync(join(relDir, version, "SHA256SUMS.sig"), "utf8"), [parsePublicKey(trusted.publicPem)], "sums");
      for (const [target, artifact] of Object.entries(m.releases[version]?.platforms ?? {})) {
        const data = readFileSync(join(relDir, artifact.url));
        expect({ target, size: data.length, sha256: sha256(data) }).toEqual({ target, size: artifact.size, sha256: artifact.sha256 });
        expect(sums.toString()).toContain(`${artifact.sha256}  lmx-${target}.tar.gz`);
      }
    }
    const engines = m.engines["llama.cpp"] ?? {};
    expect(Object.keys(engines).sort()).toEqual(["3.21.1", NEXT_ENGINE]);
    // Read from each llama.cpp's source: the newer release knows architectures the older does not.
    expect(engines["3.21.1"]?.architectures).toContain("llama");
    expect(engines["3.21.1"]?.architectures).not.toContain("maple");
    expect(engines[NEXT_ENGINE]?.architectures).toContain("maple");
    expect(engines[NEXT_ENGINE]?.llamaCpp).not.toBe(engines["3.21.1"]?.llamaCpp);
    const engineFile = join(relDir, engines[NEXT_ENGINE]?.platforms["linux-x64"]?.url ?? "missing");
    verifyDetached(readFileSync(engineFile), readFileSync(`${engineFile}.sig`, "utf8"), [parsePublicKey(trusted.publicPem)], "engine");
    const script = readFileSync(join(relDir, "install.sh"), "utf8");
    expect(script).toContain(`RELEASE_PUBLIC_KEYS="${parsePublicKey(trusted.publicPem).spki}"`);
    expect(script).toContain(`DEFAULT_BASE_URL="${base}"`);
  });

  test("macOS executables and every native library in their engine bundles carry valid code signatures", async () => {
    const m = manifest();
    for (const target of ["darwin-arm64", "darwin-x64"]) {
      let executables = 0;
      for await (const entry of readTarGz(Bun.file(join(relDir, m.releases[OLD]?.platforms[target]?.url ?? "")))) {
        if (entry.type !== "file") continue;
        expect(entry.path).toBe("lmx");
        const [slice] = verifyMachOSignature(entry.data, `lmx ${target}`);
        expect(slice?.arch).toBe(target === "darwin-arm64" ? "arm64" : "x86_64");
        executables++;
        // The check really recomputes page hashes: one flipped byte in the code is caught.
        const tampered = entry.data.slice();
        tampered[8192] = (tampered[8192] as number) ^ 0xff;
        expect(() => verifyMachOSignature(tampered, "tampered")).toThrow(MachOSignatureError);
      }
      expect(executables).toBe(1);
      let libraries = 0;
      for await (const entry of readTarGz(Bun.file(join(relDir, m.engines["llama.cpp"]?.["3.21.1"]?.platforms[target]?.url ?? "")))) {
        if (entry.type !== "file" || !/\.(node|dylib|so)$/.test(entry.path)) continue;
        expect(isMachO(entry.data)).toBe(true);
        verifyMachOSignature(entry.data, entry.path);
        libraries++;
      }
      expect(libraries).toBeGreaterThan(5);
    }
  });

  test("refuses a target whose prebuilt engine package is not on npm, and never overwrites a version", async () => {
    const missing = await release(["--engine-only", "--node-llama-cpp", NEXT_ENGINE, "--targets", "linux-x64,darwin-arm64"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`@node-llama-cpp/mac-arm64-metal@${NEXT_ENGINE}`);
    const again = await release(["--version", NEW, "--targets", "linux-x64"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("never overwritten");
  });
});

// ---- install.sh

const homeDash = join(root, "home-dash");
const homeBash = join(root, "home-bash");
const lmxIn = (home: string): string => join(home, ".lmx", "bin", "lmx");

async function install(shell: string, home: string, args: string[]): Promise<Result> {
  mkdirSync(home, { recursive: true });
  const pipeline = `curl -fsSL ${base}/install.sh | ${shell} -s -- ${args.join(" ")}`;
  return run(["/bin/sh", "-c", pipeline], { env: userEnv(home, { LMX_INSTALL_BASE_URL: base }) });
}

describe("install.sh", () => {
  test("passes shellcheck", async () => {
    const result = await run(["shellcheck", "install.sh"], { cwd: REPO });
    expect(`${result.stdout}${result.stderr}`).toBe("");
    expect(result.code).toBe(0);
  });

  test("installs a pinned version with dash, verifying the signature, and re-runs idempotently", async () => {
    const first = await install("dash", homeDash, ["--version", OLD]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain("signature of SHA256SUMS verified");
    expect(first.stdout).toContain("checksum verified");
    expect(first.stdout).toContain(`export PATH="${join(homeDash, ".lmx", "bin")}:$PATH"`);
    expect(first.stdout).toContain("lmx serve --model");
    const version = await run([lmxIn(homeDash), "--version"], { env: userEnv(homeDash) });
    expect(version.stdout.trim()).toBe(`lmx ${OLD}`);
    const rc = readFileSync(join(homeDash, ".bashrc"), "utf8");
    expect(rc).toContain('export PATH="$HOME/.lmx/bin:$PATH"');

    const second = await install("dash", homeDash, ["--version", OLD]);
    expect(second.code).toBe(0);
    expect(readFileSync(join(homeDash, ".bashrc"), "utf8")).toBe(rc);
    expect(existsSync(join(homeDash, ".lmx", "bin", "lmx.old"))).toBe(false);
    expect(readdirSync(join(homeDash, ".lmx", "bin"))).toEqual(["lmx"]);
  });

  test("installs the channel's latest with bash, honouring --prefix and --no-modify-path", async () => {
    const prefix = join(homeBash, "opt", "lmx");
    const result = await install("bash", homeBash, ["--prefix", prefix, "--no-modify-path"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Installed lmx ${NEW} at ${prefix}/bin/lmx`);
    const version = await run([join(prefix, "bin", "lmx"), "--version"], { env: userEnv(homeBash) });
    expect(version.stdout.trim()).toBe(`lmx ${NEW}`);
    expect(existsSync(join(homeBash, ".bashrc"))).toBe(false);
  });

  test("refuses a tampered SHA256SUMS and an unknown version, installing nothing", async () => {
    const home = join(root, "home-tampered");
    const sums = readFileSync(join(relDir, OLD, "SHA256SUMS"), "utf8");
    overrides.set(`/s/tampered/${OLD}/SHA256SUMS`, sums.replace(/^[0-9a-f]/gm, (c) => (c === "0" ? "1" : "0")));
    mkdirSync(home, { recursive: true });
    const tampered = await run(["/bin/sh", "-c", `curl -fsSL ${base}/install.sh | sh -s -- --version ${OLD}`], { env: userEnv(home, { LMX_INSTALL_BASE_URL: `${base}/s/tampered` }) });
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toContain("signature");
    const unknown = await run(["/bin/sh", "-c", `curl -fsSL ${base}/install.sh | sh -s -- --version 9.9.9`], { env: userEnv(home, { LMX_INSTALL_BASE_URL: base }) });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("9.9.9 is not published");
    expect(existsSync(join(home, ".lmx"))).toBe(false);
  });

  test("a truncated install.sh runs nothing, in dash and bash", async () => {
    const script = readFileSync(join(relDir, "install.sh"));
    const last = '{ main "$@"; }\n';
    expect(script.toString().endsWith(last)).toBe(true);
    const call = script.length - Buffer.byteLength(last);
    // Cut points all through the file, and at every byte of the final call, up to its closing brace.
    const cuts = new Set<number>([0, 1]);
    for (let i = 1; i < 24; i++) cuts.add(Math.floor((call * i) / 24));
    for (let cut = call; cut <= script.length - 2; cut++) cuts.add(cut);
    const home = join(root, "home-truncated");
    mkdirSync(home, { recursive: true });
    for (const shell of ["dash", "bash"]) {
      for (const cut of cuts) {
        const before = requests.length;
        await run([shell, "-s", "--", "--version", OLD], { stdin: script.subarray(0, cut), env: userEnv(home, { LMX_INSTALL_BASE_URL: `${base}/s/truncated` }) });
        expect({ shell, cut, requests: requests.slice(before) }).toEqual({ shell, cut, requests: [] });
        expect({ shell, cut, home: readdirSync(home) }).toEqual({ shell, cut, home: [] });
      }
    }
  });
});

// ---- lmx update

describe("lmx update", () => {
  const lmx = lmxIn(homeDash);
  const bin = join(homeDash, ".lmx", "bin");
  const update = (args: string[], env: Record<string, string> = {}): Promise<Result> => run([lmx, "update", ...args], { env: userEnv(homeDash, env) });
  const versionOf = async (path: string): Promise<string> => (await run([path, "--version"], { env: userEnv(homeDash) })).stdout.trim();

  test(`updates ${OLD} → ${NEW}, keeps lmx.old, and rolls back`, async () => {
    const check = await update(["--check"]);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(`latest on stable: lmx ${NEW}`);
    expect(check.stdout).toContain("An update is available");
    expect(check.stdout).toContain(`A newer engine is available: ${NEXT_ENGINE}`);

    const updated = await update([]);
    expect(updated.stderr).toBe("");
    expect(updated.code).toBe(0);
    expect(updated.stdout).toContain(`Updated lmx ${OLD} → ${NEW}`);
    expect(await versionOf(lmx)).toBe(`lmx ${NEW}`);
    expect(await versionOf(join(bin, "lmx.old"))).toBe(`lmx ${OLD}`);
    expect(readdirSync(bin).sort()).toEqual(["lmx", "lmx.old"]);

    const again = await update([]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("already");

    const back = await update(["--rollback"]);
    expect(back.code).toBe(0);
    expect(back.stdout).toContain(`Rolled back lmx ${NEW} → ${OLD}`);
    expect(await versionOf(lmx)).toBe(`lmx ${OLD}`);
    expect(await versionOf(join(bin, "lmx.old"))).toBe(`lmx ${NEW}`);
  }, 120_000);

  test("every bad download leaves the installed lmx untouched and runnable", async () => {
    const manifestBytes = readFileSync(join(relDir, "manifest.json"));
    const manifestSig = readFileSync(join(relDir, "manifest.json.sig"), "utf8");
    const artifact = manifest().releases[NEW]?.platforms["linux-x64"];
    if (artifact === undefined) throw new Error("no linux-x64 artifact");
    const archive = readFileSync(join(relDir, artifact.url));
    const marker = join(root, "executed-unverified");
    const withArtifact = (change: (a: ArtifactEntry) => void, key = trustedKey.key): { body: Uint8Array; sig: string } => {
      const m = manifest();
      change(m.releases[NEW]?.platforms["linux-x64"] as ArtifactEntry);
      const body = new TextEncoder().encode(JSON.stringify(m, null, 2));
      return { body, sig: signDetached(body, key) };
    };
    const script = (text: string): Promise<Uint8Array> => packTarGz([{ type: "file", path: "lmx", data: new TextEncoder().encode(text), mode: 0o755 }]);
    const scenario = (name: string, files: Record<string, Override>): string => {
      for (const [file, value] of Object.entries(files)) overrides.set(`/s/${name}/${file}`, value);
      return `${base}/s/${name}`;
    };
    const unknownKey = withArtifact(() => undefined, rogueKey.key);
    const evil = await script(`#!/bin/sh\ntouch ${marker}\necho "lmx ${NEW}"\n`);
    const wrongSize = withArtifact((a) => { a.size += 1; });
    const failing = await script("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n");
    const failingManifest = withArtifact((a) => { a.size = failing.length; a.sha256 = sha256(failing); });
    const liar = await script('#!/bin/sh\necho "lmx 6.6.6"\n');
    const liarManifest = withArtifact((a) => { a.size = liar.length; a.sha256 = sha256(liar); });
    const flipped = archive.slice();
    flipped[1000] = (flipped[1000] as number) ^ 0xff;
    const cases: Array<{ name: string; base: string; error: RegExp }> = [
      { name: "altered manifest", base: scenario("altered", { "manifest.json": new TextEncoder().encode(manifestBytes.toString().replace(`"latest"`, `"latest" `)), "manifest.json.sig": manifestSig }), error: /signature of .* does not match/ },
      { name: "unknown key", base: scenario("rogue", { "manifest.json": unknownKey.body, "manifest.json.sig": unknownKey.sig }), error: new RegExp(`signed by key ${rogue.id}, which this lmx does not trust`) },
      { name: "missing signature", base: scenario("unsigned", { "manifest.json.sig": 404 }), error: /has no signature/ },
      { name: "malformed signature", base: scenario("garbled", { "manifest.json.sig": "lmx-signature-v1 ed25519 nonsense" }), error: /malformed/ },
      { name: "wrong size", base: scenario("size", { "manifest.json": wrongSize.body, "manifest.json.sig": wrongSize.sig }), error: /truncated: got \d+ of \d+ bytes/ },
      { name: "replaced archive", base: scenario("evil", { [artifact.url]: evil }), error: /truncated|larger/ },
      { name: "checksum mismatch", base: scenario("flipped", { [artifact.url]: flipped }), error: /checksum mismatch/ },
      {
        name: "truncated download",
        base: scenario("cut", {
          [artifact.url]: () => new Response(new ReadableStream({ start(c) { c.enqueue(archive.subarray(0, archive.length >> 1)); c.close(); } })),
        }),
        error: /truncated: got \d+ of \d+ bytes|broke off/,
      },
      { name: "smoke test fails", base: scenario("smoke", { "manifest.json": failingManifest.body, "manifest.json.sig": failingManifest.sig, [artifact.url]: failing }), error: /smoke test failed: .*exited with 3:\ncannot start/ },
      { name: "smoke test reports another version", base: scenario("liar", { "manifest.json": liarManifest.body, "manifest.json.sig": liarManifest.sig, [artifact.url]: liar }), error: /reports version 6\.6\.6/ },
    ];
    const before = fileSha(lmx);
    const previous = fileSha(join(bin, "lmx.old"));
    for (const c of cases) {
      const result = await update([], { LMX_UPDATE_BASE_URL: c.base });
      expect({ name: c.name, code: result.code }).toEqual({ name: c.name, code: 1 });
      expect({ name: c.name, stderr: result.stderr }).toEqual({ name: c.name, stderr: expect.stringMatching(c.error) });
      expect(result.stderr).toContain("The installed lmx was not changed.");
      expect({ name: c.name, lmx: fileSha(lmx), old: fileSha(join(bin, "lmx.old")) }).toEqual({ name: c.name, lmx: before, old: previous });
      expect({ name: c.name, files: readdirSync(bin).sort() }).toEqual({ name: c.name, files: ["lmx", "lmx.old"] });
      expect(await versionOf(lmx)).toBe(`lmx ${OLD}`);
    }
    expect(existsSync(marker)).toBe(false);
  }, 180_000);
});

// ---- Engines

async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = probe.port as number;
  await probe.stop(true);
  return port;
}

async function startServe(lmx: string, home: string, args: string[]): Promise<{ url: string; proc: Bun.Subprocess<"ignore", "pipe", "pipe">; logs: () => Promise<string> }> {
  const port = await freePort();
  const proc = Bun.spawn([lmx, "serve", "--port", String(port), "--threads", "1", ...args], { env: userEnv(home), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const logs = async (): Promise<string> => (await output).join("\n");
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`lmx serve exited with ${proc.exitCode}:\n${await logs()}`);
    if (await fetch(`${url}/health`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) throw new Error("lmx serve did not become healthy");
    await Bun.sleep(100);
  }
  return { url, proc, logs };
}

async function chat(url: string, model: string): Promise<{ status: number; body: { error?: { code?: string; message?: string }; choices?: unknown[] } }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 4 }),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code?: string; message?: string }; choices?: unknown[] } };
}

async function stopServe(proc: Bun.Subprocess): Promise<number> {
  proc.kill("SIGTERM");
  const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "timeout" as const)]);
  if (code === "timeout") {
    proc.kill("SIGKILL");
    throw new Error("lmx serve did not stop within 10 s");
  }
  return code;
}

describe("engine bundles", () => {
  const lmx = lmxIn(homeDash);
  const engineCmd = (args: string[]): Promise<Result> => run([lmx, "engine", ...args], { env: userEnv(homeDash) });

  test(`engine update installs ${NEXT_ENGINE} side by side and a running server switches at its next load`, async () => {
    const serve = await startServe(lmx, homeDash, ["--model", `a=${MODEL}`, "--model", `b=${MODEL}`, "--model", `templated=${TEMPLATED_MODEL}`]);
    try {
      expect((await chat(serve.url, "a")).status).toBe(200);
      // A chat template renders in the executable's embedded worker, which a release built outside
      // the repository once looked for at the wrong path: every templated model failed to load.
      expect(await chat(serve.url, "templated")).toMatchObject({ status: 200 });
      const updated = await engineCmd(["update"]);
      expect(updated.code).toBe(0);
      expect(updated.stdout).toContain(`Installed and selected llama.cpp engine ${NEXT_ENGINE}`);
      expect(existsSync(join(homeDash, ".lmx", "engines", "llama.cpp", `${NEXT_ENGINE}-linux-x64`))).toBe(true);

      // Model b is the next load: the server answers 503 and restarts itself into the new engine.
      const switching = await chat(serve.url, "b");
      expect(switching.status).toBe(503);
      expect(switching.body.error?.code).toBe("engine_restarting");
      const deadline = Date.now() + 60_000;
      let answer = switching;
      while (answer.status !== 200 && Date.now() < deadline) {
        await Bun.sleep(250);
        answer = await chat(serve.url, "b").catch(() => switching);
      }
      expect(answer.status).toBe(200);
      const system = (await (await fetch(`${serve.url}/admin/v1/system`)).json()) as { engines: Array<{ node_llama_cpp: string; source: string }> };
      expect(system.engines[0]).toMatchObject({ node_llama_cpp: NEXT_ENGINE, source: "installed" });
      // Restarted in place (execve): the same process, still running.
      expect(serve.proc.exitCode).toBeNull();
      expect(await stopServe(serve.proc)).toBe(0);
      const logs = await serve.logs();
      expect(logs).toContain(`using llama.cpp engine nodeLlamaCpp=${NEXT_ENGINE} source=installed`);
    } finally {
      if (serve.proc.exitCode === null) serve.proc.kill("SIGKILL");
    }
    const list = await engineCmd(["list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`\\*\\s+${NEXT_ENGINE.replace(/\./g, "\\.")}\\s+\\S+\\s+\\d+\\s+in use, installed`));
    expect(list.stdout).toMatch(/3\.21\.1\s+v\S+\s+\d+\s+embedded, installed/);
    const back = await engineCmd(["use", "3.21.1"]);
    expect(back.code).toBe(0);
    expect(JSON.parse(readFileSync(join(homeDash, ".lmx", "engines", "llama.cpp", "current.json"), "utf8")).version).toBe("3.21.1");
    const bogus = await engineCmd(["use", "9.9.9"]);
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toContain("engine 9.9.9 is not installed");

    // The same through the admin API (what bots and the dashboard use), on a running server.
    const admin = await startServe(lmx, homeDash, ["--model", `a=${MODEL}`]);
    try {
      const listed = (await (await fetch(`${admin.url}/admin/v1/engines`)).json()) as { data: { version: string; selected: boolean; installed: boolean }[] };
      expect(listed.data.map((r) => [r.version, r.selected, r.installed])).toEqual(expect.arrayContaining([[NEXT_ENGINE, false, true], ["3.21.1", true, true]]));
      const post = (path: string, body: unknown) => fetch(`${admin.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const use = await post("/admin/v1/engines/use", { version: NEXT_ENGINE });
      expect(await use.json()).toMatchObject({ version: NEXT_ENGINE, previous: "3.21.1", changed: true });
      expect(JSON.parse(readFileSync(join(homeDash, ".lmx", "engines", "llama.cpp", "current.json"), "utf8")).version).toBe(NEXT_ENGINE);
      const missing = await post("/admin/v1/engines/use", { version: "9.9.9" });
      expect(missing.status).toBe(409);
      expect(((await missing.json()) as { error: { message: string } }).error.message).toContain("engine 9.9.9 is not installed");
      expect((await post("/admin/v1/engines/use", { version: "3.21.1" })).status).toBe(200);
      expect(JSON.parse(readFileSync(join(homeDash, ".lmx", "engines", "llama.cpp", "current.json"), "utf8")).version).toBe("3.21.1");
    } finally {
      await stopServe(admin.proc);
    }
  }, 180_000);

  test("loading a model of an architecture the engine lacks names it and the command that installs support", async () => {
    const source = readGgufFile(MODEL);
    const metadata = new Map<string, GgufValue>();
    for (const [key, value] of source.metadata) metadata.set(key.startsWith("llama.") ? `maple.${key.slice(6)}` : key, value);
    metadata.set("general.architecture", kv.string("maple"));
    const path = join(root, "maple-test.gguf");
    writeGgufFile(path, { metadata, tensors: source.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: t.data })) });

    expect((await engineCmd(["use", "3.21.1"])).code).toBe(0);
    const serve = await startServe(lmx, homeDash, ["--model", path]);
    try {
      const answer = await chat(serve.url, "maple-test");
      expect(answer.status).toBe(500);
      expect(answer.body.error?.code).toBe("unsupported_architecture");
      expect(answer.body.error?.message).toContain('its architecture "maple" is not supported by the active llama.cpp engine (node-llama-cpp 3.21.1');
      expect(answer.body.error?.message).toContain(`run "lmx engine update ${NEXT_ENGINE}"`);
    } finally {
      await stopServe(serve.proc);
    }
  }, 120_000);
});

test("lmx service prints its unit without installing it, and shows the service log", async () => {
  const home = homeBash;
  const lmx = join(home, "opt", "lmx", "bin", "lmx");
  const printed = await run([lmx, "service", "install", "--print", "--port", "1300", "--model", `m=${MODEL}`, "--api-key", "sekrit"], { env: userEnv(home) });
  expect(printed.code).toBe(0);
  expect(printed.stdout).toContain(`# ${join(home, ".config", "systemd", "user", "lmx.service")} (mode 644)`);
  expect(printed.stdout).toContain(`ExecStart="${lmx}" "serve" "--port=1300" "--model=m=${MODEL}"`);
  expect(printed.stdout).toContain('LMX_API_KEYS="sekrit"');
  expect(printed.stdout.split("ExecStart=")[1]?.split("\n")[0]).not.toContain("sekrit");
  expect(existsSync(join(home, ".config", "systemd"))).toBe(false);

  const logDir = join(home, ".lmx", "logs");
  mkdirSync(logDir, { recursive: true });
  writeFileSync(join(logDir, "lmx.log"), "first\nsecond\nthird\n");
  const logs = await run([lmx, "service", "logs", "-n", "2"], { env: userEnv(home) });
  expect(logs.code).toBe(0);
  expect(logs.stdout).toBe("second\nthird\n");
});

