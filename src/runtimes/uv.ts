// Finding uv, which builds the MLX runtime. Release builds carry the uv binary for their platform
// (scripts/build.ts takes it from the `uv` wheel on PyPI) and unpack it under
// $LMX_HOME/runtimes/bin/. From source, a pinned copy is fetched from PyPI into <repo>/.cache/uv/
// the same way, unless one is already there or uv is on PATH.

import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import * as v from "valibot";
import { errorMessage, RuntimeInstallError } from "../errors.ts";
import { log } from "../log.ts";
import { listZip, readZipEntry } from "../util/zip.ts";
import { UV_VERSION } from "./versions.ts";

// Injected by scripts/build.ts with `--define`; absent when running from source.
declare const LMX_UV_BINARY: string | undefined;
declare const LMX_UV_VERSION: string | undefined;

export const EMBEDDED_UV = typeof LMX_UV_BINARY === "string" && typeof LMX_UV_VERSION === "string"
  ? { fileName: LMX_UV_BINARY, version: LMX_UV_VERSION }
  : undefined;

export interface UvLocation {
  path: string;
  version: string;
  source: "embedded" | "cache" | "path";
}

const PYPI_SIMPLE = "https://pypi.org/simple";

/** The platform tag of the uv wheel for an OS and CPU, as PyPI names the files. */
export function uvWheelTag(platform: string = process.platform, arch: string = process.arch): string {
  const tags: Record<string, string> = {
    "linux-x64": "manylinux_2_17_x86_64",
    "linux-arm64": "manylinux_2_17_aarch64",
    "darwin-arm64": "macosx_11_0_arm64",
    "darwin-x64": "macosx_10_12_x86_64",
  };
  const tag = tags[`${platform}-${arch}`];
  if (!tag) throw new RuntimeInstallError(`no uv build for ${platform}-${arch}; MLX runs on macOS and Linux (x64, arm64)`);
  return tag;
}

const SimpleIndex = v.object({
  files: v.array(v.object({
    filename: v.string(),
    url: v.string(),
    hashes: v.object({ sha256: v.optional(v.string()) }),
  })),
});

/**
 * Downloads the uv wheel of `version` for a platform from PyPI (PEP 691 JSON index), checks its
 * sha256 against the index and writes the uv binary inside it to `dest`.
 */
export async function downloadUv(dest: string, opts: { version?: string; platform?: string; arch?: string; indexUrl?: string } = {}): Promise<{ wheel: string; sha256: string }> {
  const version = opts.version ?? UV_VERSION;
  const tag = uvWheelTag(opts.platform, opts.arch);
  const index = (opts.indexUrl ?? PYPI_SIMPLE).replace(/\/+$/, "");
  let files: v.InferOutput<typeof SimpleIndex>["files"];
  try {
    const res = await fetch(`${index}/uv/`, { headers: { accept: "application/vnd.pypi.simple.v1+json" } });
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    files = v.parse(SimpleIndex, await res.json()).files;
  } catch (err) {
    throw new RuntimeInstallError(`cannot read the uv release list from ${index}/uv/: ${errorMessage(err)}`);
  }
  const wheel = files.find((f) => f.filename.startsWith(`uv-${version}-`) && f.filename.endsWith(".whl") && f.filename.includes(tag));
  if (!wheel) throw new RuntimeInstallError(`PyPI has no uv ${version} wheel for ${tag}`);
  const res = await fetch(new URL(wheel.url, `${index}/uv/`));
  if (!res.ok) throw new RuntimeInstallError(`downloading ${wheel.filename} failed: ${res.status} ${res.statusText}`);
  const data = new Uint8Array(await res.arrayBuffer());
  const sha256 = createHash("sha256").update(data).digest("hex");
  if (wheel.hashes.sha256 && wheel.hashes.sha256 !== sha256) {
    throw new RuntimeInstallError(`${wheel.filename}: sha256 ${sha256} does not match the index (${wheel.hashes.sha256})`);
  }
  const entry = listZip(data).find((e) => e.name === `uv-${version}.data/scripts/uv`);
  if (!entry) throw new RuntimeInstallError(`${wheel.filename} holds no uv binary`);
  writeExecutable(dest, readZipEntry(data, entry));
  return { wheel: wheel.filename, sha256 };
}

function writeExecutable(dest: string, bytes: Uint8Array): void {
  mkdirSync(dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, bytes);
    chmodSync(tmp, 0o755);
    renameSync(tmp, dest);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** The embedded uv; extra entrypoints get a content hash before their extension when compiled. */
function findEmbeddedUv(fileName: string): Blob | undefined {
  const dot = fileName.lastIndexOf(".");
  const stem = dot === -1 ? fileName : fileName.slice(0, dot);
  for (const file of Bun.embeddedFiles) {
    const name = (file as Blob & { name?: unknown }).name;
    if (typeof name !== "string") continue;
    const base = basename(name);
    if (base === fileName || base.startsWith(`${stem}-`)) return file;
  }
  return undefined;
}

/** The repository root when running from source (where .cache/ lives), else undefined. */
function sourceRoot(): string | undefined {
  const root = resolve(import.meta.dir, "../..");
  return existsSync(join(root, "package.json")) && existsSync(join(root, "src", "runtimes")) ? root : undefined;
}

let located: Promise<UvLocation> | undefined;

/** Where uv is, fetching or unpacking it on first use. */
export function locateUv(runtimesDir: string): Promise<UvLocation> {
  located ??= findUv(runtimesDir);
  located.catch(() => { located = undefined; });
  return located;
}

async function findUv(runtimesDir: string): Promise<UvLocation> {
  if (EMBEDDED_UV) {
    const dest = join(runtimesDir, "bin", `uv-${EMBEDDED_UV.version}`);
    if (!existsSync(dest)) {
      const blob = findEmbeddedUv(EMBEDDED_UV.fileName);
      if (!blob) throw new RuntimeInstallError(`this lmx build names an embedded uv (${EMBEDDED_UV.fileName}) but does not carry it`);
      writeExecutable(dest, new Uint8Array(await blob.arrayBuffer()));
    }
    return { path: dest, version: EMBEDDED_UV.version, source: "embedded" };
  }
  const root = sourceRoot();
  // Same name scripts/build.ts uses, so a build reuses what the tests fetched.
  const cached = root ? join(root, ".cache", "uv", "bin", `uv-${UV_VERSION}-${process.platform}-${process.arch}`) : undefined;
  if (cached && existsSync(cached)) return { path: cached, version: UV_VERSION, source: "cache" };
  const onPath = Bun.which("uv");
  if (onPath) {
    const out = Bun.spawnSync([onPath, "--version"], { stdout: "pipe", stderr: "ignore" });
    const version = /uv (\S+)/.exec(out.stdout.toString())?.[1] ?? "unknown";
    return { path: onPath, version, source: "path" };
  }
  if (!cached) throw new RuntimeInstallError("this lmx build carries no uv and none is on PATH; install uv or use a release build");
  log.info("fetching uv from PyPI", { version: UV_VERSION, dest: cached });
  await downloadUv(cached);
  return { path: cached, version: UV_VERSION, source: "cache" };
}
