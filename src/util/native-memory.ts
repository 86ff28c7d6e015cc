// Gives the memory a model load or unload has freed back to the system. Loading a GGUF model
// allocates and frees hundreds of megabytes: in JavaScript (node-llama-cpp parses the GGUF header,
// a 150k-token vocabulary is tens of MB of strings) and in native code (llama.cpp's model and
// context set-up, on several threads). An idle server may not collect the first for a long time,
// and glibc keeps the second in per-thread arenas; with a 0.5B model the two held ≈180 MB of RSS
// (docs/performance.md, "Engine settings"). A full collection pauses the event loop once per load
// or unload (≈50 ms with this heap); malloc_trim takes a few ms. malloc_trim needs glibc (Linux);
// elsewhere only the collection runs.

import { log } from "../log.ts";

type Trim = (pad: number) => number;
let trim: Trim | null | undefined;

async function loadTrim(): Promise<Trim | null> {
  if (process.platform !== "linux") return null;
  try {
    const { dlopen, FFIType } = await import("bun:ffi");
    const libc = dlopen("libc.so.6", { malloc_trim: { args: [FFIType.u64], returns: FFIType.i32 } });
    return (pad) => libc.symbols.malloc_trim(pad);
  } catch (err) {
    log.debug("malloc_trim unavailable (not glibc)", { error: String(err) });
    return null;
  }
}

/** After a model load or unload: collects JavaScript garbage, then returns free native heap pages. */
export async function releaseFreedMemory(): Promise<void> {
  if (trim === undefined) trim = await loadTrim();
  Bun.gc(true);
  trim?.(0);
}
