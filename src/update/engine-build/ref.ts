// What `lmx engine build REF` may name, and the llama.cpp repository it is fetched from. Both come
// from users and bots and end up as git arguments and folder names, so anything that could be
// read as an option, leave a folder or pick a dangerous git transport is refused here.

import { InvalidRequestError } from "../../errors.ts";

export type BuildRefKind = "tag" | "commit" | "branch" | "pr";

export interface BuildRef {
  kind: BuildRefKind;
  /** As the user wrote it (normalised: a commit in lower case). */
  ref: string;
  /** The remote ref to fetch (`refs/tags/b6000`, `refs/pull/12/head`), or the commit id itself. */
  remote: string;
  /** Safe in folder names and semver build metadata: letters, digits, '-' and '.'. Empty for commits. */
  label: string;
}

const MAX_REF = 200;

/**
 * Release tags are `b<number>`, commits 7–40 hex digits, pull requests `pr/<number>`; anything
 * else that is a valid git branch name is a branch (or, failing that, a tag of that name).
 */
export function parseBuildRef(input: string): BuildRef {
  const ref = input.trim();
  const bad = (why: string): never => {
    throw new InvalidRequestError(`invalid llama.cpp ref ${JSON.stringify(input.slice(0, MAX_REF))}: ${why}`, "ref", "invalid_ref");
  };
  if (ref === "") bad("it is empty");
  if (ref.length > MAX_REF) bad(`longer than ${MAX_REF} characters`);
  const pr = /^pr\/(\d{1,9})$/i.exec(ref);
  if (pr !== null) {
    const number = String(Number(pr[1]));
    if (number === "0") bad("pull request numbers start at 1");
    return { kind: "pr", ref: `pr/${number}`, remote: `refs/pull/${number}/head`, label: `pr-${number}` };
  }
  if (/^b\d{1,9}$/.test(ref)) return { kind: "tag", ref, remote: `refs/tags/${ref}`, label: ref };
  if (/^[0-9a-f]{7,40}$/i.test(ref)) return { kind: "commit", ref: ref.toLowerCase(), remote: ref.toLowerCase(), label: "" };
  // git check-ref-format's rules, narrowed to characters that need no quoting anywhere.
  if (!/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(ref)) bad("use a release tag (b6000), a commit, a branch name or pr/NUMBER (letters, digits, '.', '_', '-', '/'; not starting with '-')");
  if (ref.includes("..") || ref.includes("//") || ref.endsWith("/") || ref.endsWith(".") || ref.endsWith(".lock") || ref.split("/").some((part) => part.startsWith("."))) {
    bad("not a valid git branch name");
  }
  return { kind: "branch", ref, remote: ref, label: ref.replace(/[^A-Za-z0-9.-]+/g, "-").replace(/\.{2,}/g, ".").replace(/^[.-]+|[.-]+$/g, "") };
}

/** The engine version a build registers as: `<node-llama-cpp>+<label>.<short commit>`. */
export function builtEngineVersion(nodeLlamaCppVersion: string, ref: BuildRef, commit: string): string {
  const short = commit.slice(0, 10);
  return `${nodeLlamaCppVersion.split("+")[0]}+${ref.label === "" ? short : `${ref.label}.${short}`}`;
}

// git's ext:: and fd:: transports run commands; only plain fetch transports are allowed.
export const GIT_ALLOWED_PROTOCOLS = "file:git:http:https:ssh";

/**
 * A repository URL git can fetch from: http(s)://, git://, ssh://, file:// or an absolute path
 * (a mirror or a local clone). Refused: option-looking strings, other transports, control characters.
 */
export function parseLlamaRepo(input: string): string {
  const repo = input.trim();
  const bad = (why: string): never => {
    throw new InvalidRequestError(`invalid llama.cpp repository ${JSON.stringify(repo.slice(0, 300))}: ${why}`, "llama_repo", "invalid_repo");
  };
  if (repo === "" || repo.length > 2000) bad("give a URL (https://…, git://…, ssh://…, file://…) or an absolute path");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\s]/.test(repo)) bad("it contains spaces or control characters");
  if (repo.startsWith("/")) return repo;
  let url: URL;
  try {
    url = new URL(repo);
  } catch {
    return bad("give a URL (https://…, git://…, ssh://…, file://…) or an absolute path");
  }
  if (!["https:", "http:", "git:", "ssh:", "file:"].includes(url.protocol)) bad(`the ${url.protocol.replace(/:$/, "")} transport is not allowed`);
  if (url.protocol !== "file:" && url.hostname === "") bad("the URL names no host");
  if (url.hostname.startsWith("-")) bad("the host looks like an option");
  return repo;
}

export const DEFAULT_LLAMA_REPO = "https://github.com/ggml-org/llama.cpp";
