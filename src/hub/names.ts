// Repo ids, revisions and file paths come from users and from the hub's own listings, and all of
// them end up as parts of paths under the cache. Everything here runs before a byte is written,
// so a hostile name or listing can never make a download land outside the cache.

import { lstat, readlink, realpath } from "node:fs/promises";
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { UnsafePathError } from "../errors.ts";

// The hub's rule (the same one huggingface_hub enforces): letters, digits, '_', '-', '.', starting
// and ending with a letter, digit or '_', at most 96 characters for the whole id.
const REPO_SEGMENT = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const MAX_REPO_ID = 96;

/** Returns `repo` unchanged if it is a valid `org/name` model id; throws UnsafePathError naming it otherwise. */
export function validateRepoId(repo: string): string {
  const bad = (why: string) => new UnsafePathError(`invalid repo id ${JSON.stringify(repo)}: ${why}`, "repo");
  if (typeof repo !== "string" || repo.length === 0) throw bad("it is empty");
  if (repo.length > MAX_REPO_ID) throw bad(`longer than ${MAX_REPO_ID} characters`);
  const parts = repo.split("/");
  if (parts.length !== 2) throw bad("expected the form org/name");
  for (const part of parts) {
    if (!REPO_SEGMENT.test(part)) {
      throw bad("each part may use only letters, digits, '_', '-' and '.', and must start and end with a letter, digit or '_'");
    }
  }
  // '--' is the separator in cache folder names (models--org--name), so it would make two
  // different ids share a folder; '..' is refused by the hub for the same path-safety reasons.
  if (repo.includes("--")) throw bad("'--' is not allowed");
  if (repo.includes("..")) throw bad("'..' is not allowed");
  if (repo.endsWith(".git")) throw bad("must not end with .git");
  return repo;
}

function checkRelativePath(value: string, what: string, param: string): string {
  const bad = (why: string) => new UnsafePathError(`unsafe ${what} ${JSON.stringify(value)}: ${why}`, param);
  if (typeof value !== "string" || value.length === 0) throw bad("it is empty");
  if (value.includes("\0")) throw bad("contains a NUL byte");
  // Other control characters are legal in POSIX names but only ever show up in attacks and make
  // log lines and terminals lie about what was written.
  if (/[\x01-\x1f\x7f]/.test(value)) throw bad("contains a control character");
  if (value.includes("\\")) throw bad("contains a backslash");
  if (value.startsWith("/") || isAbsolute(value)) throw bad("is an absolute path");
  if (/^[A-Za-z]:/.test(value)) throw bad("starts with a drive letter");
  for (const segment of value.split("/")) {
    if (segment === "") throw bad("has an empty path segment");
    if (segment === "." || segment === "..") throw bad(`has a '${segment}' segment`);
  }
  return value;
}

/** Returns `path` unchanged if it is a safe relative file path inside a repo. */
export function validateRepoPath(path: string): string {
  return checkRelativePath(path, "file path", "file");
}

/** Revisions become `refs/{revision}` in the cache, so they get the same treatment as file paths. */
export function validateRevision(revision: string): string {
  return checkRelativePath(revision, "revision", "revision");
}

function isInside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Refuses `target` unless it lies lexically inside `cacheDir` and every component of it that
 * already exists resolves (through any symlinks) to a place inside the cache. Symlinks that stay
 * inside are fine: that is how snapshots point at blobs. The cache root itself may be a symlink
 * (a cache moved to another disk), so containment is judged against its real path.
 */
export async function assertInsideCache(cacheDir: string, target: string): Promise<void> {
  const root = resolve(cacheDir);
  const abs = resolve(target);
  const rel = relative(root, abs);
  if (rel.startsWith("..") || isAbsolute(rel)) {
    throw new UnsafePathError(`refusing to write ${JSON.stringify(target)}: it is outside the cache ${root}`);
  }
  let realRoot: string;
  try {
    realRoot = await realpath(root);
  } catch {
    return; // The cache does not exist yet, so nothing inside it can be a planted link.
  }
  let current = root;
  for (const segment of rel === "" ? [] : rel.split(sep)) {
    current = resolve(current, segment);
    let isLink: boolean;
    try {
      isLink = (await lstat(current)).isSymbolicLink();
    } catch {
      return; // Nothing exists from here down.
    }
    let resolved: string;
    try {
      resolved = await realpath(current);
    } catch {
      // A dangling link: judge where it would point.
      if (!isLink) return;
      resolved = resolve(await realpath(dirname(current)), await readlink(current));
    }
    if (!isInside(realRoot, resolved)) {
      throw new UnsafePathError(
        `refusing to write ${JSON.stringify(target)}: ${JSON.stringify(current)} is a symlink that leads outside the cache (to ${resolved})`,
      );
    }
  }
}
