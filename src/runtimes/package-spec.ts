// What a user may ask the MLX runtime to install instead of the pins: a released version of mlx or
// mlx-lm, or mlx-lm from a git repository at a ref (a tag, branch or commit), so a new architecture
// is usable the day its mlx-lm change merges. The text reaches uv's command line, so it is parsed
// into a closed shape first: no spaces, options, credentials or other packages can ride along.

import { InvalidRequestError } from "../errors.ts";

/** A package version as PyPI releases spell it (PEP 440's public form, without epochs). */
const VERSION = /^[0-9]{1,6}(\.[0-9]{1,6}){0,4}((a|b|rc)[0-9]{1,6})?(\.post[0-9]{1,6})?(\.dev[0-9]{1,6})?$/;
/** git+URL (host, then a path) with an optional @REF; no user info (a key in it would be logged and stored). */
const GIT = /^git\+(https?|file):\/\/([^\s@#?/]{0,255}\/[^\s@#?]{1,2000})(@([A-Za-z0-9][A-Za-z0-9._/-]{0,199}))?$/;

export type PackageSpec =
  | { kind: "version"; version: string }
  | { kind: "git"; url: string; ref: string | undefined };

export function parsePackageSpec(text: string, param: string, allowGit: boolean): PackageSpec {
  if (VERSION.test(text)) return { kind: "version", version: text };
  const git = GIT.exec(text);
  if (git && allowGit) {
    const ref = git[4];
    if (ref !== undefined && (ref.includes("..") || ref.endsWith("/") || ref.endsWith(".lock"))) {
      throw new InvalidRequestError(`${param}: '${ref}' is not a valid git ref`, param);
    }
    return { kind: "git", url: `${git[1]}://${git[2]}`, ref };
  }
  const forms = allowGit ? "a version such as 0.32.2, or git+https://HOST/REPO[@REF] (also git+file://)" : "a version such as 0.32.4";
  throw new InvalidRequestError(`${param}: '${text.slice(0, 200)}' is not ${forms}`, param);
}

/** The requirement line uv gets for `name`. */
export function requirement(name: string, spec: PackageSpec, extras = ""): string {
  if (spec.kind === "version") return `${name}${extras}==${spec.version}`;
  return `${name}${extras} @ git+${spec.url}${spec.ref ? `@${spec.ref}` : ""}`;
}

/** How the spec reads back to the user (and in the environment's record). */
export function describeSpec(spec: PackageSpec): string {
  return spec.kind === "version" ? spec.version : `git+${spec.url}${spec.ref ? `@${spec.ref}` : ""}`;
}
