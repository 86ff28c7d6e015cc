// The model architectures a llama.cpp source tree can load: the LLM_ARCH_NAMES table in
// src/llama-arch.cpp maps every architecture enum to the `general.architecture` string GGUF files
// carry. The release build reads it for the manifest, `lmx engine build` for the engines it builds.

export const ARCH_SOURCE = "src/llama-arch.cpp";

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
