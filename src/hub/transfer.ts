// The transfer of one file into the hub cache: ranged resume from the `.incomplete` file, hashing
// while streaming, verification, and one download per blob at a time.

import { hubLib, isInvalidApiResponse } from "./hub-lib.ts";
import { createHash, type Hash } from "node:crypto";
import { mkdir, open, rename, rm, stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { ChecksumMismatchError, HubNotFoundError, HubUnavailableError } from "../errors.ts";
import { log } from "../log.ts";
import { blobPath, incompletePath } from "./cache.ts";
import { type Context, HttpStatusError, seconds, throwIfAborted, TransferError, withRetry } from "./hub-request.ts";
import { assertInsideCache } from "./names.ts";
import type { ProgressTracker } from "./progress.ts";

export interface RemoteFile {
  file: string;
  size: number;
  etag: string;
  sha256: string | null;
  oid: string | null;
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

export async function freeBytes(dir: string): Promise<number> {
  const st = await statfs(dir);
  return Number(st.bavail) * Number(st.bsize);
}

// The hash a file must have: sha256 for LFS files; for small git-stored files the git blob id,
// which is the sha1 of "blob <size>\0" followed by the contents.
function newHasher(f: RemoteFile): Hash {
  if (f.sha256) return createHash("sha256");
  const h = createHash("sha1");
  h.update(`blob ${f.size}\0`);
  return h;
}

function expectedDigest(f: RemoteFile): string | null {
  return f.sha256 ?? f.oid;
}

async function hashFilePrefix(path: string, bytes: number, hash: Hash, signal: AbortSignal | undefined): Promise<void> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    let pos = 0;
    while (pos < bytes) {
      throwIfAborted(signal);
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bytes - pos), pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

// One download per blob at a time in this process: two jobs pulling the same model would
// otherwise append to the same .incomplete file.
const blobLocks = new Map<string, Promise<unknown>>();

export async function withBlobLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = blobLocks.get(key) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(fn);
  const tail = run.catch(() => undefined);
  blobLocks.set(key, tail);
  try {
    return await run;
  } finally {
    if (blobLocks.get(key) === tail) blobLocks.delete(key);
  }
}

// ---- the transfer of one file ----

interface HashState {
  hash: Hash;
  bytes: number;
}

function parseContentRangeStart(header: string | null): number | null {
  const m = header ? /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header.trim()) : null;
  return m ? Number(m[1]) : null;
}

/**
 * One attempt at bringing `incomplete` up to `f.size` bytes from `url`, hashing as it goes.
 * `state` carries the hash of the bytes already on disk between attempts so a retry does not
 * re-read them. Whatever was written stays on disk when this throws: the next attempt resumes.
 */
async function transferOnce(ctx: Context, f: RemoteFile, url: string, incomplete: string, state: { current: HashState | null }, progress: ProgressTracker): Promise<void> {
  let have = await sizeOf(incomplete);
  if (have > f.size) {
    log.warn("partial download is larger than the file; starting over", { repo: ctx.repo, file: f.file, have, size: f.size });
    await rm(incomplete, { force: true });
    progress.rewindFile();
    have = 0;
  }
  if (!state.current || state.current.bytes !== have) {
    const hash = newHasher(f);
    if (have > 0) await hashFilePrefix(incomplete, have, hash, ctx.signal);
    state.current = { hash, bytes: have };
  }
  if (have === f.size) return;

  // A stalled connection never errors by itself; this aborts it so the retry loop resumes it.
  const idle = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, idle.signal]) : idle.signal;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(new TransferError(`no data for ${seconds(ctx.idleTimeoutMs)}`)), ctx.idleTimeoutMs);
  };
  arm();
  try {
    const headers: Record<string, string> = {};
    if (have > 0) headers.range = `bytes=${have}-`;
    if (ctx.token) headers.authorization = `Bearer ${ctx.token}`;
    const res = await ctx.fetch(url, { headers, signal });
    if (res.status === 206) {
      const start = parseContentRangeStart(res.headers.get("content-range"));
      if (start !== have) {
        await res.body?.cancel();
        throw new TransferError(`asked for bytes from ${have} but the server sent a range starting at ${start ?? "?"}`);
      }
    } else if (res.status === 200) {
      if (have > 0) {
        log.info("server ignored the Range request; downloading from the start", { repo: ctx.repo, file: f.file, had: have });
        progress.rewindFile();
        have = 0;
        state.current = { hash: newHasher(f), bytes: 0 };
      }
    } else if (res.status === 416) {
      // What we have cannot be extended (the file changed underneath?): start clean next attempt.
      await res.body?.cancel();
      await rm(incomplete, { force: true });
      progress.rewindFile();
      state.current = null;
      throw new TransferError(`server refused the range bytes=${have}- (HTTP 416)`);
    } else {
      const detail = (await res.text().catch(() => "")).slice(0, 300);
      throw new HttpStatusError(res.status, url, detail);
    }
    if (!res.body) throw new TransferError("response has no body");

    await assertInsideCache(ctx.cacheDir, incomplete);
    const fh = await open(incomplete, have === 0 ? "w" : "a");
    const hs = state.current;
    try {
      for await (const chunk of res.body) {
        arm();
        if (hs.bytes + chunk.byteLength > f.size) {
          // Nothing sensible can be kept from a body longer than the file.
          state.current = null;
          await fh.truncate(0);
          progress.rewindFile();
          throw new TransferError(`server sent more than the ${f.size} bytes expected`);
        }
        await fh.write(chunk);
        hs.hash.update(chunk);
        hs.bytes += chunk.byteLength;
        progress.add(chunk.byteLength);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (hs.bytes < f.size) throw new TransferError(`connection closed after ${hs.bytes} of ${f.size} bytes`);
  } catch (err) {
    // The idle timer's abort surfaces as whatever fetch makes of it; report it as the stall it was.
    if (idle.signal.aborted && !ctx.signal?.aborted) throw idle.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export async function downloadOne(ctx: Context, commit: string, f: RemoteFile, progress: ProgressTracker): Promise<void> {
  const incomplete = incompletePath(ctx.cacheDir, ctx.repo, f.etag);
  const blob = blobPath(ctx.cacheDir, ctx.repo, f.etag);
  await assertInsideCache(ctx.cacheDir, incomplete);
  await assertInsideCache(ctx.cacheDir, blob);
  await mkdir(dirname(incomplete), { recursive: true });
  const state: { current: HashState | null } = { current: null };
  progress.startFile(f.file, await sizeOf(incomplete).then((n) => Math.min(n, f.size)), f.size);

  if (f.size === 0) {
    // Nothing to transfer (and the hub cannot answer a Range probe for an empty file).
    await assertInsideCache(ctx.cacheDir, incomplete);
    await open(incomplete, "w").then((fh) => fh.close());
    state.current = { hash: newHasher(f), bytes: 0 };
  } else {
    await withRetry(ctx, `download ${ctx.repo}/${f.file}`, async () => {
      let url: string;
      try {
        const info = await (await hubLib()).fileDownloadInfo({
          repo: ctx.repo,
          path: f.file,
          revision: commit,
          hubUrl: ctx.hubUrl,
          fetch: ctx.metadataFetch,
          ...(ctx.token ? { accessToken: ctx.token } : {}),
        });
        if (!info) throw new HubNotFoundError(`${ctx.repo}: file ${f.file} not found at ${commit}`);
        if (info.size !== f.size) {
          throw new HubUnavailableError(`${ctx.repo}/${f.file}: the hub reports two sizes (${f.size} in the listing, ${info.size} for the download)`);
        }
        url = info.url;
      } catch (err) {
        // fileDownloadInfo learns the size from a 1-byte Range probe; a mirror or proxy that
        // ignores Range answers it with the whole file and no size. The listing already gave the
        // size, so download from the resolve URL and let the transfer cope with the 200.
        if (!isInvalidApiResponse(err)) throw err;
        log.debug("file info probe failed; using the resolve URL", { repo: ctx.repo, file: f.file, error: err.message });
        url = `${ctx.hubUrl}/${ctx.repo}/resolve/${commit}/${f.file.split("/").map(encodeURIComponent).join("/")}`;
      }
      await transferOnce(ctx, f, url, incomplete, state, progress);
    });
  }

  const want = expectedDigest(f);
  const got = state.current?.hash.digest("hex") ?? "";
  if (want && got !== want) {
    await rm(incomplete, { force: true });
    throw new ChecksumMismatchError(f.file, want, got);
  }
  await assertInsideCache(ctx.cacheDir, blob);
  await rename(incomplete, blob);
}
