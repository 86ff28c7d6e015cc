// The batch size GGUF contexts get when `--batch-size` is not set (docs/performance.md, "Engine settings").

import { expect, test } from "bun:test";
import { chooseBatchSize, CPU_BATCH_SIZE } from "../../src/engines/llama/batch-size.ts";

test("on the CPU: the measured 256, never more than the context holds", () => {
  expect(CPU_BATCH_SIZE).toBe(256);
  expect(chooseBatchSize(undefined, false, 8 * 4096)).toBe(256);
  expect(chooseBatchSize(undefined, false, 128)).toBe(128);
});

test("on a GPU backend: node-llama-cpp's default", () => {
  expect(chooseBatchSize(undefined, true, 8 * 4096)).toBeUndefined();
});

test("a configured --batch-size wins everywhere", () => {
  expect(chooseBatchSize(1024, false, 8 * 4096)).toBe(1024);
  expect(chooseBatchSize(64, true, 8 * 4096)).toBe(64);
});
