// The model architectures a llama.cpp release can load, read from the llama.cpp source that
// node-llama-cpp ships (llama/gitRelease.bundle); the table itself is parsed by
// src/engines/llama/architectures.ts.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ARCH_SOURCE, ArchitectureListError, parseArchitectureNames } from "../../src/engines/llama/architectures.ts";
import { readGitBundle } from "./git-bundle.ts";

export { ArchitectureListError, parseArchitectureNames };

/**
 * Architectures supported by the llama.cpp inside `nodeLlamaCppDir`. Parsing the 35 MB bundle
 * takes seconds, so results are cached under `cacheDir` by the bundle's SHA-256.
 */
export function llamaArchitectures(nodeLlamaCppDir: string, cacheDir: string): string[] {
  const bundlePath = join(nodeLlamaCppDir, "llama", "gitRelease.bundle");
  if (!existsSync(bundlePath)) throw new ArchitectureListError(`${bundlePath} is missing: cannot read llama.cpp's architecture list`);
  const bytes = readFileSync(bundlePath);
  const digest = createHash("sha256").update(bytes).digest("hex");
  const cached = join(cacheDir, `${digest}.json`);
  if (existsSync(cached)) return JSON.parse(readFileSync(cached, "utf8")) as string[];
  const bundle = readGitBundle(bytes);
  const head = bundle.refs.get("HEAD") ?? [...bundle.refs.values()][0];
  if (head === undefined) throw new ArchitectureListError(`${bundlePath} names no commit`);
  const source = bundle.readFile(head, ARCH_SOURCE);
  if (source === undefined) throw new ArchitectureListError(`${ARCH_SOURCE} is not in the llama.cpp source bundle`);
  const names = parseArchitectureNames(new TextDecoder().decode(source));
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(cached, `${JSON.stringify(names)}\n`);
  return names;
}
