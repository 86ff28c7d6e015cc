// The llama.cpp engine bundle: node-llama-cpp, its JS dependencies and one prebuilt binary package,
// packed by scripts/build.ts into a .tar.gz that `bun build --compile` embeds in the executable.
// node-llama-cpp reads its own files and dlopens native libraries at run time, so it cannot live
// inside the executable's virtual filesystem; on first use we unpack it to
// $LMX_HOME/engines/llama.cpp/<nodeLlamaCppVersion>-<target>/ and import it from there.
//
// Extraction is atomic: unpack into a temp folder beside the target, write the marker file last,
// then rename into place. A folder with a matching marker is therefore always complete, and two
// processes starting at once both end up using whichever rename won.

import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { EngineError, errorMessage } from "../../errors.ts";
import { log } from "../../log.ts";
import { removeStaleFolders } from "../../util/stale-folders.ts";
import { extractTarGz } from "../../util/tar.ts";

// Injected by scripts/build.ts with `--define`; absent when running from source.
declare const LMX_ENGINE_LLAMA_ARCHIVE: string | undefined;
declare const LMX_ENGINE_LLAMA_SHA256: string | undefined;
declare const LMX_ENGINE_LLAMA_VERSION: string | undefined;
declare const LMX_ENGINE_LLAMA_TARGET: string | undefined;

export interface EmbeddedEngine {
  /** File name the archive had at build time, e.g. "engine-llama.cpp-3.21.1-linux-x64.tar.gz". */
  archiveName: string;
  sha256: string;
  nodeLlamaCppVersion: string;
  /** "<os>-<arch>", e.g. "linux-x64". */
  target: string;
}

export const EMBEDDED_ENGINE: EmbeddedEngine | undefined =
  typeof LMX_ENGINE_LLAMA_ARCHIVE === "string" &&
  typeof LMX_ENGINE_LLAMA_SHA256 === "string" &&
  typeof LMX_ENGINE_LLAMA_VERSION === "string" &&
  typeof LMX_ENGINE_LLAMA_TARGET === "string"
    ? {
        archiveName: LMX_ENGINE_LLAMA_ARCHIVE,
        sha256: LMX_ENGINE_LLAMA_SHA256,
        nodeLlamaCppVersion: LMX_ENGINE_LLAMA_VERSION,
        target: LMX_ENGINE_LLAMA_TARGET,
      }
    : undefined;

/** Written last into a finished extraction; its sha256 says which archive the folder came from. */
export const ENGINE_MARKER_FILE = ".lmx-engine.json";

export interface EngineMarker {
  sha256: string;
  nodeLlamaCppVersion?: string;
  target?: string;
  extractedAt: string;
}

export function engineBundleFileName(nodeLlamaCppVersion: string, target: string): string {
  return `engine-llama.cpp-${nodeLlamaCppVersion}-${target}.tar.gz`;
}

export function engineDir(lmxHome: string, nodeLlamaCppVersion: string, target: string): string {
  return join(lmxHome, "engines", "llama.cpp", `${nodeLlamaCppVersion}-${target}`);
}

/**
 * The embedded archive, if this executable carries one. Files given to `bun build --compile` as
 * extra entrypoints keep their name but get a content hash before the last extension
 * ("x.tar.gz" becomes "x.tar-<hash>.gz"), so both spellings are accepted.
 */
export function findEmbeddedArchive(archiveName: string): Blob | undefined {
  const dot = archiveName.lastIndexOf(".");
  const stem = dot === -1 ? archiveName : archiveName.slice(0, dot);
  const ext = dot === -1 ? "" : archiveName.slice(dot);
  for (const file of Bun.embeddedFiles) {
    const name = (file as Blob & { name?: unknown }).name;
    if (typeof name !== "string") continue;
    const base = basename(name);
    if (base === archiveName || (base.startsWith(`${stem}-`) && base.endsWith(ext))) return file;
  }
  return undefined;
}

const inProcess = new Map<string, Promise<string>>();

/** Unpacks the embedded engine under `lmxHome` unless already there; returns the engine folder. */
export function ensureEngineExtracted(lmxHome: string): Promise<string> {
  const embedded = EMBEDDED_ENGINE;
  if (embedded === undefined) {
    return Promise.reject(new EngineError("this lmx build carries no llama.cpp engine bundle (build it with scripts/build.ts)", "engine_bundle_missing"));
  }
  const dest = engineDir(lmxHome, embedded.nodeLlamaCppVersion, embedded.target);
  // One extraction per folder per process; the cross-process race is handled on disk.
  let pending = inProcess.get(dest);
  if (pending === undefined) {
    pending = (async () => {
      const archive = findEmbeddedArchive(embedded.archiveName);
      if (archive === undefined) {
        throw new EngineError(`the llama.cpp engine bundle "${embedded.archiveName}" is not embedded in this executable`, "engine_bundle_missing");
      }
      return extractEngineArchive({
        archive,
        sha256: embedded.sha256,
        dest,
        nodeLlamaCppVersion: embedded.nodeLlamaCppVersion,
        target: embedded.target,
      });
    })();
    inProcess.set(dest, pending);
    pending.catch(() => inProcess.delete(dest));
  }
  return pending;
}

export interface ExtractEngineOptions {
  /** The .tar.gz, as a Blob (e.g. an embedded file) or a path on disk. */
  archive: Blob | string;
  /** Expected sha256 (hex) of the archive bytes. */
  sha256: string;
  /** Final engine folder; its parent is created if needed. */
  dest: string;
  nodeLlamaCppVersion?: string;
  target?: string;
}

/**
 * Makes `dest` hold the archive's contents. Returns at once when `dest` already carries a marker
 * with the same sha256; otherwise verifies the archive, unpacks it beside `dest` and renames it
 * into place. Safe against concurrent callers in other processes and against leftovers of a crash.
 */
export async function extractEngineArchive(options: ExtractEngineOptions): Promise<string> {
  const { dest } = options;
  const expected = options.sha256.toLowerCase();
  const parent = dirname(dest);
  const name = basename(dest);
  await removeStaleLeftovers(parent, name);
  if (await markerMatches(dest, expected)) return dest;

  const archive = typeof options.archive === "string" ? Bun.file(options.archive) : options.archive;
  const actual = await sha256Of(archive);
  if (actual !== expected) {
    throw new EngineError(
      `llama.cpp engine bundle is corrupted: sha256 ${actual} does not match the expected ${expected}; nothing was extracted`,
      "engine_bundle_corrupted",
    );
  }

  await mkdir(parent, { recursive: true });

  const started = performance.now();
  log.info("extracting llama.cpp engine", { dest });
  const temp = join(parent, `.${name}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    await extractTarGz(archive, temp);
    const marker: EngineMarker = {
      sha256: expected,
      nodeLlamaCppVersion: options.nodeLlamaCppVersion,
      target: options.target,
      extractedAt: new Date().toISOString(),
    };
    // Last write: a folder with a marker is a complete folder.
    await writeFile(join(temp, ENGINE_MARKER_FILE), `${JSON.stringify(marker, null, 2)}\n`);
    await installFolder(temp, dest, expected);
  } catch (err) {
    await rm(temp, { recursive: true, force: true }).catch(() => undefined);
    if (err instanceof EngineError) throw err;
    throw new EngineError(`cannot extract the llama.cpp engine to ${dest}: ${errorMessage(err)}`, "engine_extract_failed");
  }
  log.info("llama.cpp engine ready", { dest, ms: Math.round(performance.now() - started) });
  return dest;
}

/** Renames `temp` to `dest`, coping with another process having got there first. */
async function installFolder(temp: string, dest: string, sha256: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await rename(temp, dest);
      return;
    } catch (err) {
      // Renaming onto a non-empty folder fails with ENOTEMPTY (Linux) or EEXIST (some systems).
      if (!isFsError(err, "ENOTEMPTY", "EEXIST")) throw err;
    }
    if (await markerMatches(dest, sha256)) {
      // Another process won the race with the same archive: use its folder.
      await rm(temp, { recursive: true, force: true });
      return;
    }
    // `dest` holds something else (another build's engine, or a damaged folder): move it aside
    // atomically so no reader ever sees a half-deleted tree, then retry the rename.
    const aside = join(dirname(dest), `.${basename(dest)}.old-${process.pid}-${randomBytes(4).toString("hex")}`);
    try {
      await rename(dest, aside);
    } catch (err) {
      if (!isFsError(err, "ENOENT")) throw err;
      continue;
    }
    // A process still running the old build keeps the libraries it already loaded (unlinked files
    // stay alive on Linux and macOS); only modules it has not imported yet would be gone.
    await rm(aside, { recursive: true, force: true }).catch(() => undefined);
  }
  throw new Error(`${dest} kept changing while installing the engine; giving up`);
}

async function markerMatches(dest: string, sha256: string): Promise<boolean> {
  try {
    const marker: unknown = JSON.parse(await readFile(join(dest, ENGINE_MARKER_FILE), "utf8"));
    return typeof marker === "object" && marker !== null && (marker as { sha256?: unknown }).sha256 === sha256;
  } catch {
    return false;
  }
}

/** A leftover must be this old before it goes (see src/util/stale-folders.ts). */
const STALE_AFTER_MS = 10 * 60 * 1000;

/** Deletes temp and moved-aside folders left by crashed processes; they never block a start. */
function removeStaleLeftovers(parent: string, name: string): Promise<void> {
  return removeStaleFolders(parent, new RegExp(`^\\.${escapeRegExp(name)}\\.(?:tmp|old)-(\\d+)-[0-9a-f]+$`), STALE_AFTER_MS);
}

async function sha256Of(blob: Blob): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  try {
    for await (const chunk of blob.stream()) hasher.update(chunk);
  } catch (err) {
    throw new EngineError(`cannot read the llama.cpp engine bundle: ${errorMessage(err)}`, "engine_bundle_missing");
  }
  return hasher.digest("hex");
}

function isFsError(err: unknown, ...codes: string[]): boolean {
  return typeof err === "object" && err !== null && codes.includes(String((err as { code?: unknown }).code));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
