// Reading and writing the tar archives of the llama.cpp engine bundle and of releases. The format
// itself (ustar headers, PAX records for long paths, checksums) is modern-tar's; this module adds
// what LMX promises on top: only files, directories and symlinks (anything else, hard links
// included, is refused because the bundle never contains them and an extractor that silently skips
// entries would hide a broken archive), and an extractor that refuses every entry that could write
// outside its destination.

import { createTarDecoder, packTar as packEntries, type TarHeader } from "modern-tar";
import { chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import { isAbsolute, join, posix, resolve } from "node:path";

export type TarEntry =
  | { type: "file"; path: string; data: Uint8Array; mode?: number; mtime?: number }
  | { type: "directory"; path: string; mode?: number; mtime?: number }
  | { type: "symlink"; path: string; target: string; mtime?: number };

/** The archive is malformed or uses a feature this reader does not support. */
export class TarFormatError extends Error {
  override name = "TarFormatError";
}

/** An entry would land outside the extraction folder; nothing of it was written. */
export class TarUnsafeEntryError extends Error {
  override name = "TarUnsafeEntryError";
}

// ---------------------------------------------------------------------------------------------
// Writing

function header(entry: TarEntry): TarHeader {
  if (entry.path === "" || entry.path.includes("\0")) throw new TarFormatError(`invalid tar entry path ${JSON.stringify(entry.path)}`);
  const mtime = new Date(Math.max(0, Math.floor(entry.mtime ?? 0)) * 1000);
  if (entry.type === "file") return { name: entry.path, type: "file", size: entry.data.byteLength, mode: (entry.mode ?? 0o644) & 0o7777, mtime };
  if (entry.type === "directory") {
    return { name: entry.path.endsWith("/") ? entry.path : `${entry.path}/`, type: "directory", size: 0, mode: (entry.mode ?? 0o755) & 0o7777, mtime };
  }
  return { name: entry.path, type: "symlink", size: 0, mode: 0o777, linkname: entry.target, mtime };
}

/** Serializes entries into an uncompressed tar archive. */
export function packTar(entries: Iterable<TarEntry>): Promise<Uint8Array<ArrayBuffer>> {
  return packEntries([...entries].map((e) => ({ header: header(e), body: e.type === "file" ? e.data : undefined })));
}

/** Serializes and gzips entries. */
export async function packTarGz(entries: Iterable<TarEntry>, level: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 = 9): Promise<Uint8Array> {
  return Bun.gzipSync(await packTar(entries), { level });
}

// ---------------------------------------------------------------------------------------------
// Reading

function toEntry(h: TarHeader, data: Uint8Array): TarEntry {
  const mtime = h.mtime ? Math.floor(h.mtime.getTime() / 1000) : undefined;
  switch (h.type ?? "file") {
    case "file":
      return { type: "file", path: h.name, data, mode: h.mode, mtime };
    case "directory":
      return { type: "directory", path: h.name, mode: h.mode, mtime };
    case "symlink":
      return { type: "symlink", path: h.name, target: h.linkname ?? "", mtime };
    case "link":
      throw new TarFormatError(`tar entry ${JSON.stringify(h.name)} is a hard link; only files, directories and symlinks are supported`);
    default:
      throw new TarFormatError(`tar entry ${JSON.stringify(h.name)} has unsupported type ${h.type}`);
  }
}

/** Parses an uncompressed archive arriving as a stream of chunks; each entry's data is read whole. */
export async function* readTar(chunks: ReadableStream<Uint8Array>): AsyncGenerator<TarEntry> {
  let entries: ReadableStream<{ header: TarHeader; body: ReadableStream<Uint8Array> }>;
  try {
    entries = chunks.pipeThrough(createTarDecoder({ strict: true }));
  } catch (err) {
    throw formatError(err);
  }
  const reader = entries.getReader();
  try {
    for (;;) {
      let header: TarHeader;
      let data: Uint8Array;
      try {
        const next = await reader.read();
        if (next.done) return;
        header = next.value.header;
        data = new Uint8Array(await new Response(next.value.body).arrayBuffer());
      } catch (err) {
        throw formatError(err);
      }
      yield toEntry(header, data);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Parses a whole uncompressed archive. */
export async function unpackTar(archive: Uint8Array): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  for await (const entry of readTar(new Blob([archive]).stream())) out.push(entry);
  return out;
}

/** Streams a gzipped archive from a Blob (or file) through gunzip into the parser. */
export function readTarGz(source: Blob): AsyncGenerator<TarEntry> {
  return readTar(source.stream().pipeThrough(new DecompressionStream("gzip")));
}

function formatError(err: unknown): Error {
  if (err instanceof TarFormatError) return err;
  return new TarFormatError(`malformed tar archive: ${err instanceof Error ? err.message : String(err)}`);
}

// ---------------------------------------------------------------------------------------------
// Extracting

export interface ExtractResult {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
}

/**
 * Writes entries below `dest`. Every entry is checked before anything of it touches the disk:
 * absolute paths, ".." segments, paths through a symlink the archive created, and symlinks whose
 * target leaves `dest` are refused with TarUnsafeEntryError.
 */
export async function extractTar(entries: AsyncIterable<TarEntry> | Iterable<TarEntry>, dest: string): Promise<ExtractResult> {
  const root = resolve(dest);
  await mkdir(root, { recursive: true });
  const createdDirs = new Set<string>([""]);
  const symlinks = new Set<string>();
  const dirModes = new Map<string, number>();
  const result: ExtractResult = { files: 0, directories: 0, symlinks: 0, bytes: 0 };

  const ensureDir = async (rel: string): Promise<void> => {
    if (createdDirs.has(rel)) return;
    await mkdir(join(root, rel), { recursive: true });
    // Record every ancestor too, so later siblings skip the syscall.
    const parts = rel.split("/");
    for (let i = 1; i <= parts.length; i++) createdDirs.add(parts.slice(0, i).join("/"));
  };

  for await (const entry of entries) {
    const rel = safeRelativePath(entry.path);
    if (rel === "") {
      if (entry.type === "directory") continue; // "./" describes the destination itself
      throw new TarUnsafeEntryError(`refusing tar entry ${JSON.stringify(entry.path)}: it names the destination folder itself`);
    }
    assertNotThroughSymlink(rel, entry.path, symlinks);
    const abs = join(root, rel);
    const parent = posix.dirname(rel) === "." ? "" : posix.dirname(rel);

    if (entry.type === "directory") {
      await ensureDir(rel);
      // Applied at the end: a read-only directory would otherwise block its own contents.
      dirModes.set(rel, (entry.mode ?? 0o755) & 0o777);
      result.directories++;
    } else if (entry.type === "file") {
      await ensureDir(parent);
      const mode = (entry.mode ?? 0o644) & 0o777;
      await writeFile(abs, entry.data, { mode });
      // writeFile's mode is filtered by the umask; the archive's mode is what we promise.
      await chmod(abs, mode);
      result.files++;
      result.bytes += entry.data.byteLength;
    } else {
      assertSafeSymlinkTarget(rel, entry.path, entry.target);
      await ensureDir(parent);
      await symlink(entry.target, abs);
      symlinks.add(rel);
      result.symlinks++;
    }
  }

  // Deepest first so a parent losing its write bit cannot stop a child's chmod.
  const dirs = [...dirModes.entries()].sort((a, b) => b[0].length - a[0].length);
  for (const [rel, mode] of dirs) await chmod(join(root, rel), mode);
  return result;
}

/** Gunzips and extracts a .tar.gz Blob (e.g. `Bun.file(path)`) into `dest`. */
export function extractTarGz(source: Blob, dest: string): Promise<ExtractResult> {
  return extractTar(readTarGz(source), dest);
}

/** Normalizes an archive path to "a/b/c" form or throws if it could leave the destination. */
function safeRelativePath(path: string): string {
  if (path.includes("\0")) throw unsafe(path, "it contains a NUL byte");
  if (path.includes("\\")) throw unsafe(path, "it contains a backslash");
  if (path.startsWith("/") || isAbsolute(path) || /^[A-Za-z]:/.test(path)) throw unsafe(path, "it is an absolute path");
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) throw unsafe(path, 'it contains a ".." segment');
  return parts.join("/");
}

function assertNotThroughSymlink(rel: string, original: string, symlinks: Set<string>): void {
  const parts = rel.split("/");
  // Writing through a symlink the archive planted is the classic way to escape a lexical check.
  for (let i = 1; i <= parts.length; i++) {
    const prefix = parts.slice(0, i).join("/");
    if (symlinks.has(prefix)) {
      throw unsafe(original, i === parts.length ? `it would replace the symlink "${prefix}"` : `it goes through the symlink "${prefix}"`);
    }
  }
}

function assertSafeSymlinkTarget(rel: string, original: string, target: string): void {
  if (target === "" || target.includes("\0") || target.includes("\\")) {
    throw unsafe(original, `its symlink target ${JSON.stringify(target)} is invalid`);
  }
  if (target.startsWith("/") || isAbsolute(target)) throw unsafe(original, `its symlink target "${target}" is absolute`);
  // Only normalized targets ("../x/y", not "x/../../y"): a ".." after a name would be resolved
  // physically through whatever that name is, which a lexical check cannot see.
  const normalized = posix.normalize(target);
  if (normalized !== target.replace(/\/+$/, "") && normalized !== target) {
    throw unsafe(original, `its symlink target "${target}" is not in normalized form`);
  }
  const resolved = posix.normalize(posix.join(posix.dirname(rel), target));
  if (resolved === ".." || resolved.startsWith("../")) {
    throw unsafe(original, `its symlink target "${target}" points outside the destination`);
  }
}

function unsafe(path: string, reason: string): TarUnsafeEntryError {
  return new TarUnsafeEntryError(`refusing tar entry ${JSON.stringify(path)}: ${reason}`);
}
