// Downloads repo files from the Hugging Face Hub into the standard hub cache (see cache.ts).
//
// Built on @huggingface/hub's metadata calls (modelInfo for the commit, pathsInfo for sizes and
// hashes, fileDownloadInfo for the URL) with our own ranged transfer, because the library's
// downloadFileToCacheDir neither resumes nor verifies. What this adds:
//   - resume from `blobs/{etag}.incomplete` with `Range: bytes=N-` (within one call after a
//     dropped connection, and across calls / process restarts); restart from zero if the server
//     ignores the Range;
//   - sha256 verification of LFS files (git blob sha1 for small files) while streaming;
//   - a free-space check before starting, retries with back-off for 5xx and network failures,
//     an idle timeout for stalled transfers, clean cancellation through an AbortSignal;
//   - the token is only ever sent to the hub's own origin, never to the CDN it redirects to.

import { HubApiError, InvalidApiResponseFormatError, fileDownloadInfo, modelInfo, pathsInfo } from "@huggingface/hub";
import { createHash, type Hash } from "node:crypto";
import { open, mkdir, realpath, rename, rm, stat, statfs } from "node:fs/promises";
import { basename, dirname } from "node:path";
import {
  ChecksumMismatchError,
  HubAuthError,
  HubNotFoundError,
  HubUnavailableError,
  InsufficientDiskSpaceError,
  LmxError,
  errorMessage,
} from "../errors.ts";
import { log } from "../log.ts";
import {
  blobPath,
  cachedBlobSize,
  findCachedFile,
  hubCacheDir,
  hubEndpoint,
  incompletePath,
  isCommitHash,
  linkSnapshot,
  normalizeEtag,
  readRef,
  repoCacheDir,
  snapshotDir,
  snapshotPath,
  writeRef,
} from "./cache.ts";
import { assertInsideCache, validateRepoId, validateRepoPath, validateRevision } from "./names.ts";

export interface DownloadProgress {
  repo: string;
  /** The file being transferred, or null between files. */
  file: string | null;
  fileBytesDone: number;
  fileBytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** Bytes of all requested files that are on disk, including ones already cached or resumed. */
  bytesDone: number;
  bytesTotal: number;
  /** Transfer rate of this run, exponentially smoothed. 0 until measured. */
  bytesPerSecond: number;
  /** Seconds left at the current rate, or null while the rate is unknown. */
  etaSeconds: number | null;
}

export interface RetryOptions {
  /** Tries per request, the first included. Default 5. */
  attempts?: number;
  /** First back-off; doubles each retry (with jitter). Default 1000 ms. */
  baseDelayMs?: number;
  /** Longest back-off. Default 30 s. */
  maxDelayMs?: number;
}

export interface DownloadOptions {
  repo: string;
  /** Branch, tag or commit. Default "main". */
  revision?: string;
  /** Paths inside the repo. */
  files: readonly string[];
  /** Default: HF_ENDPOINT or https://huggingface.co. */
  hubUrl?: string;
  /** HF token (see cache.ts hubToken() for where to find the user's). */
  token?: string;
  /** Default: hubCacheDir(process.env). */
  cacheDir?: string;
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /** Least interval between onProgress calls (start and end of each file always report). Default 250 ms. */
  progressIntervalMs?: number;
  retry?: RetryOptions;
  /** A transfer that receives nothing for this long is dropped and resumed. Default 60 s. */
  idleTimeoutMs?: number;
  /** Free space to leave on the cache's disk besides the download itself. Default 256 MiB. */
  diskReserveBytes?: number;
  /** Use only the cache (HF_HUB_OFFLINE=1): fail if any file is missing instead of asking the hub. */
  offline?: boolean;
}

export interface DownloadedFile {
  /** Path inside the repo. */
  file: string;
  /** Snapshot path: what a loader opens. */
  path: string;
  size: number;
  /** Blob name: the sha256 for LFS files, the git blob sha1 otherwise. */
  etag: string;
  /** sha256 of the contents, for LFS files. */
  sha256: string | null;
  /** True when nothing had to be transferred (it was in the cache already). */
  fromCache: boolean;
}

export interface DownloadResult {
  repo: string;
  revision: string;
  commit: string;
  /** `snapshots/{commit}`: the directory holding all files of this revision. */
  snapshotDir: string;
  files: DownloadedFile[];
  /** Bytes transferred by this call. */
  bytesDownloaded: number;
  /** True when the hub could not be reached (or `offline` was set) and the cache answered. */
  offline: boolean;
}

interface RemoteFile {
  file: string;
  size: number;
  etag: string;
  sha256: string | null;
  oid: string | null;
}

interface Context {
  repo: string;
  revision: string;
  hubUrl: string;
  hubOrigin: string;
  token: string | undefined;
  cacheDir: string;
  signal: AbortSignal | undefined;
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  idleTimeoutMs: number;
  fetch: typeof fetch;
}

const DEFAULTS = { attempts: 5, baseDelayMs: 1000, maxDelayMs: 30_000, idleTimeoutMs: 60_000, diskReserveBytes: 256 * 1024 * 1024, progressIntervalMs: 250 };

/** A non-2xx answer from our own ranged fetch (the library raises HubApiError for its calls). */
class HttpStatusError extends Error {
  constructor(readonly status: number, readonly url: string, readonly detail: string) {
    super(`HTTP ${status} from ${url}${detail ? `: ${detail}` : ""}`);
  }
}

/** Retry-worthy conditions of a transfer that are not HTTP errors: short bodies, wrong ranges, stalls. */
class TransferError extends Error {}

/** The hub could not be reached at all (as opposed to answering with an error): the cache may serve. */
class HubUnreachableError extends HubUnavailableError {}

// ---- errors ----

function hubMessage(err: HubApiError): string {
  const data: unknown = err.data;
  if (data && typeof data === "object" && "error" in data && typeof data.error === "string") return data.error;
  return err.message.replace(/\. URL: .*$/s, "");
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/** Maps any failure to a typed error and says whether trying again could help. */
function classify(err: unknown, ctx: Context, what: string): { error: Error; retriable: boolean } {
  if (err instanceof LmxError) return { error: err, retriable: false };
  let status: number | null = null;
  let detail = "";
  if (err instanceof HubApiError) {
    status = err.statusCode;
    detail = hubMessage(err);
  } else if (err instanceof HttpStatusError) {
    status = err.status;
    detail = err.detail;
  }
  if (status !== null) {
    if (status === 401 || status === 403) {
      const message = ctx.token
        ? `access to ${ctx.repo} denied with the configured HF_TOKEN: ${detail || `HTTP ${status}`} (check the token, and accept the repo's terms on the hub if it is gated)`
        : `authentication required for ${ctx.repo}: set HF_TOKEN (a token from ${ctx.hubUrl}/settings/tokens; gated repos also need their terms accepted, and the hub answers this for repos that do not exist too). Hub said: ${detail || `HTTP ${status}`}`;
      return { error: new HubAuthError(message), retriable: false };
    }
    if (status === 404) {
      return { error: new HubNotFoundError(`${what}: not found on ${ctx.hubUrl} (${detail || "HTTP 404"})`), retriable: false };
    }
    const retriable = status >= 500 || status === 429 || status === 408;
    return { error: new HubUnavailableError(`${what}: the hub answered HTTP ${status}${detail ? ` (${detail})` : ""}`), retriable };
  }
  if (err instanceof TransferError) return { error: new HubUnavailableError(`${what}: ${err.message}`), retriable: true };
  // fetch reports the network (refused, reset, DNS, TLS) as TypeErrors. File system errors
  // (ENOSPC, EACCES...) carry a syscall and are not helped by retrying.
  if ((err instanceof TypeError && !("syscall" in err)) || isAbort(err)) {
    return { error: new HubUnreachableError(`${what}: cannot reach ${ctx.hubUrl}: ${errorMessage(err)}`), retriable: true };
  }
  return { error: new HubUnavailableError(`${what}: ${errorMessage(err)}`), retriable: false };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new DOMException("download cancelled", "AbortError");
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason instanceof Error ? signal.reason : new DOMException("download cancelled", "AbortError"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

async function withRetry<T>(ctx: Context, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(ctx.signal);
    try {
      return await fn();
    } catch (err) {
      throwIfAborted(ctx.signal);
      const { error, retriable } = classify(err, ctx, what);
      if (!retriable || attempt >= ctx.attempts) {
        if (retriable) error.message += ` (gave up after ${attempt} attempts)`;
        throw error;
      }
      const delay = Math.min(ctx.maxDelayMs, ctx.baseDelayMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
      log.warn("hub request failed, retrying", { what, attempt, error: error.message, retryInMs: Math.round(delay) });
      await sleep(delay, ctx.signal);
    }
  }
}

// ---- HTTP ----

function headerRecord(init: RequestInit["headers"]): Record<string, string> {
  const out: Record<string, string> = {};
  new Headers(init).forEach((v, k) => {
    out[k] = v;
  });
  return out;
}

/**
 * fetch that follows redirects itself so the Authorization header goes only to the hub's origin:
 * the hub redirects file downloads to a CDN with a signed URL, which must not see the token.
 * Also handed to the library, whose own calls then get the same treatment.
 */
function makeHubFetch(hubOrigin: string): typeof fetch {
  const hubFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    if ((method !== "GET" && method !== "HEAD") || input instanceof Request) return fetch(input, init);
    let url = new URL(input);
    const headers = headerRecord(init?.headers);
    for (let hop = 0; hop < 10; hop++) {
      // Checked on every hop, the first included: the library may hand back a CDN URL directly.
      if (url.origin !== hubOrigin) delete headers.authorization;
      const res = await fetch(url, { ...init, headers, redirect: "manual" });
      const location = res.headers.get("location");
      if (![301, 302, 303, 307, 308].includes(res.status) || !location) return res;
      await res.body?.cancel();
      url = new URL(location, url);
    }
    throw new TypeError(`too many redirects from ${String(input)}`);
  };
  return Object.assign(hubFetch, { preconnect: fetch.preconnect });
}

// ---- progress ----

class ProgressTracker {
  private transferred = 0;
  private rate = 0;
  private lastSampleAt: number;
  private lastSampleBytes = 0;
  private lastEmit = 0;
  private readonly startedAt: number;
  bytesDone = 0;
  filesDone = 0;
  file: string | null = null;
  fileBytesDone = 0;
  fileBytesTotal = 0;

  constructor(
    private readonly repo: string,
    readonly bytesTotal: number,
    readonly filesTotal: number,
    private readonly intervalMs: number,
    private readonly onProgress: ((p: DownloadProgress) => void) | undefined,
  ) {
    this.startedAt = this.lastSampleAt = performance.now();
  }

  get transferredBytes(): number {
    return this.transferred;
  }

  startFile(file: string, have: number, total: number): void {
    this.file = file;
    this.fileBytesDone = have;
    this.fileBytesTotal = total;
    this.bytesDone += have;
    this.emit(true);
  }

  /** The partial file was discarded (server ignored Range, or a restart): take its bytes back. */
  rewindFile(): void {
    this.bytesDone -= this.fileBytesDone;
    this.fileBytesDone = 0;
  }

  add(n: number): void {
    this.transferred += n;
    this.bytesDone += n;
    this.fileBytesDone += n;
    this.emit(false);
  }

  finishFile(fromCacheBytes: number): void {
    this.bytesDone += fromCacheBytes;
    this.filesDone++;
    this.file = null;
    this.fileBytesDone = this.fileBytesTotal = 0;
    this.emit(true);
  }

  private sample(now: number): void {
    const dt = (now - this.lastSampleAt) / 1000;
    // Sampling windows under half a second are dominated by chunk timing noise.
    if (dt < 0.5) {
      if (this.rate === 0 && now > this.startedAt) this.rate = (this.transferred / (now - this.startedAt)) * 1000;
      return;
    }
    const instant = (this.transferred - this.lastSampleBytes) / dt;
    this.rate = this.rate === 0 ? instant : 0.3 * instant + 0.7 * this.rate;
    this.lastSampleAt = now;
    this.lastSampleBytes = this.transferred;
  }

  emit(force: boolean): void {
    if (!this.onProgress) return;
    const now = performance.now();
    if (!force && now - this.lastEmit < this.intervalMs) return;
    this.lastEmit = now;
    if (this.transferred > 0) this.sample(now);
    const left = Math.max(0, this.bytesTotal - this.bytesDone);
    this.onProgress({
      repo: this.repo,
      file: this.file,
      fileBytesDone: this.fileBytesDone,
      fileBytesTotal: this.fileBytesTotal,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      bytesPerSecond: Math.round(this.rate),
      etaSeconds: left === 0 ? 0 : this.rate > 0 ? left / this.rate : null,
    });
  }
}

// ---- cache-side helpers ----

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function freeBytes(dir: string): Promise<number> {
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

async function withBlobLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
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
    timer = setTimeout(() => idle.abort(new TransferError(`no data for ${ctx.idleTimeoutMs} ms`)), ctx.idleTimeoutMs);
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

async function downloadOne(ctx: Context, commit: string, f: RemoteFile, progress: ProgressTracker): Promise<void> {
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
        const info = await fileDownloadInfo({
          repo: ctx.repo,
          path: f.file,
          revision: commit,
          hubUrl: ctx.hubUrl,
          fetch: ctx.fetch,
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
        if (!(err instanceof InvalidApiResponseFormatError)) throw err;
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

// ---- metadata ----

async function remoteFiles(ctx: Context, files: readonly string[]): Promise<{ commit: string; remote: RemoteFile[] }> {
  const credentials = ctx.token ? { accessToken: ctx.token } : {};
  const info = await withRetry(ctx, `look up ${ctx.repo}@${ctx.revision}`, () =>
    modelInfo({ name: ctx.repo, revision: ctx.revision, hubUrl: ctx.hubUrl, fetch: ctx.fetch, additionalFields: ["sha"], ...credentials }),
  );
  const commit = info.sha;
  if (typeof commit !== "string" || !isCommitHash(commit)) {
    throw new HubUnavailableError(`${ctx.repo}@${ctx.revision}: the hub did not report a commit id`);
  }
  const entries = await withRetry(ctx, `list files of ${ctx.repo}@${ctx.revision}`, () =>
    pathsInfo({ repo: ctx.repo, paths: [...files], revision: commit, hubUrl: ctx.hubUrl, fetch: ctx.fetch, ...credentials }),
  );
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const remote: RemoteFile[] = [];
  for (const file of files) {
    const e = byPath.get(file);
    if (!e) throw new HubNotFoundError(`${ctx.repo}@${ctx.revision}: file ${file} not found`);
    if (e.type !== "file") throw new HubNotFoundError(`${ctx.repo}@${ctx.revision}: ${file} is a ${e.type}, not a file`);
    const sha256 = e.lfs?.oid ? normalizeEtag(e.lfs.oid) : null;
    const oid = e.oid ? normalizeEtag(e.oid) : null;
    const etag = sha256 ?? oid;
    if (!etag) throw new HubUnavailableError(`${ctx.repo}: the hub gave no hash for ${file}`);
    remote.push({ file, size: e.lfs?.size ?? e.size, etag, sha256, oid: sha256 ? null : oid });
  }
  return { commit, remote };
}

async function fromCacheOnly(ctx: Context, files: readonly string[], why: string): Promise<DownloadResult> {
  const found = [];
  for (const file of files) {
    const cached = await findCachedFile(ctx.cacheDir, ctx.repo, file, ctx.revision);
    if (!cached) throw new HubUnavailableError(`${why}, and ${ctx.repo}/${file}@${ctx.revision} is not in the cache ${ctx.cacheDir}`);
    found.push(cached);
  }
  const commit = found[0]?.commit ?? (await readRef(ctx.cacheDir, ctx.repo, ctx.revision)) ?? "";
  return {
    repo: ctx.repo,
    revision: ctx.revision,
    commit,
    snapshotDir: commit ? snapshotDir(ctx.cacheDir, ctx.repo, commit) : "",
    files: await Promise.all(
      found.map(async (c) => {
        // The blob's name is its etag; a sha256-sized one is the LFS content hash.
        const etag = basename(await realpath(c.path));
        return { file: c.file, path: c.path, size: c.size, etag, sha256: /^[0-9a-f]{64}$/.test(etag) ? etag : null, fromCache: true };
      }),
    ),
    bytesDownloaded: 0,
    offline: true,
  };
}

// ---- entry point ----

/**
 * Downloads `files` of `repo` at `revision` into the hub cache and returns their snapshot paths.
 * Files already in the cache are not transferred again; interrupted downloads resume.
 *
 * Throws: UnsafePathError (bad names, planted symlinks; before anything is written),
 * HubAuthError (401/403), HubNotFoundError (repo, revision or file), HubUnavailableError (5xx or
 * network after retries), ChecksumMismatchError (partial file deleted), InsufficientDiskSpaceError,
 * and the signal's reason (an AbortError) when cancelled, leaving partial files to resume from.
 */
export async function downloadFiles(opts: DownloadOptions): Promise<DownloadResult> {
  const repo = validateRepoId(opts.repo);
  const revision = validateRevision(opts.revision ?? "main");
  const files = [...new Set(opts.files)];
  for (const f of files) validateRepoPath(f);
  if (files.length === 0) throw new HubNotFoundError(`no files to download from ${repo}`);
  const hubUrl = (opts.hubUrl ?? hubEndpoint(process.env)).replace(/\/+$/, "");
  const hubOrigin = new URL(hubUrl).origin;
  const token = opts.token?.trim() || undefined;
  if (token && !token.startsWith("hf_")) {
    // The client library refuses anything else, so say so plainly instead of a TypeError later.
    throw new HubAuthError("HF_TOKEN does not look like a Hugging Face token (they start with hf_)");
  }
  const cacheDir = opts.cacheDir ?? hubCacheDir(process.env);
  const ctx: Context = {
    repo,
    revision,
    hubUrl,
    hubOrigin,
    token,
    cacheDir,
    signal: opts.signal,
    attempts: Math.max(1, opts.retry?.attempts ?? DEFAULTS.attempts),
    baseDelayMs: opts.retry?.baseDelayMs ?? DEFAULTS.baseDelayMs,
    maxDelayMs: opts.retry?.maxDelayMs ?? DEFAULTS.maxDelayMs,
    idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
    fetch: makeHubFetch(hubOrigin),
  };
  throwIfAborted(ctx.signal);
  // Every folder we may write under, checked before the first byte goes anywhere.
  const repoDir = repoCacheDir(cacheDir, repo);
  for (const sub of ["blobs", "snapshots", "refs"]) await assertInsideCache(cacheDir, `${repoDir}/${sub}`);

  if (opts.offline) return fromCacheOnly(ctx, files, "offline mode");

  let commit: string;
  let remote: RemoteFile[];
  try {
    ({ commit, remote } = await remoteFiles(ctx, files));
  } catch (err) {
    // Hub unreachable (not a refusal): whatever this revision had when last downloaded still serves.
    if (err instanceof HubUnreachableError) {
      try {
        const cached = await fromCacheOnly(ctx, files, err.message);
        log.warn("hub unreachable; using the cached snapshot", { repo, revision, commit: cached.commit });
        return cached;
      } catch {
        throw err;
      }
    }
    throw err;
  }

  await mkdir(cacheDir, { recursive: true });
  // Which files need bytes, and how many.
  const plan: { f: RemoteFile; cached: boolean; partial: number }[] = [];
  for (const f of remote) {
    // Every path this file will touch, checked before any byte of it is fetched.
    for (const path of [blobPath(cacheDir, repo, f.etag), incompletePath(cacheDir, repo, f.etag), snapshotPath(cacheDir, repo, commit, f.file)]) {
      await assertInsideCache(cacheDir, path);
    }
    const cached = (await cachedBlobSize(cacheDir, repo, f.etag, f.size)) !== null;
    const partial = cached ? 0 : Math.min(await sizeOf(incompletePath(cacheDir, repo, f.etag)), f.size);
    plan.push({ f, cached, partial });
  }
  const needed = plan.filter((p) => !p.cached).reduce((n, p) => n + p.f.size - p.partial, 0);
  if (needed > 0) {
    const reserve = opts.diskReserveBytes ?? DEFAULTS.diskReserveBytes;
    const free = await freeBytes(cacheDir);
    if (needed + reserve > free) {
      throw new InsufficientDiskSpaceError(
        needed + reserve,
        free,
        `not enough disk space in ${cacheDir} for ${repo}: ${formatBytes(needed)} still to download (plus ${formatBytes(reserve)} kept free), ${formatBytes(free)} available`,
      );
    }
  }

  const progress = new ProgressTracker(
    repo,
    remote.reduce((n, f) => n + f.size, 0),
    remote.length,
    opts.progressIntervalMs ?? DEFAULTS.progressIntervalMs,
    opts.onProgress,
  );
  const results: DownloadedFile[] = [];
  for (const { f } of plan) {
    throwIfAborted(ctx.signal);
    const lockKey = blobPath(cacheDir, repo, f.etag);
    const fromCache = await withBlobLock(lockKey, async () => {
      // Looked up again under the lock: another job may have just finished this blob.
      if ((await cachedBlobSize(cacheDir, repo, f.etag, f.size)) !== null) return true;
      await downloadOne(ctx, commit, f, progress);
      return false;
    });
    const path = await linkSnapshot(cacheDir, repo, commit, f.file, f.etag);
    progress.finishFile(fromCache ? f.size : 0);
    if (!fromCache) log.info("downloaded", { repo, file: f.file, size: f.size });
    results.push({ file: f.file, path, size: f.size, etag: f.etag, sha256: f.sha256, fromCache });
  }
  await writeRef(cacheDir, repo, revision, commit);
  return {
    repo,
    revision,
    commit,
    snapshotDir: snapshotDir(cacheDir, repo, commit),
    files: results,
    bytesDownloaded: progress.transferredBytes,
    offline: false,
  };
}
