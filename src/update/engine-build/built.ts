// What a built engine folder records about itself (`.lmx-build.json`, written before the marker):
// the ref it was built from, the commit the binaries report, when, and the architectures its
// llama.cpp source lists, so `lmx engine list` and unsupported_architecture can speak about it.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { BuildRefKind } from "./ref.ts";

export const BUILD_INFO_FILE = ".lmx-build.json";

export interface BuildInfo {
  ref: string;
  kind: BuildRefKind;
  repo: string;
  /** Full commit id that was fetched and compiled. */
  commit: string;
  /** What the binaries report (ggml_commit()). */
  reportedCommit: string;
  builtAt: string;
  /** node-llama-cpp version the bundle's JavaScript side is. */
  nodeLlamaCppVersion: string;
  /** "all" = the prebuilt bundle's CPU variants (or Metal); "native" = this machine's CPU only. */
  cpu: "all" | "native";
  architectures: string[];
  log: string;
}

export function readBuildInfo(dir: string): BuildInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(join(dir, BUILD_INFO_FILE), "utf8")) as Partial<BuildInfo>;
    if (typeof info.ref !== "string" || typeof info.commit !== "string" || !Array.isArray(info.architectures)) return undefined;
    return info as BuildInfo;
  } catch {
    return undefined;
  }
}
