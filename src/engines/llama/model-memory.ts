// How a GGUF file's weights get into memory, set from measurement (bench/engine-settings.ts mmap,
// docs/performance.md "Engine settings"), not left to node-llama-cpp's defaults:
// - mmap: the weights stay clean file-backed pages, shared with every other process that maps the
//   file (the trial-load child, a second server) and dropped by the kernel under memory pressure
//   instead of swapped. A 0.5B q8_0 model loaded with ≈20% less CPU than reading it into anonymous
//   memory, to the same RSS. node-llama-cpp turns it off by itself where llama.cpp cannot map.
// - no mlock: pinning gave no faster load or first token, and it asks for the whole model as locked
//   memory, which an unprivileged user's RLIMIT_MEMLOCK (often 8 MB on Linux) does not allow.
export const MODEL_MEMORY = { useMmap: true, useMlock: false } as const;
