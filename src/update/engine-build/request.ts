// One entry for `lmx engine build` and the admin API's build jobs: validate what was asked, pick
// the model the build is verified with, and run the build on top of this lmx's own engine bundle.

import { existsSync } from "node:fs";
import { InvalidRequestError } from "../../errors.ts";
import { EMBEDDED_ENGINE, ensureEngineExtracted } from "../../engines/llama/bundle.ts";
import { hostTarget } from "../../engines/llama/platform.ts";
import { buildEngine, type BuiltEngine } from "./builder.ts";
import { EngineBuildError } from "./errors.ts";
import type { PhaseProgress } from "./progress.ts";
import { type BuildRef, parseBuildRef, parseLlamaRepo } from "./ref.ts";

export interface BuildRequest {
  ref: string;
  repo: string;
  /** A GGUF to verify with; default: the smallest GGUF model LMX knows. */
  verifyModel?: string;
  /** Build for this CPU only instead of the prebuilt bundle's set of CPU variants. */
  native?: boolean;
}

export interface ResolvedBuild {
  ref: BuildRef;
  repo: string;
  verifyModel: string;
  cpu: "all" | "native";
}

export interface KnownModelFile {
  path: string;
  format: string;
  sizeBytes: number;
}

/** Validates a request (throws InvalidRequestError, a 400 in the API) before any job exists. */
export function resolveBuildRequest(req: BuildRequest, knownModels: readonly KnownModelFile[]): ResolvedBuild {
  const ref = parseBuildRef(req.ref);
  const repo = parseLlamaRepo(req.repo);
  let verifyModel = req.verifyModel;
  if (verifyModel !== undefined) {
    if (!verifyModel.startsWith("/") || !verifyModel.endsWith(".gguf") || !existsSync(verifyModel)) {
      throw new InvalidRequestError(`the model to verify the build with must be an existing .gguf file given by its absolute path: ${verifyModel.slice(0, 300)}`, "verify_model");
    }
  } else {
    verifyModel = [...knownModels]
      .filter((m) => m.format === "gguf" && existsSync(m.path))
      .sort((a, b) => a.sizeBytes - b.sizeBytes)[0]?.path;
    if (verifyModel === undefined) {
      throw new InvalidRequestError("a built engine is verified by loading a model, and LMX knows no GGUF model yet: pass a small one with --verify-model PATH (API: verify_model)", "verify_model");
    }
  }
  return { ref, repo, verifyModel, cpu: req.native === true ? "native" : "all" };
}

export interface RunBuildOptions {
  signal?: AbortSignal;
  onProgress?: (p: PhaseProgress) => void;
  onLog?: (path: string) => void;
}

/** Builds on top of the embedded engine bundle (this lmx's node-llama-cpp and its build tooling). */
export async function runEngineBuild(lmxHome: string, build: ResolvedBuild, options: RunBuildOptions = {}): Promise<BuiltEngine> {
  if (EMBEDDED_ENGINE === undefined) {
    throw new EngineBuildError("this lmx runs from source and always uses node-llama-cpp from node_modules; engine builds apply to the compiled executable");
  }
  const baseDir = await ensureEngineExtracted(lmxHome);
  return buildEngine({ lmxHome, ...build, baseDir, target: hostTarget(), ...options });
}
