// Every version the MLX runtime pins, in one place. docs/mlx.md explains each choice; change them
// together and run the MLX tests (they install exactly these).

import { type PackageSpec, requirement } from "./package-spec.ts";

/** mlx-lm: the Python API the worker is written against (BatchGenerator, LRUPromptCache, tool parsers). */
export const MLX_LM_VERSION = "0.32.2";
/** mlx: the array framework mlx-lm 0.32.2 was released and tested with. */
export const MLX_VERSION = "0.32.4";
/** uv: creates the environment and installs the packages; embedded in release builds. */
export const UV_VERSION = "0.13.8";
/** CPython uv installs on macOS (never the system stub); mlx has wheels for 3.10–3.13. */
export const MANAGED_PYTHON = "3.12";
export const PYTHON_MIN: readonly [number, number] = [3, 10];
/** First Python version not accepted (exclusive). */
export const PYTHON_MAX: readonly [number, number] = [3, 14];

/** Versions other than the pins, chosen with `lmx runtime update mlx --mlx-lm … --mlx …`. */
export interface MlxChoice {
  mlx?: PackageSpec;
  mlxLm?: PackageSpec;
}

/** The package specs `uv pip install` gets: the CPU build of mlx on Linux, the Metal build on macOS. */
export function mlxRequirements(platform: NodeJS.Platform = process.platform, choice: MlxChoice = {}): string[] {
  const mlx = choice.mlx ?? { kind: "version" as const, version: MLX_VERSION };
  const mlxLm = choice.mlxLm ?? { kind: "version" as const, version: MLX_LM_VERSION };
  return [requirement("mlx", mlx, platform === "darwin" ? "" : "[cpu]"), requirement("mlx-lm", mlxLm)];
}

export const PINNED = { mlx: MLX_VERSION, "mlx-lm": MLX_LM_VERSION } as const;
