// Builds a publishable release folder.
//
//   bun run release -- --version 1.2.0 --out release/ [--targets darwin-arm64,linux-x64] [--channel stable]
//                      --signing-key ~/keys/lmx-release.key --public-key ~/keys/lmx-release.pub[,next.pub]
//                      [--base-url https://example.com/lmx]
//   bun run release -- --engine-only [--node-llama-cpp 3.22.1] --out release/ [--targets …] --signing-key … --public-key …
//
// For every target it packs the engine bundle (node-llama-cpp + that platform's prebuilt package
// from npm; for the machine's own target, with LMX's addon compiled against that package, see
// scripts/lib/llama-addon.ts), compiles `lmx` with Bun's runtime for that platform (from npm, passed with
// --compile-executable-path, so nothing is downloaded by the compiler), checks macOS code
// signatures page by page, and packs lmx-<os>-<arch>.tar.gz. Then it writes SHA256SUMS, signs it,
// merges the release into manifest.json, signs that, and writes install.sh with the public keys
// and base URL filled in. Existing versions in --out are kept, so publishing = copying the folder.
//
// The signing key is a file (--signing-key, or LMX_RELEASE_SIGNING_KEY_FILE) or PEM text in
// LMX_RELEASE_SIGNING_KEY; it never needs to be inside the repository.

import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { hostTarget, llamaPlatform, SUPPORTED_LLAMA_TARGETS } from "../src/engines/llama/platform.ts";
import { compareVersions } from "../src/engines/llama/selection.ts";
import { type AppRelease, type Artifact, emptyManifest, ENGINE_FAMILY, type EngineRelease, type Manifest, MANIFEST_FILE, parseManifest } from "../src/update/manifest.ts";
import { type PublicKeyInfo, parsePrivateKey, parsePublicKey, signDetached, verifyDetached } from "../src/update/signing.ts";
import { packTarGz, readTarGz } from "../src/util/tar.ts";
import { buildEngineBundle, type BundleFile, compileExecutable, type EngineBundle } from "./build.ts";
import { buildLlamaAddon } from "./lib/llama-addon.ts";
import { llamaArchitectures } from "./lib/llama-archs.ts";
import { engineLibs } from "./lib/llama-source.ts";
import { ensureSigned, isMachO, verifyMachOSignature } from "./lib/macho.ts";
import { npmInstallTree, npmPackage, npmVersionExists } from "./lib/npm.ts";

const ROOT = resolve(import.meta.dir, "..");
const CACHE = join(ROOT, ".cache");
const NPM_CACHE = join(CACHE, "npm");

/** Bun's runtime package on npm for each target. */
const BUN_RUNTIME_PACKAGES: Readonly<Record<string, string>> = {
  "darwin-arm64": "@oven/bun-darwin-aarch64",
  "darwin-x64": "@oven/bun-darwin-x64",
  "linux-x64": "@oven/bun-linux-x64",
  "linux-arm64": "@oven/bun-linux-aarch64",
};
const ELF_MACHINES: Readonly<Record<string, number>> = { "linux-x64": 62, "linux-arm64": 183 };
const NATIVE_LIBRARY = /\.(node|dylib|so)(\.\d+)*$/;

export class ReleaseError extends Error {
  override name = "ReleaseError";
}

interface Options {
  version: string | undefined;
  out: string;
  targets: string[];
  channel: string;
  signingKey: ReturnType<typeof parsePrivateKey>;
  publicKeys: PublicKeyInfo[];
  baseUrl: string | undefined;
  engineOnly: boolean;
  nodeLlamaCpp: string | undefined;
}

function say(line: string): void {
  console.log(line);
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function sha256(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

function readSigningKey(path: string | undefined): ReturnType<typeof parsePrivateKey> {
  const file = path ?? process.env.LMX_RELEASE_SIGNING_KEY_FILE;
  if (file !== undefined && file !== "") return parsePrivateKey(readFileSync(resolve(file), "utf8"));
  const inline = process.env.LMX_RELEASE_SIGNING_KEY;
  if (inline !== undefined && inline.trim() !== "") return parsePrivateKey(inline);
  throw new ReleaseError("no signing key: pass --signing-key FILE, or set LMX_RELEASE_SIGNING_KEY_FILE or LMX_RELEASE_SIGNING_KEY");
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      version: { type: "string" },
      out: { type: "string" },
      targets: { type: "string" },
      channel: { type: "string", default: "stable" },
      "signing-key": { type: "string" },
      "public-key": { type: "string" },
      "base-url": { type: "string" },
      "engine-only": { type: "boolean", default: false },
      "node-llama-cpp": { type: "string" },
    },
    strict: true,
  });
  if (values.out === undefined) throw new ReleaseError("--out DIR is required");
  if (!values["engine-only"] && values.version === undefined) throw new ReleaseError("--version V is required (or --engine-only)");
  if (values.version !== undefined && !/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(values.version)) {
    throw new ReleaseError(`--version ${values.version} is not a version like 1.2.3 or 1.2.3-beta.1`);
  }
  if (!/^[a-z][a-z0-9-]*$/.test(values.channel)) throw new ReleaseError(`--channel ${values.channel}: use lowercase letters, digits and -`);
  if (values["node-llama-cpp"] !== undefined && !values["engine-only"]) {
    throw new ReleaseError("--node-llama-cpp only goes with --engine-only: an app release embeds the node-llama-cpp it was built and tested with");
  }
  const targets = (values.targets ?? SUPPORTED_LLAMA_TARGETS.join(",")).split(",").map((t) => t.trim()).filter(Boolean);
  for (const target of targets) {
    if (!SUPPORTED_LLAMA_TARGETS.includes(target)) throw new ReleaseError(`unknown target ${target} (supported: ${SUPPORTED_LLAMA_TARGETS.join(", ")})`);
  }
  if (targets.length === 0) throw new ReleaseError("--targets names no target");
  const publicKeyFiles = (values["public-key"] ?? "").split(",").map((f) => f.trim()).filter(Boolean);
  if (publicKeyFiles.length === 0 || publicKeyFiles.length > 2) throw new ReleaseError("--public-key takes one or two key files (two while rotating keys)");
  const publicKeys = publicKeyFiles.map((file) => parsePublicKey(readFileSync(resolve(file), "utf8")));
  const signingKey = readSigningKey(values["signing-key"]);
  if (!publicKeys.some((key) => key.id === signingKey.publicKey.id)) {
    throw new ReleaseError(`the signing key (${signingKey.publicKey.id}) is not among the public keys (${publicKeys.map((k) => k.id).join(", ")}); the release could not verify itself`);
  }
  const baseUrl = values["base-url"] ?? process.env.LMX_RELEASE_BASE_URL;
  if (baseUrl !== undefined && !/^https?:\/\/\S+$/.test(baseUrl)) throw new ReleaseError(`--base-url ${baseUrl} is not an http(s) URL`);
  return {
    version: values.version,
    out: resolve(values.out),
    targets: [...new Set(targets)],
    channel: values.channel,
    signingKey,
    publicKeys,
    baseUrl: baseUrl?.replace(/\/+$/, ""),
    engineOnly: values["engine-only"],
    nodeLlamaCpp: values["node-llama-cpp"],
  };
}

/** The manifest already in --out, verified with the release's own public keys. */
async function existingManifest(out: string, keys: PublicKeyInfo[]): Promise<Manifest> {
  const path = join(out, MANIFEST_FILE);
  if (!existsSync(path)) return emptyManifest();
  const bytes = await readFile(path);
  const sigPath = `${path}.sig`;
  if (!existsSync(sigPath)) throw new ReleaseError(`${path} has no signature; refusing to extend it`);
  verifyDetached(bytes, await readFile(sigPath, "utf8"), keys, path);
  return parseManifest(bytes, path);
}

/** Every target must have prebuilt engine binaries (and a Bun runtime) on npm: no compiling on users' machines. */
async function preflight(options: Options, nodeLlamaCppVersion: string): Promise<void> {
  const wanted: Array<[string, string, string]> = [];
  for (const target of options.targets) {
    wanted.push([target, llamaPlatform(target).packageName, nodeLlamaCppVersion]);
    if (!options.engineOnly) wanted.push([target, BUN_RUNTIME_PACKAGES[target] as string, Bun.version]);
  }
  const results = await Promise.all(wanted.map(async ([target, name, version]) => ({ target, name, version, ok: await npmVersionExists(name, version, ROOT) })));
  const missing = results.filter((r) => !r.ok);
  if (missing.length > 0) {
    throw new ReleaseError(
      `not on npm, so these targets cannot ship prebuilt binaries:\n${missing.map((m) => `  ${m.target}: ${m.name}@${m.version}`).join("\n")}\n` +
        "Pin a node-llama-cpp version that publishes packages for every target, or drop the target.",
    );
  }
}

/** Ad-hoc signs Mach-O libraries that carry no valid signature (node-llama-cpp's Intel Mac builds). */
function signingTransform(signed: string[]): (file: BundleFile, data: Uint8Array) => Uint8Array {
  return (file, data) => {
    if (!NATIVE_LIBRARY.test(file.archivePath) || !isMachO(data)) return data;
    const result = ensureSigned(data, basename(file.archivePath));
    if (result.signed) signed.push(file.archivePath);
    return result.bytes;
  };
}

/** Re-reads a darwin engine bundle and checks every native library's signature; returns how many. */
async function verifyBundleSignatures(bundlePath: string): Promise<number> {
  let checked = 0;
  for await (const entry of readTarGz(Bun.file(bundlePath))) {
    if (entry.type !== "file" || !NATIVE_LIBRARY.test(entry.path)) continue;
    if (!isMachO(entry.data)) throw new ReleaseError(`${entry.path} in ${basename(bundlePath)} is not a Mach-O binary (wrong platform package?)`);
    verifyMachOSignature(entry.data, `${basename(bundlePath)}:${entry.path}`);
    checked++;
  }
  if (checked === 0) throw new ReleaseError(`${basename(bundlePath)} holds no native libraries`);
  return checked;
}

function checkElf(data: Uint8Array, target: string): void {
  const machine = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint16(18, true);
  if (data[0] !== 0x7f || data[1] !== 0x45 || data[2] !== 0x4c || data[3] !== 0x46 || machine !== ELF_MACHINES[target]) {
    throw new ReleaseError(`the ${target} executable is not an ELF binary for that CPU`);
  }
}

interface BuiltTarget {
  target: string;
  engine: EngineBundle;
  engineArtifact: string;
  appArtifact?: string;
}

async function buildTarget(options: Options, engineRoot: string, staging: string, target: string): Promise<BuiltTarget> {
  const started = performance.now();
  const platform = llamaPlatform(target);
  const nlcVersion = JSON.parse(readFileSync(join(engineRoot, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version as string;
  const prebuiltDir = await npmPackage(platform.packageName, nlcVersion, NPM_CACHE);
  const darwin = target.startsWith("darwin-");
  const resigned: string[] = [];
  // LMX's addon (runs of tokens) is compiled for the host's target, and only for the node-llama-cpp
  // LMX patches; the other targets ship node-llama-cpp's prebuilt addon until a release runs there.
  const addon = engineRoot === ROOT && target === hostTarget()
    ? (await buildLlamaAddon(ROOT, engineLibs(ROOT, prebuiltDir, target), say).catch((err: unknown) => {
      throw new ReleaseError(`cannot compile node-llama-cpp's addon for ${target}: ${err instanceof Error ? err.message : String(err)}`);
    })).path
    : undefined;
  const engine = await buildEngineBundle(engineRoot, staging, platform, { prebuiltDir, addon, transform: darwin ? signingTransform(resigned) : undefined });
  let note = addon === undefined ? ", node-llama-cpp's prebuilt addon" : ", LMX's addon";
  if (darwin) {
    const checked = await verifyBundleSignatures(engine.path);
    note += `, ${checked} Mach-O signatures verified${resigned.length > 0 ? ` (${resigned.length} ad-hoc signed here)` : ""}`;
  }
  say(`  ${target}: engine bundle ${basename(engine.path)} ${mb(Bun.file(engine.path).size)}${note}`);
  if (options.engineOnly) return { target, engine, engineArtifact: engine.path };

  const runtimeDir = await npmPackage(BUN_RUNTIME_PACKAGES[target] as string, Bun.version, NPM_CACHE);
  const exeDir = join(staging, `.exe-${target}`);
  await mkdir(exeDir, { recursive: true });
  const outfile = join(exeDir, "lmx");
  const defines: Record<string, string> = {
    LMX_BUILD_CHANNEL: options.channel,
    LMX_BUILD_PUBLIC_KEYS: JSON.stringify(options.publicKeys.map((key) => key.spki)),
  };
  if (options.baseUrl !== undefined) defines.LMX_BUILD_UPDATE_URL = options.baseUrl;
  await compileExecutable({
    entry: join(ROOT, "src", "cli", "main.ts"),
    outfile,
    version: options.version as string,
    bundle: engine,
    target: `bun-${target}`,
    executablePath: join(runtimeDir, "bin", "bun"),
    defines,
  });
  let binary: Uint8Array = new Uint8Array(await Bun.file(outfile).arrayBuffer());
  if (darwin) {
    // Bun re-signs its darwin-arm64 output; its darwin-x64 output keeps the runtime's now-stale signature.
    const result = ensureSigned(binary, "lmx");
    binary = result.bytes;
    const [slice] = verifyMachOSignature(binary, `lmx ${target}`);
    say(`  ${target}: lmx ${mb(binary.length)}, signature verified (${slice?.adhoc ? "ad hoc" : "certificate"}, ${slice?.codeDirectories[0]?.pages} pages)${result.signed ? ", ad-hoc signed here" : ""}`);
  } else {
    checkElf(binary, target);
    say(`  ${target}: lmx ${mb(binary.length)}`);
  }
  const archive = await packTarGz([{ type: "file", path: "lmx", data: binary, mode: 0o755 }], 6);
  const appArtifact = join(staging, `lmx-${target}.tar.gz`);
  await writeFile(appArtifact, archive);
  await rm(exeDir, { recursive: true, force: true });
  say(`  ${target}: ${basename(appArtifact)} ${mb(archive.length)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return { target, engine, engineArtifact: engine.path, appArtifact };
}

async function artifact(path: string, relativeUrl: string): Promise<Artifact> {
  const data = new Uint8Array(await Bun.file(path).arrayBuffer());
  return { url: relativeUrl, size: data.length, sha256: sha256(data) };
}

async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const temp = `${path}.tmp-${process.pid}`;
  await writeFile(temp, data);
  await rename(temp, path);
}

/** install.sh with this release's public keys and default base URL filled in. */
export function renderInstallScript(template: string, publicKeys: PublicKeyInfo[], baseUrl: string | undefined): string {
  const fill = (text: string, name: string, value: string): string => {
    const pattern = new RegExp(`^(\\s*)${name}=""$`, "m");
    if (!pattern.test(text)) throw new ReleaseError(`install.sh has no line ${name}="" to fill in`);
    return text.replace(pattern, `$1${name}="${value}"`);
  };
  return fill(fill(template, "RELEASE_PUBLIC_KEYS", publicKeys.map((key) => key.spki).join(" ")), "DEFAULT_BASE_URL", baseUrl ?? "");
}

export async function release(options: Options): Promise<Manifest> {
  const started = performance.now();
  const installedNlc = JSON.parse(readFileSync(join(ROOT, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version as string;
  const nlcVersion = options.nodeLlamaCpp ?? installedNlc;
  await preflight(options, nlcVersion);
  await mkdir(options.out, { recursive: true });
  const manifest = await existingManifest(options.out, options.publicKeys);
  const relDir = options.engineOnly ? `engines/${ENGINE_FAMILY}/${nlcVersion}` : (options.version as string);
  const destDir = join(options.out, relDir);
  if (existsSync(destDir)) throw new ReleaseError(`${destDir} exists already: ${options.engineOnly ? `engine ${nlcVersion}` : `version ${options.version}`} is published; versions are never overwritten`);
  if (!options.engineOnly && manifest.releases[options.version as string] !== undefined) throw new ReleaseError(`version ${options.version} is already in the manifest`);

  say(`Release ${options.engineOnly ? `engine llama.cpp/${nlcVersion}` : `lmx ${options.version} (${options.channel})`} for ${options.targets.join(", ")} into ${options.out}`);
  const engineRoot = nlcVersion === installedNlc ? ROOT : await npmInstallTree("node-llama-cpp", nlcVersion, NPM_CACHE);
  const nlcDir = join(engineRoot, "node_modules", "node-llama-cpp");
  const architectures = llamaArchitectures(nlcDir, join(CACHE, "release", "llama-archs"));

  const staging = join(options.out, `.staging-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const built: BuiltTarget[] = [];
    // One target at a time: each compile and gzip already uses the machine, and memory stays bounded.
    for (const target of options.targets) built.push(await buildTarget(options, engineRoot, staging, target));
    const llamaCpp = built[0]?.engine.llamaCppRelease ?? "unknown";
    say(`  llama.cpp ${llamaCpp}: ${architectures.length} model architectures`);

    const files = built.flatMap((b) => [b.engineArtifact, ...(b.appArtifact ? [b.appArtifact] : [])]);
    const artifacts = new Map<string, Artifact>();
    for (const file of files) artifacts.set(file, await artifact(file, `${relDir}/${basename(file)}`));
    const sums = files
      .map((file) => `${(artifacts.get(file) as Artifact).sha256}  ${basename(file)}`)
      .sort((a, b) => a.slice(66).localeCompare(b.slice(66)))
      .join("\n") + "\n";
    await writeFile(join(staging, "SHA256SUMS"), sums);
    await writeFile(join(staging, "SHA256SUMS.sig"), signDetached(new TextEncoder().encode(sums), options.signingKey.key));
    for (const b of built) {
      const data = new Uint8Array(await Bun.file(b.engineArtifact).arrayBuffer());
      await writeFile(`${b.engineArtifact}.sig`, signDetached(data, options.signingKey.key));
    }
    await mkdir(join(destDir, ".."), { recursive: true });
    await rename(staging, destDir);

    const date = new Date().toISOString();
    const engines = (manifest.engines[ENGINE_FAMILY] ??= {});
    const engineEntry: EngineRelease = engines[nlcVersion] ?? { nodeLlamaCpp: nlcVersion, llamaCpp, date, architectures, platforms: {} };
    engineEntry.llamaCpp = llamaCpp;
    engineEntry.architectures = architectures;
    for (const b of built) {
      const entry = artifacts.get(b.engineArtifact) as Artifact;
      engineEntry.platforms[b.target] = { ...entry, url: `${relDir}/${basename(b.engineArtifact)}` };
    }
    engines[nlcVersion] = engineEntry;
    if (!options.engineOnly) {
      const version = options.version as string;
      const releaseEntry: AppRelease = {
        version,
        channel: options.channel,
        date,
        engine: { name: ENGINE_FAMILY, version: nlcVersion },
        platforms: Object.fromEntries(built.map((b) => [b.target, artifacts.get(b.appArtifact as string) as Artifact])),
      };
      manifest.releases[version] = releaseEntry;
      const latest = manifest.latest[options.channel];
      if (latest === undefined || compareVersions(version, latest) > 0) manifest.latest[options.channel] = version;
      else say(`  note: ${options.channel} keeps pointing at ${latest}, which is newer than ${version}`);
    }
    manifest.updated = date;
    const manifestBytes = new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
    await writeAtomic(join(options.out, MANIFEST_FILE), manifestBytes);
    await writeAtomic(join(options.out, `${MANIFEST_FILE}.sig`), signDetached(manifestBytes, options.signingKey.key));
    if (!options.engineOnly) {
      // An engine-only release changes nothing install.sh needs, and may run without --base-url.
      const template = await readFile(join(ROOT, "install.sh"), "utf8");
      await writeAtomic(join(options.out, "install.sh"), renderInstallScript(template, options.publicKeys, options.baseUrl));
    }
    say(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${relDir}/ (${files.length} artifacts), manifest.json signed by ${options.signingKey.publicKey.id}. Publish by copying ${options.out} to the host.`);
    return manifest;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  try {
    await release(parseOptions(Bun.argv.slice(2)));
  } catch (err) {
    console.error(`release failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
