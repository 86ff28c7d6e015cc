// The worker program (native/mlx_worker.py), embedded as text so the compiled executable carries
// it; it is written next to the runtime under a content-hashed name before a worker starts.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import source from "../../../native/mlx_worker.py" with { type: "text" };

export const WORKER_SOURCE: string = source;
export const WORKER_HASH = createHash("sha256").update(source).digest("hex").slice(0, 12);

/** Writes the worker into `dir` unless this exact version is there; returns its path. */
export function writeWorkerScript(dir: string): string {
  const path = join(dir, `mlx_worker-${WORKER_HASH}.py`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, source);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
  return path;
}
