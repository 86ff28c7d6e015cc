// What flash attention a context is created with. node-llama-cpp's default ("auto") turns it on for
// the CPU, where llama.cpp's flash-attention kernel has vectorized paths only for heads at least
// MIN_CPU_HEAD_SIZE wide and falls back to scalar code below. Measured (bench/flash-attention.ts,
// docs/performance.md): with 8- and 32-wide heads, tokens after a 2k prompt took 2–5× longer with it
// on; with 64- and 128-wide heads on was as fast for decode and 13–27% cheaper for prefill.

import type { FlashAttentionMode } from "../../config/load-settings.ts";

/** Narrowest attention head for which flash attention is kept on the CPU under "auto". */
export const MIN_CPU_HEAD_SIZE = 64;

export interface FlashAttentionChoice {
  /** What the context is created with; undefined keeps node-llama-cpp's default. */
  option: boolean | undefined;
  /** What the loaded model reports: "on", "off", or "auto" where llama.cpp decides (GPU backends). */
  reported: FlashAttentionMode;
}

/**
 * `mode` as asked; `gpu`: whether the llama.cpp build runs on an accelerator (Metal); `headSize`:
 * the model's narrowest attention head (undefined when its metadata does not say).
 */
export function chooseFlashAttention(mode: FlashAttentionMode, gpu: boolean, headSize: number | undefined): FlashAttentionChoice {
  if (mode === "on") return { option: true, reported: "on" };
  if (mode === "off") return { option: false, reported: "off" };
  if (gpu) return { option: undefined, reported: "auto" };
  const on = headSize === undefined || headSize >= MIN_CPU_HEAD_SIZE;
  return { option: on, reported: on ? "on" : "off" };
}
