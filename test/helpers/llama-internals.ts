// The members of node-llama-cpp's (patched) context that the tests of the patch's token paths
// watch or replace (test/direct-decode.test.ts, test/token-runs.test.ts); internal to it.
import { getLlama, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import { ensureFixtures } from "../fixtures/models.ts";

/** stories260K on the CPU, through the addon node_modules holds (LMX's, see scripts/llama-addon.ts). */
export async function loadStories(): Promise<{ llama: Llama; model: LlamaModel }> {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  return { llama, model: await llama.loadModel({ modelPath: ensureFixtures().stories260K, gpuLayers: 0 }) };
}

export async function unloadStories(loaded: { llama?: Llama; model?: LlamaModel }): Promise<void> {
  await loaded.model?.dispose();
  await loaded.llama?.dispose();
}

export interface ContextInternals {
  _decodeTokensDirectly(...args: unknown[]): Promise<unknown>;
  _canDecodeDirectly(): boolean;
  _decodeTokens(...args: unknown[]): Promise<unknown>;
  _activeEvaluations: number;
  _runEligible: Set<unknown>;
  _threadSplitterConsumer: unknown;
  /** Replaces the defaults for runs of tokens generated in one addon call. */
  _tokenRuns?: { maxTokenMs: number; targetMs: number; streamMs?: number; maxTokens: number };
  _ctx: AddonContextInternals;
}

/** The addon context's methods the tests wrap, and those LMX's patch adds (node-llama-cpp's prebuilt addon lacks them). */
export interface AddonContextInternals {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(...args: unknown[]): Promise<unknown>;
  decodeBatchAndSampleToken?: (...args: unknown[]) => Promise<unknown>;
  generateTokenRuns?: (logitIndexes: Uint32Array, samplers: unknown[], maxTokens: number, onStep?: (step: number, tokens: Uint32Array) => void, control?: Int32Array) => Promise<Uint32Array[]>;
  saveSequenceStateToFileLater?: (filePath: string, sequenceId: number, tokens: Uint32Array, maxBytes: number) => [number, Promise<void>] | null;
}

/** Counts the decodes that went straight through the addon and those queued for the dispatcher. */
export function watch(context: LlamaContext) {
  const ctx = context as unknown as ContextInternals;
  const counts = { direct: 0, queued: 0 };
  const direct = ctx._decodeTokensDirectly;
  const queued = ctx._decodeTokens;
  ctx._decodeTokensDirectly = function (this: unknown, ...args) {
    counts.direct++;
    return direct.apply(this, args);
  };
  ctx._decodeTokens = function (this: unknown, ...args) {
    counts.queued++;
    return queued.apply(this, args);
  };
  return { ctx, counts };
}

/** Up to n tokens generated after `prompt`, greedy unless `options` say otherwise. */
export async function generate(
  seq: LlamaContextSequence,
  prompt: Token[],
  n: number,
  between?: () => Promise<void>,
  options: Parameters<LlamaContextSequence["evaluate"]>[1] = { temperature: 0 },
): Promise<Token[]> {
  const out: Token[] = [];
  for await (const token of seq.evaluate(prompt, { ...options, yieldEogToken: true })) {
    out.push(token);
    if (out.length >= n) break;
    await between?.();
  }
  return out;
}

/** The last position the sequence holds in the KV cache (-1 when empty). */
export function lastKvPosition(context: LlamaContext, seq: LlamaContextSequence): number {
  const addon = (context as unknown as ContextInternals)._ctx as unknown as { getSequenceKvCacheMaxPosition(id: number): number };
  return addon.getSequenceKvCacheMaxPosition((seq as unknown as { _sequenceId: number })._sequenceId);
}

/** The addon's methods are read-only properties of its prototype: an own property shadows them. */
export function override<K extends keyof AddonContextInternals>(addon: AddonContextInternals, key: K, value: AddonContextInternals[K]): void {
  Object.defineProperty(addon, key, { value, configurable: true, writable: true });
}

/** One of the patch's native methods, or a failure that says how to get the addon that has it. */
export function requireNative<K extends "decodeBatchAndSampleToken" | "generateTokenRuns" | "saveSequenceStateToFileLater">(addon: AddonContextInternals, key: K): NonNullable<AddonContextInternals[K]> {
  const method = addon[key];
  if (typeof method !== "function") {
    throw new Error(`the loaded addon has no ${key}: node_modules holds node-llama-cpp's prebuilt addon; run \`bun scripts/llama-addon.ts install\``);
  }
  return method as NonNullable<AddonContextInternals[K]>;
}
