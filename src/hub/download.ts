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

import { mkdir, realpath } from "node:fs/promises";
import { basename } from "node:path";
import { HubAuthError, HubNotFoundError, HubUnavailableError, InsufficientDiskSpaceError } from "../errors.ts";
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
import { hubLib } from "./hub-lib.ts";
import { type Context, HubUnreachableError, makeHubFetch, throwIfAborted, timeoutFetch, withRetry } from "./hub-request.ts";
import { assertInsideCache, validateRepoId, validateRepoPath, validateRevision } from "./names.ts";
import { type DownloadProgress, ProgressTracker } from "./progress.ts";
import { downloadOne, formatBytes, freeBytes, type RemoteFile, sizeOf, withBlobLock } from "./transfer.ts";

export type { DownloadProgress } from "./progress.ts";

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
  /** A transfer that receives nothing for this long is dropped and resumed. Default 20 s. */
  idleTimeoutMs?: number;
  /** Longest a metadata request (commit, file list, download URL) may take, its body included. Default 30 s. */
  requestTimeoutMs?: number;
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

const DEFAULTS = { attempts: 5, baseDelayMs: 1000, maxDelayMs: 30_000, idleTimeoutMs: 20_000, requestTimeoutMs: 30_000, diskReserveBytes: 256 * 1024 * 1024, progressIntervalMs: 250 };

// ---- metadata ----

async function remoteFiles(ctx: Context, files: readonly string[]): Promise<{ commit: string; remote: RemoteFile[] }> {
  const credentials = ctx.token ? { accessToken: ctx.token } : {};
  const { modelInfo, pathsInfo } = await hubLib();
  const info = await withRetry(ctx, `look up ${ctx.repo}@${ctx.revision}`, () =>
    modelInfo({ name: ctx.repo, revision: ctx.revision, hubUrl: ctx.hubUrl, fetch: ctx.metadataFetch, additionalFields: ["sha"], ...credentials }),
  );
  const commit = info.sha;
  if (typeof commit !== "string" || !isCommitHash(commit)) {
    throw new HubUnavailableError(`${ctx.repo}@${ctx.revision}: the hub did not report a commit id`);
  }
  const entries = await withRetry(ctx, `list files of ${ctx.repo}@${ctx.revision}`, () =>
    pathsInfo({ repo: ctx.repo, paths: [...files], revision: commit, hubUrl: ctx.hubUrl, fetch: ctx.metadataFetch, ...credentials }),
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
  const hubFetch = makeHubFetch(hubOrigin);
  let progress: ProgressTracker | undefined;
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
    fetch: hubFetch,
    metadataFetch: timeoutFetch(hubFetch, opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs),
    // Before the file list is known there is no tracker yet; a blank one still tells the caller.
    onRetry: (r) => (progress ?? new ProgressTracker(repo, 0, files.length, 0, opts.onProgress)).retrying(`${r.reason}, retrying ${r.attempt}/${r.attempts}`),
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

  progress = new ProgressTracker(
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
