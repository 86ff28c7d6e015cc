// Tokens per batch (llama.cpp's n_batch; node-llama-cpp sets n_ubatch to the same) when none is
// configured. node-llama-cpp's default is 512. Measured on the CPU (bench/engine-settings.ts batch,
// docs/performance.md "Engine settings"), one thread, prompts of 256 and 2048 tokens: a 0.5B q8_0
// model prefilled at the same CPU cost with batches of 128 to 512 (±4%, 2048 was 4% dearer);
// stories260K (flash attention off) took 18% less CPU for a 2048-token prompt with 256 than with
// 512, and 76% more with 2048. The compute buffer grows with the batch, and a long prompt's batch
// is what the other sequences' next tokens wait behind. GPU backends (Metal) keep 512: unmeasured,
// and a GPU gains from wide batches.

/** The batch size contexts get on the CPU when `--batch-size` is not set. */
export const CPU_BATCH_SIZE = 256;

/**
 * `configured`: `--batch-size` (undefined when not set); `gpu`: whether llama.cpp runs on an
 * accelerator; `contextTokens`: the context's tokens over all its sequences. Undefined keeps
 * node-llama-cpp's default.
 */
export function chooseBatchSize(configured: number | undefined, gpu: boolean, contextTokens: number): number | undefined {
  if (configured !== undefined) return configured;
  if (gpu) return undefined;
  return Math.min(CPU_BATCH_SIZE, contextTokens);
}
