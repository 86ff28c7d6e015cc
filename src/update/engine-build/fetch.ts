// Fetches the llama.cpp source for a build: one ref, shallow, into a fresh repository, with git
// kept from prompting for credentials and from using transports that run commands.

import type { WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { errorMessage } from "../../errors.ts";
import { EngineBuildCancelled, EngineBuildError } from "./errors.ts";
import { runLogged } from "./process.ts";
import { BuildOutputParser, type PhaseProgress } from "./progress.ts";
import { type BuildRef, GIT_ALLOWED_PROTOCOLS } from "./ref.ts";

function gitEnv(): NodeJS.ProcessEnv {
  // No prompts for credentials (a bot has nobody to answer them) and no command-running transports.
  return { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_ALLOW_PROTOCOL: GIT_ALLOWED_PROTOCOLS, GIT_ASKPASS: "", SSH_ASKPASS: "" };
}

/** Fetches `ref` into a fresh repository at `dir`, checks it out and returns the full commit id. */
export async function fetchSource(o: { repo: string; ref: BuildRef; dir: string; log: WriteStream; signal?: AbortSignal; onProgress: (p: PhaseProgress) => void }): Promise<string> {
  const parser = new BuildOutputParser("fetch", o.onProgress);
  const git = (args: string[]): Promise<void> => runLogged("git", ["-C", o.dir, ...args], { cwd: o.dir, env: gitEnv(), log: o.log, signal: o.signal, parser });
  await mkdir(o.dir, { recursive: true });
  await git(["init", "-q"]);
  const fetch = (refspec: string, depth = true): Promise<void> => git(["fetch", "--progress", "--no-tags", ...(depth ? ["--depth", "1"] : []), o.repo, refspec]);
  const candidates = o.ref.kind === "branch" ? [`refs/heads/${o.ref.remote}`, `refs/tags/${o.ref.remote}`] : [o.ref.remote];
  let fetched = false;
  let lastError: unknown;
  for (const remote of candidates) {
    if (o.ref.kind === "commit" && remote.length < 40) break;
    try {
      await fetch(`+${remote}:refs/lmx/build`);
      fetched = true;
      break;
    } catch (err) {
      if (err instanceof EngineBuildCancelled) throw err;
      lastError = err;
    }
  }
  let commit: string;
  if (fetched) {
    commit = await gitOutput(o.dir, ["rev-parse", "--verify", "refs/lmx/build^{commit}"]);
  } else if (o.ref.kind === "commit") {
    // Short ids, and servers that do not hand out unadvertised commits by id: fetch the branches'
    // history and look the commit up there (a commit only in a pull request: build pr/NUMBER).
    try {
      await fetch("+refs/heads/*:refs/lmx/heads/*", false);
    } catch (err) {
      if (err instanceof EngineBuildCancelled) throw err;
      throw new EngineBuildError(`cannot fetch from ${o.repo}: ${parser.failureSummary() || errorMessage(err)}`);
    }
    commit = await gitOutput(o.dir, ["rev-parse", "--verify", "--quiet", `${o.ref.remote}^{commit}`]).catch(() => {
      throw new EngineBuildError(`commit ${o.ref.ref} is not in ${o.repo}`);
    });
  } else {
    const what = o.ref.kind === "pr" ? `pull request ${o.ref.ref.slice(3)}` : o.ref.kind === "tag" ? `release tag ${o.ref.ref}` : `branch or tag ${o.ref.ref}`;
    throw new EngineBuildError(`cannot fetch ${what} from ${o.repo}: ${parser.failureSummary() || errorMessage(lastError)}`);
  }
  await git(["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit]);
  return commit;
}

function gitOutput(dir: string, args: string[]): Promise<string> {
  const proc = Bun.spawn(["git", "-C", dir, ...args], { stdout: "pipe", stderr: "pipe", env: gitEnv() });
  return Promise.all([new Response(proc.stdout).text(), proc.exited]).then(([out, code]) => {
    if (code !== 0) throw new EngineBuildError(`git ${args[0]} failed`);
    return out.trim();
  });
}
