// The worker program (native/mlx_worker/, a Python package run as a directory), embedded as text so
// the compiled executable carries it; it is written next to the runtime into a content-hashed folder
// before a worker starts, and run as `python <folder>`.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import main from "../../../native/mlx_worker/__main__.py" with { type: "text" };
import distributed from "../../../native/mlx_worker/distributed.py" with { type: "text" };
import generation from "../../../native/mlx_worker/generation.py" with { type: "text" };
import harmony from "../../../native/mlx_worker/harmony.py" with { type: "text" };
import operations from "../../../native/mlx_worker/operations.py" with { type: "text" };
import prompts from "../../../native/mlx_worker/prompts.py" with { type: "text" };
import protocol from "../../../native/mlx_worker/protocol.py" with { type: "text" };
import sampling from "../../../native/mlx_worker/sampling.py" with { type: "text" };
import speculative from "../../../native/mlx_worker/speculative.py" with { type: "text" };
import templates from "../../../native/mlx_worker/templates.py" with { type: "text" };
import textfilter from "../../../native/mlx_worker/textfilter.py" with { type: "text" };
import toolFormats from "../../../native/mlx_worker/tool_formats.py" with { type: "text" };

/** File name → source, in a fixed order (the hash depends on it). */
export const WORKER_FILES: Readonly<Record<string, string>> = {
  "__main__.py": main,
  "distributed.py": distributed,
  "generation.py": generation,
  "harmony.py": harmony,
  "operations.py": operations,
  "prompts.py": prompts,
  "protocol.py": protocol,
  "sampling.py": sampling,
  "speculative.py": speculative,
  "templates.py": templates,
  "textfilter.py": textfilter,
  "tool_formats.py": toolFormats,
};

export const WORKER_HASH = (() => {
  const hash = createHash("sha256");
  for (const [name, source] of Object.entries(WORKER_FILES)) hash.update(`${name}\0${source.length}\0${source}`);
  return hash.digest("hex").slice(0, 12);
})();

/** Writes the worker into `dir` unless this exact version is there; returns the folder to run. */
export function writeWorkerScript(dir: string): string {
  const path = join(dir, `mlx_worker-${WORKER_HASH}`);
  if (existsSync(join(path, "__main__.py"))) return path;
  mkdirSync(dir, { recursive: true });
  // Written whole into a temporary folder, then renamed: a worker never starts from half a package.
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    for (const [name, source] of Object.entries(WORKER_FILES)) writeFileSync(join(tmp, name), source);
    rmSync(path, { recursive: true, force: true });
    try {
      renameSync(tmp, path);
    } catch (err) {
      // Another process wrote the same version first.
      if (!existsSync(join(path, "__main__.py"))) throw err;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return path;
}
