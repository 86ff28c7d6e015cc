// A small ustar/PAX tar writer and reader, enough to pack the llama.cpp engine bundle at build time
// and unpack it on first run without an npm dependency. It knows files, directories and symlinks;
// anything else (hard links, devices, FIFOs) is rejected because the bundle never contains them and
// an extractor that silently skips entries would hide a broken archive.

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

const BLOCK = 512;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Largest value an 11-digit octal field holds; bigger sizes go into a PAX record.
const MAX_OCTAL_11 = 0o77777777777;

// ---------------------------------------------------------------------------------------------
// Writing

/** Serializes entries into an uncompressed tar archive. */
export function packTar(entries: Iterable<TarEntry>): Uint8Array<ArrayBuffer> {
  const blocks: Uint8Array[] = [];
  for (const entry of entries) {
    for (const block of encodeEntry(entry)) blocks.push(block);
  }
  // End-of-archive marker: two zero blocks.
  blocks.push(new Uint8Array(BLOCK * 2));
  return concat(blocks);
}

/** Serializes and gzips entries. */
export function packTarGz(entries: Iterable<TarEntry>, level: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 = 9): Uint8Array {
  return Bun.gzipSync(packTar(entries), { level });
}

function encodeEntry(entry: TarEntry): Uint8Array[] {
  const isDir = entry.type === "directory";
  const path = isDir && !entry.path.endsWith("/") ? `${entry.path}/` : entry.path;
  if (path === "" || path.includes("\0")) throw new TarFormatError(`invalid tar entry path ${JSON.stringify(entry.path)}`);
  const size = entry.type === "file" ? entry.data.byteLength : 0;
  const linkname = entry.type === "symlink" ? entry.target : "";
  const defaultMode = entry.type === "file" ? 0o644 : entry.type === "directory" ? 0o755 : 0o777;
  const mode = entry.type === "symlink" ? 0o777 : (entry.mode ?? defaultMode) & 0o7777;
  const mtime = Math.max(0, Math.floor(entry.mtime ?? 0));

  const pax: Record<string, string> = {};
  const split = splitUstarPath(path);
  if (split === undefined) pax.path = path;
  if (encoder.encode(linkname).byteLength > 100) pax.linkpath = linkname;
  if (size > MAX_OCTAL_11) pax.size = String(size);

  const out: Uint8Array[] = [];
  if (Object.keys(pax).length > 0) {
    const body = encodePaxRecords(pax);
    const paxName = `PaxHeader/${truncateUtf8(path.replace(/\/$/, "").split("/").pop() ?? "entry", 90)}`;
    out.push(encodeHeader({ name: paxName, prefix: "", mode: 0o644, size: body.byteLength, mtime, typeflag: "x", linkname: "" }));
    out.push(...dataBlocks(body));
  }
  out.push(
    encodeHeader({
      name: split?.name ?? truncateUtf8(path, 100),
      prefix: split?.prefix ?? "",
      mode,
      size: size > MAX_OCTAL_11 ? 0 : size,
      mtime,
      typeflag: entry.type === "file" ? "0" : isDir ? "5" : "2",
      linkname: pax.linkpath === undefined ? linkname : truncateUtf8(linkname, 100),
    }),
  );
  if (entry.type === "file") out.push(...dataBlocks(entry.data));
  return out;
}

interface RawHeader {
  name: string;
  prefix: string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}

function encodeHeader(h: RawHeader): Uint8Array {
  const block = new Uint8Array(BLOCK);
  writeString(block, 0, 100, h.name);
  writeOctal(block, 100, 8, h.mode);
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  writeOctal(block, 124, 12, h.size);
  writeOctal(block, 136, 12, h.mtime);
  block.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  writeString(block, 156, 1, h.typeflag);
  writeString(block, 157, 100, h.linkname);
  writeString(block, 257, 6, "ustar\0");
  writeString(block, 263, 2, "00");
  writeString(block, 345, 155, h.prefix);
  let sum = 0;
  for (const byte of block) sum += byte;
  writeString(block, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

/** Splits a path into ustar prefix (<= 155 bytes) and name (<= 100 bytes), if it fits at all. */
function splitUstarPath(path: string): { prefix: string; name: string } | undefined {
  const bytes = encoder.encode(path);
  if (bytes.byteLength <= 100) return { prefix: "", name: path };
  if (bytes.byteLength > 256) return undefined;
  // Prefer the longest prefix so the name part stays short; splitting happens at a "/" which is dropped.
  for (let i = path.length - 1; i > 0; i--) {
    if (path[i] !== "/") continue;
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (name === "") continue;
    if (encoder.encode(prefix).byteLength <= 155 && encoder.encode(name).byteLength <= 100) return { prefix, name };
  }
  return undefined;
}

function encodePaxRecords(records: Record<string, string>): Uint8Array {
  let text = "";
  for (const [key, value] of Object.entries(records)) {
    // Each record is "<len> <key>=<value>\n" where <len> counts the whole record, itself included.
    const rest = encoder.encode(` ${key}=${value}\n`).byteLength;
    let len = rest + 1;
    while (String(len).length + rest !== len) len = String(len).length + rest;
    text += `${len} ${key}=${value}\n`;
  }
  return encoder.encode(text);
}

function dataBlocks(data: Uint8Array): Uint8Array[] {
  const padding = (BLOCK - (data.byteLength % BLOCK)) % BLOCK;
  return padding === 0 ? [data] : [data, new Uint8Array(padding)];
}

function writeString(block: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = encoder.encode(value);
  if (bytes.byteLength > length) throw new TarFormatError(`tar header field overflow for ${JSON.stringify(value)}`);
  block.set(bytes, offset);
}

function writeOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  writeString(block, offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
}

function truncateUtf8(value: string, maxBytes: number): string {
  let out = value;
  while (encoder.encode(out).byteLength > maxBytes) out = out.slice(0, -1);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let total = 0;
  for (const part of parts) total += part.byteLength;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading

/**
 * Incremental tar parser: feed it chunks of any size, get complete entries back. Every byte is
 * copied at most once, so multi-megabyte files arriving in small chunks stay linear.
 */
export class TarParser {
  private chunks: Uint8Array[] = [];
  private headOffset = 0;
  private available = 0;
  private state: "header" | "data" | "end" = "header";
  private current: (RawHeader & { path: string }) | undefined;
  private paddingAfterData = 0;
  private overrides: { path?: string; linkpath?: string; size?: number; mtime?: number } = {};
  private zeroBlocks = 0;

  push(chunk: Uint8Array): TarEntry[] {
    const entries: TarEntry[] = [];
    if (this.state === "end" || chunk.byteLength === 0) return entries;
    this.chunks.push(chunk);
    this.available += chunk.byteLength;
    for (;;) {
      if (this.state === "header") {
        if (this.available < BLOCK) break;
        const block = this.take(BLOCK);
        if (block.every((byte) => byte === 0)) {
          if (++this.zeroBlocks === 2) {
            this.state = "end";
            this.chunks = [];
            this.available = 0;
            break;
          }
          continue;
        }
        this.zeroBlocks = 0;
        const entry = this.onHeader(block);
        if (entry !== undefined) entries.push(entry);
      } else if (this.state === "data") {
        const header = this.current;
        if (header === undefined) throw new TarFormatError("tar parser lost track of the current entry");
        if (this.available < header.size + this.paddingAfterData) break;
        const data = this.take(header.size);
        this.take(this.paddingAfterData);
        this.state = "header";
        this.current = undefined;
        const entry = this.onData(header, data);
        if (entry !== undefined) entries.push(entry);
      } else {
        break;
      }
    }
    return entries;
  }

  /** Call after the last chunk; throws when the archive was cut short. */
  finish(): void {
    // A single zero block followed by EOF is accepted: some writers omit the second one.
    if (this.state === "end" || (this.state === "header" && this.zeroBlocks === 1 && this.available === 0)) return;
    throw new TarFormatError("tar archive is truncated (missing data or end-of-archive marker)");
  }

  private onHeader(block: Uint8Array): TarEntry | undefined {
    const stored = parseOctal(block, 148, 8);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    if (stored !== sum) throw new TarFormatError("tar header checksum mismatch (corrupted archive?)");

    const typeflag = String.fromCharCode(block[156] ?? 0);
    // Only POSIX ustar ("ustar\0" + "00") has a prefix field; old GNU tar keeps timestamps there.
    const posixUstar = decoder.decode(block.subarray(257, 263)) === "ustar\0";
    const name = readString(block, 0, 100);
    const prefix = posixUstar ? readString(block, 345, 155) : "";
    // PAX and GNU long-name headers describe the next entry; the next real entry consumes them.
    const isMeta = ["x", "g", "L", "K"].includes(typeflag);
    const overrides = isMeta ? {} : this.overrides;
    if (!isMeta) this.overrides = {};
    const header = {
      name,
      prefix,
      mode: parseOctal(block, 100, 8),
      size: overrides.size ?? parseNumeric(block, 124, 12),
      mtime: overrides.mtime ?? parseNumeric(block, 136, 12),
      typeflag,
      linkname: overrides.linkpath ?? readString(block, 157, 100),
      path: overrides.path ?? (prefix === "" ? name : `${prefix}/${name}`),
    };
    // Only regular files, PAX and GNU long-name records carry data; a size on other types is ignored.
    const hasData = ["0", "\0", "7", "x", "g", "L", "K"].includes(typeflag);
    if (hasData && header.size > 0) {
      this.current = header;
      this.paddingAfterData = (BLOCK - (header.size % BLOCK)) % BLOCK;
      this.state = "data";
      return undefined;
    }
    return this.onData(header, new Uint8Array(0));
  }

  private onData(header: RawHeader & { path: string }, data: Uint8Array): TarEntry | undefined {
    const { typeflag, path } = header;
    switch (typeflag) {
      case "x":
        this.overrides = { ...this.overrides, ...parsePaxRecords(data) };
        return undefined;
      case "g":
        return undefined;
      case "L":
        this.overrides = { ...this.overrides, path: decodeNulTerminated(data) };
        return undefined;
      case "K":
        this.overrides = { ...this.overrides, linkpath: decodeNulTerminated(data) };
        return undefined;
      case "0":
      case "\0":
      case "7":
        return { type: "file", path, data, mode: header.mode & 0o7777, mtime: header.mtime };
      case "5":
        return { type: "directory", path, mode: header.mode & 0o7777, mtime: header.mtime };
      case "2":
        return { type: "symlink", path, target: header.linkname, mtime: header.mtime };
      case "1":
        throw new TarFormatError(`tar entry ${JSON.stringify(path)} is a hard link, which is not supported`);
      default:
        throw new TarFormatError(`tar entry ${JSON.stringify(path)} has unsupported type ${JSON.stringify(typeflag)}`);
    }
  }

  private take(length: number): Uint8Array {
    if (length === 0) return new Uint8Array(0);
    const first = this.chunks[0];
    if (first !== undefined && first.byteLength - this.headOffset >= length) {
      const out = first.subarray(this.headOffset, this.headOffset + length);
      this.advance(length);
      return out;
    }
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const chunk = this.chunks[0];
      if (chunk === undefined) throw new TarFormatError("tar parser ran out of data");
      const n = Math.min(length - filled, chunk.byteLength - this.headOffset);
      out.set(chunk.subarray(this.headOffset, this.headOffset + n), filled);
      filled += n;
      this.advance(n);
    }
    return out;
  }

  private advance(length: number): void {
    this.available -= length;
    this.headOffset += length;
    const first = this.chunks[0];
    if (first !== undefined && this.headOffset >= first.byteLength) {
      this.chunks.shift();
      this.headOffset = 0;
    }
  }
}

/** Parses a complete, uncompressed archive held in memory. */
export function unpackTar(archive: Uint8Array): TarEntry[] {
  const parser = new TarParser();
  const entries = parser.push(archive);
  parser.finish();
  return entries;
}

/** Parses an uncompressed archive arriving as a stream of chunks. */
export async function* readTar(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry> {
  const parser = new TarParser();
  for await (const chunk of chunks) yield* parser.push(chunk);
  parser.finish();
}

/** Streams a gzipped archive from a Blob (or file) through gunzip into the parser. */
export function readTarGz(source: Blob): AsyncGenerator<TarEntry> {
  const stream = source.stream().pipeThrough(new DecompressionStream("gzip"));
  return readTar(stream);
}

function readString(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return decoder.decode(end === -1 ? field : field.subarray(0, end));
}

function parseOctal(block: Uint8Array, offset: number, length: number): number {
  const text = readString(block, offset, length).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`invalid octal field ${JSON.stringify(text)} in tar header`);
  return Number.parseInt(text, 8);
}

/** Octal, or GNU base-256 when the high bit of the first byte is set. */
function parseNumeric(block: Uint8Array, offset: number, length: number): number {
  if (((block[offset] ?? 0) & 0x80) === 0) return parseOctal(block, offset, length);
  let value = (block[offset] ?? 0) & 0x7f;
  for (let i = offset + 1; i < offset + length; i++) value = value * 256 + (block[i] ?? 0);
  return value;
}

function decodeNulTerminated(data: Uint8Array): string {
  const end = data.indexOf(0);
  return decoder.decode(end === -1 ? data : data.subarray(0, end));
}

function parsePaxRecords(data: Uint8Array): { path?: string; linkpath?: string; size?: number; mtime?: number } {
  const out: { path?: string; linkpath?: string; size?: number; mtime?: number } = {};
  let offset = 0;
  while (offset < data.byteLength) {
    const space = data.indexOf(0x20, offset);
    if (space === -1) break;
    const length = Number.parseInt(decoder.decode(data.subarray(offset, space)), 10);
    if (!Number.isFinite(length) || length <= 0 || offset + length > data.byteLength) {
      throw new TarFormatError("malformed PAX extended header");
    }
    const record = decoder.decode(data.subarray(space + 1, offset + length - 1));
    const eq = record.indexOf("=");
    if (eq !== -1) {
      const key = record.slice(0, eq);
      const value = record.slice(eq + 1);
      if (key === "path") out.path = value;
      else if (key === "linkpath") out.linkpath = value;
      else if (key === "size") out.size = Number.parseInt(value, 10);
      else if (key === "mtime") out.mtime = Math.floor(Number.parseFloat(value));
    }
    offset += length;
  }
  return out;
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
