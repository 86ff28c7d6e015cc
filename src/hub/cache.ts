// The Hugging Face hub cache, laid out exactly as huggingface_hub (huggingface-cli, transformers,
// mlx-lm) and llama.cpp's -hf lay it out, so a model any of them downloaded is found here and one
// downloaded here is found by them:
//
//   {cache}/models--{org}--{name}/
//     blobs/{etag}                 file contents; etag = sha256 for LFS files, git blob sha1 otherwise
//     blobs/{etag}.incomplete      a download in progress (same name huggingface_hub resumes from)
//     snapshots/{commit}/{path}    relative symlink to ../../blobs/{etag} (one more ../ per subfolder)
//     refs/{revision}              the commit that revision pointed to when last downloaded

import { mkdir, readFile, readdir, realpath, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative, sep } from "node:path";
import { assertInsideCache, validateRepoId, validateRepoPath, validateRevision } from "./names.ts";

export type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_HUB_URL = "https://huggingface.co";
const COMMIT = /^[0-9a-f]{40}$/;

function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

/**
 * The hub cache root, resolved the way huggingface_hub does: HF_HUB_CACHE, then its older name
 * HUGGINGFACE_HUB_CACHE, then $HF_HOME/hub, then $XDG_CACHE_HOME/huggingface/hub, then
 * ~/.cache/huggingface/hub.
 */
export function hubCacheDir(env: Env = process.env): string {
  const explicit = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (explicit) return expandHome(explicit);
  if (env.HF_HOME) return join(expandHome(env.HF_HOME), "hub");
  const xdg = env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : join(homedir(), ".cache");
  return join(xdg, "huggingface", "hub");
}

/** The hub endpoint: HF_ENDPOINT (mirrors, self-hosted hubs) or huggingface.co. */
export function hubEndpoint(env: Env = process.env): string {
  return (env.HF_ENDPOINT || DEFAULT_HUB_URL).replace(/\/+$/, "");
}

/**
 * The hub token: HF_TOKEN, then the older HUGGING_FACE_HUB_TOKEN, then the file `hf auth login`
 * (huggingface-cli login) writes: $HF_TOKEN_PATH or $HF_HOME/token (~/.cache/huggingface/token).
 */
export async function hubToken(env: Env = process.env): Promise<string | undefined> {
  const fromEnv = (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN)?.trim();
  if (fromEnv) return fromEnv;
  const home = env.HF_HOME
    ? expandHome(env.HF_HOME)
    : join(env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : join(homedir(), ".cache"), "huggingface");
  const file = env.HF_TOKEN_PATH ? expandHome(env.HF_TOKEN_PATH) : join(home, "token");
  try {
    const token = (await readFile(file, "utf8")).trim();
    return token || undefined;
  } catch {
    return undefined;
  }
}

/** `W/"abc"` and `"abc"` → `abc`: the hub quotes ETags, the cache names blobs without quotes. */
export function normalizeEtag(etag: string): string {
  return etag.replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
}

export function repoFolderName(repo: string): string {
  return ["models", ...validateRepoId(repo).split("/")].join("--");
}

export function repoCacheDir(cacheDir: string, repo: string): string {
  return join(cacheDir, repoFolderName(repo));
}

function checkEtag(etag: string): string {
  // Blob names come from the hub's answers; only hex digests are ever legitimate.
  if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(etag)) throw new Error(`unexpected etag ${JSON.stringify(etag)} (want a sha1 or sha256 hex digest)`);
  return etag;
}

export function blobPath(cacheDir: string, repo: string, etag: string): string {
  return join(repoCacheDir(cacheDir, repo), "blobs", checkEtag(etag));
}

export function incompletePath(cacheDir: string, repo: string, etag: string): string {
  return blobPath(cacheDir, repo, etag) + ".incomplete";
}

function checkCommit(commit: string): string {
  if (!COMMIT.test(commit)) throw new Error(`unexpected commit id ${JSON.stringify(commit)} (want 40 hex digits)`);
  return commit;
}

export function snapshotDir(cacheDir: string, repo: string, commit: string): string {
  return join(repoCacheDir(cacheDir, repo), "snapshots", checkCommit(commit));
}

export function snapshotPath(cacheDir: string, repo: string, commit: string, file: string): string {
  return join(snapshotDir(cacheDir, repo, commit), validateRepoPath(file));
}

export function refPath(cacheDir: string, repo: string, revision: string): string {
  return join(repoCacheDir(cacheDir, repo), "refs", validateRevision(revision));
}

export function isCommitHash(revision: string): boolean {
  return COMMIT.test(revision);
}

/** The commit `revision` pointed to at the last download, or the revision itself if it is a commit hash. */
export async function readRef(cacheDir: string, repo: string, revision: string): Promise<string | null> {
  if (isCommitHash(revision)) return revision;
  try {
    const commit = (await readFile(refPath(cacheDir, repo, revision), "utf8")).trim();
    return COMMIT.test(commit) ? commit : null;
  } catch {
    return null;
  }
}

function tempName(path: string): string {
  return `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

/** Points `refs/{revision}` at `commit`. Atomic, so a reader never sees a half-written ref. */
export async function writeRef(cacheDir: string, repo: string, revision: string, commit: string): Promise<void> {
  if (isCommitHash(revision)) return;
  const path = refPath(cacheDir, repo, revision);
  await assertInsideCache(cacheDir, path);
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempName(path);
  await writeFile(tmp, checkCommit(commit));
  await rename(tmp, path);
}

/** Creates (or replaces) the snapshot entry for `file` as a relative symlink to its blob; returns its path. */
export async function linkSnapshot(cacheDir: string, repo: string, commit: string, file: string, etag: string): Promise<string> {
  const pointer = snapshotPath(cacheDir, repo, commit, file);
  const blob = blobPath(cacheDir, repo, etag);
  await assertInsideCache(cacheDir, pointer);
  await mkdir(dirname(pointer), { recursive: true });
  const tmp = tempName(pointer);
  await symlink(relative(dirname(pointer), blob), tmp);
  try {
    await rename(tmp, pointer);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return pointer;
}

export interface CachedFile {
  repo: string;
  /** Path inside the repo. */
  file: string;
  commit: string;
  /** The snapshot path (what a loader should open). */
  path: string;
  size: number;
}

/**
 * A file already in the cache for `revision` (a branch, tag or commit), or null. Finds files put
 * there by any hub client. Throws UnsafePathError if the entry leads outside the cache.
 */
export async function findCachedFile(cacheDir: string, repo: string, file: string, revision = "main"): Promise<CachedFile | null> {
  const commit = await readRef(cacheDir, repo, validateRevision(revision));
  if (!commit) return null;
  const path = snapshotPath(cacheDir, repo, commit, file);
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) return null;
    size = st.size;
  } catch {
    return null;
  }
  await assertInsideCache(cacheDir, path);
  return { repo, file, commit, path, size };
}

/** Size of `blobs/{etag}` if it exists (and has `size` bytes, when given), else null. */
export async function cachedBlobSize(cacheDir: string, repo: string, etag: string, size?: number): Promise<number | null> {
  try {
    const st = await stat(blobPath(cacheDir, repo, etag));
    if (!st.isFile() || (size !== undefined && st.size !== size)) return null;
    return st.size;
  } catch {
    return null;
  }
}

export interface CachedSnapshot {
  commit: string;
  files: { file: string; path: string; size: number }[];
}

export interface CachedRepo {
  repo: string;
  dir: string;
  /** revision → commit */
  refs: Record<string, string>;
  snapshots: CachedSnapshot[];
  /** Bytes in finished blobs. */
  blobBytes: number;
  /** Bytes in `.incomplete` blobs, i.e. downloads that can resume. */
  incompleteBytes: number;
}

async function walkFiles(root: string, prefix = ""): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(join(root, prefix), { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walkFiles(root, rel)));
    else out.push(rel);
  }
  return out;
}

async function scanRepo(cacheDir: string, folder: string): Promise<CachedRepo | null> {
  const parts = folder.split("--");
  if (parts.length !== 3 || parts[0] !== "models") return null;
  const repo = `${parts[1]}/${parts[2]}`;
  try {
    validateRepoId(repo);
  } catch {
    return null;
  }
  const dir = join(cacheDir, folder);
  const realDir = await realpath(dir).catch(() => dir);
  const refs: Record<string, string> = {};
  for (const ref of await walkFiles(join(dir, "refs"))) {
    const commit = (await readFile(join(dir, "refs", ref), "utf8").catch(() => "")).trim();
    if (COMMIT.test(commit)) refs[ref] = commit;
  }
  const snapshots: CachedSnapshot[] = [];
  let commits: string[] = [];
  try {
    commits = (await readdir(join(dir, "snapshots"))).filter((c) => COMMIT.test(c));
  } catch {
    // A repo folder with no snapshots yet (only incomplete blobs) is still worth listing.
  }
  for (const commit of commits.sort()) {
    const files: CachedSnapshot["files"] = [];
    for (const file of await walkFiles(join(dir, "snapshots", commit))) {
      const path = join(dir, "snapshots", commit, ...file.split("/"));
      try {
        const real = await realpath(path);
        // Entries that lead out of the repo folder are not ours to report (or to load).
        if (!real.startsWith(realDir + sep)) continue;
        const st = await stat(real);
        if (st.isFile()) files.push({ file, path, size: st.size });
      } catch {
        // Dangling link: its blob was deleted; the file simply is not cached.
      }
    }
    snapshots.push({ commit, files });
  }
  let blobBytes = 0;
  let incompleteBytes = 0;
  try {
    for (const name of await readdir(join(dir, "blobs"))) {
      const st = await stat(join(dir, "blobs", name)).catch(() => null);
      if (!st?.isFile()) continue;
      if (name.endsWith(".incomplete")) incompleteBytes += st.size;
      else blobBytes += st.size;
    }
  } catch {
    // No blobs folder: nothing downloaded.
  }
  return { repo, dir, refs, snapshots, blobBytes, incompleteBytes };
}

/** Every model repo in the cache with its refs, snapshot files and sizes, sorted by repo id. */
export async function listCachedRepos(cacheDir: string): Promise<CachedRepo[]> {
  let folders: string[];
  try {
    folders = await readdir(cacheDir);
  } catch {
    return [];
  }
  const repos: CachedRepo[] = [];
  for (const folder of folders.filter((f) => f.startsWith("models--")).sort()) {
    const repo = await scanRepo(cacheDir, folder);
    if (repo) repos.push(repo);
  }
  return repos;
}

/** The files of one cached repo at `revision` (branch, tag or commit), or null if it is not cached. */
export async function listCachedFiles(cacheDir: string, repo: string, revision = "main"): Promise<CachedFile[] | null> {
  const commit = await readRef(cacheDir, repo, validateRevision(revision));
  if (!commit) return null;
  const scanned = await scanRepo(cacheDir, repoFolderName(repo));
  const snapshot = scanned?.snapshots.find((s) => s.commit === commit);
  if (!snapshot) return null;
  return snapshot.files.map((f) => ({ repo, file: f.file, commit, path: f.path, size: f.size }));
}
