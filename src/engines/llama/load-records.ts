// What the llama.cpp engine learns about a model file that a restarted server can reuse: that the
// file passed a trial load (trial-load.ts) and what loading it takes in memory with given settings
// (node-llama-cpp simulates a load for that: ≈0.7 s for a 0.5B model). The server keeps both in
// its database; engines only see this interface. Each answer holds for one version of the file
// and one engine version (currentEngineVersion: "node-llama-cpp …, llama.cpp …").

import { statSync } from "node:fs";
import type { MemoryEstimate } from "../types.ts";

/** A version of a model file: the same path rewritten (or touched) is another version. */
export interface FileVersion {
  path: string;
  size: number;
  mtimeMs: number;
  inode: number;
}

export function fileVersion(path: string): FileVersion {
  const st = statSync(path);
  return { path, size: st.size, mtimeMs: st.mtimeMs, inode: st.ino };
}

export interface LoadRecords {
  /** A crash is never kept: after a restart a broken file costs one more trial, and a new engine may load it. */
  trialPassed(file: FileVersion, engineVersion: string): boolean;
  rememberTrial(file: FileVersion, engineVersion: string): void;
  /** `settings`: the load settings the estimate depends on, as one string. */
  estimate(file: FileVersion, engineVersion: string, settings: string): MemoryEstimate | undefined;
  rememberEstimate(file: FileVersion, engineVersion: string, settings: string, estimate: MemoryEstimate): void;
}
