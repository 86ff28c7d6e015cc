// What flash attention a context is created with. node-llama-cpp's default ("auto") turns it on for
// the CPU, where llama.cpp's flash-attention kernel has vectorized paths only for heads at least
// MIN_CPU_HEAD_SIZE wide and falls back to scalar code below: measured there (bench/flash-attention.ts,
// docs/performance.md), off was up to 4× faster on prompts and decode for 8- and 32-wide heads.

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
