// The MLX runtime and model the MLX tests share. The runtime is installed for real (uv, PyPI,
// mlx[cpu] and mlx-lm at the pinned versions) once per checkout into <repo>/.cache/mlx-runtime,
// through the same MlxRuntime class `lmx runtime install mlx` uses; uv's download cache lives in
// <repo>/.cache/uv/cache, so later installs (the runtime tests make several) need no network.

import { join } from "node:path";
import { MLX_FIXTURE_DIR, ensureMlxFixture } from "../fixtures/mlx-model.ts";
import { REPO_ROOT } from "../fixtures/prepare.ts";
import { MlxRuntime } from "../../src/runtimes/mlx.ts";
import { configureLog } from "../../src/log.ts";
import { openDb } from "../../src/store/db.ts";

export const UV_TEST_CACHE = join(REPO_ROOT, ".cache", "uv", "cache");
const RUNTIME_HOME = join(REPO_ROOT, ".cache", "mlx-runtime");

export interface MlxTestEnv {
  /** Interpreter of the installed runtime (has mlx and mlx-lm). */
  python: string;
  /** The fixture model folder (qwen2, random weights, real tokenizer). */
  model: string;
  /** Id the fixture gets when imported. */
  modelId: string;
}

let ready: Promise<MlxTestEnv> | undefined;

export function mlxTestEnv(): Promise<MlxTestEnv> {
  ready ??= (async () => {
    configureLog({ level: process.env.LMX_TEST_LOG_LEVEL ?? "warn" });
    const db = openDb(join(RUNTIME_HOME, "lmx.db"));
    try {
      const runtime = new MlxRuntime(db, RUNTIME_HOME, { env: { UV_CACHE_DIR: UV_TEST_CACHE } });
      const before = runtime.status();
      if (!before.installed) await runtime.install();
      else if (!before.upToDate) await runtime.update();
      const python = runtime.status().python?.path;
      if (!python) throw new Error("the test MLX runtime did not install");
      return { python, model: ensureMlxFixture(python), modelId: "mlx-qwen2-tiny" };
    } finally {
      db.$client.close();
    }
  })();
  return ready;
}

export { MLX_FIXTURE_DIR };
