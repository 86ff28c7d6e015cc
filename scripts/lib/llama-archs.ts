// The model architectures a llama.cpp release can load, read from the llama.cpp source that
// node-llama-cpp ships (llama/gitRelease.bundle): the LLM_ARCH_NAMES table in src/llama-arch.cpp
// maps every architecture enum to the `general.architecture` string GGUF files carry.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readGitBundle } from "./git-bundle.ts";

const ARCH_SOURCE = "src/llama-arch.cpp";

export class ArchitectureListError extends Error {
  override name = "ArchitectureListError";
}

/** The `general.architecture` names in llama-arch.cpp's LLM_ARCH_NAMES, in source order. */
export function parseArchitectureNames(source: string): string[] {
  const start = source.indexOf("LLM_ARCH_NAMES");
  if (start === -1) throw new ArchitectureListError(`${ARCH_SOURCE} has no LLM_ARCH_NAMES table`);
  const open = source.indexOf("{", start);
  const close = source.indexOf("};", open);
  if (open === -1 || close === -1) throw new ArchitectureListError(`cannot find the end of LLM_ARCH_NAMES in ${ARCH_SOURCE}`);
  const names: string[] = [];
  for (const line of source.slice(open + 1, close).split("\n")) {
    const match = /\{\s*LLM_ARCH_(\w+)\s*,\s*"([^"]+)"\s*\}/.exec(line);
    if (match === null) continue;
    const [, id, name] = match as unknown as [string, string, string];
    // "(unknown)" is the fallback and entries marked dummy exist only for tools like llama-quantize.
    if (id === "UNKNOWN" || name.startsWith("(") || /\/\/.*\bdummy\b/i.test(line)) continue;
    names.push(name);
  }
  if (names.length === 0) throw new ArchitectureListError(`LLM_ARCH_NAMES in ${ARCH_SOURCE} lists no architectures`);
  return names;
}

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
