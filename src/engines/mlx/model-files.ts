// What LMX can tell about an MLX model folder without Python: config.json, the safetensors files
// and tokenizer_config.json. Enough for /v1/models and the scheduler's memory budget.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { InvalidModelFileError } from "../../errors.ts";
import type { ResolvedLoadSettings, MemoryEstimate, ModelInfo } from "../types.ts";

const int = v.pipe(v.number(), v.integer(), v.minValue(0));

const TextConfig = v.looseObject({
  model_type: v.optional(v.string()),
  hidden_size: v.optional(int),
  num_hidden_layers: v.optional(int),
  num_attention_heads: v.optional(int),
  num_key_value_heads: v.optional(int),
  head_dim: v.optional(v.nullable(int)),
  vocab_size: v.optional(int),
  max_position_embeddings: v.optional(int),
  torch_dtype: v.optional(v.nullable(v.string())),
  quantization: v.optional(v.looseObject({ bits: v.optional(int), group_size: v.optional(int) })),
});

/** config.json; multimodal conversions keep the language model's numbers under text_config. */
const Config = v.looseObject({
  ...TextConfig.entries,
  text_config: v.optional(TextConfig),
});
type TextConfig = v.InferOutput<typeof TextConfig>;

export interface MlxModelFiles {
  config: TextConfig & { model_type?: string };
  weightsBytes: number;
  weightFiles: string[];
  hasChatTemplate: boolean;
  /** The template's text: chat_template.jinja, chat_template.json or tokenizer_config.json (the default one of a named list). */
  chatTemplate: string | undefined;
  hasTokenizerJson: boolean;
}

function readJson(path: string): unknown {
  try {
    // Never open a FIFO or device (the read would block or never end).
    if (!statSync(path).isFile()) throw new Error("not a regular file");
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new InvalidModelFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

function readText(path: string): string {
  try {
    if (!statSync(path).isFile()) throw new Error("not a regular file");
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new InvalidModelFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/** A template as transformers stores it: one string, or a list of named ones whose "default" is the chat template. */
function templateText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (!Array.isArray(value)) return undefined;
  const named = value.find((t): t is { name: string; template: string } => typeof t === "object" && t !== null && t.name === "default" && typeof t.template === "string");
  return named?.template;
}

export function readModelFiles(dir: string): MlxModelFiles {
  if (!existsSync(join(dir, "config.json"))) throw new InvalidModelFileError(`${dir} is not an MLX model folder: no config.json`);
  const parsed = v.safeParse(Config, readJson(join(dir, "config.json")));
  if (!parsed.success) {
    throw new InvalidModelFileError(`${dir}/config.json: ${v.getDotPath(parsed.issues[0]) ?? "(root)"}: ${parsed.issues[0].message}`);
  }
  const { text_config, ...top } = parsed.output;
  // Fields of the language model win; the top level still names the architecture and quantization.
  const config = { ...top, ...text_config, model_type: top.model_type ?? text_config?.model_type, quantization: top.quantization ?? text_config?.quantization };
  // mlx-lm loads model*.safetensors (model.safetensors or model-00001-of-00002.safetensors …).
  const weightFiles = readdirSync(dir).filter((n) => /^model.*\.safetensors$/.test(n)).sort();
  if (weightFiles.length === 0) throw new InvalidModelFileError(`${dir} has no model*.safetensors weights`);
  const weightsBytes = weightFiles.reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
  let hasChatTemplate = existsSync(join(dir, "chat_template.jinja")) || existsSync(join(dir, "chat_template.json"));
  let chatTemplate: string | undefined;
  if (existsSync(join(dir, "chat_template.jinja"))) chatTemplate = readText(join(dir, "chat_template.jinja"));
  else if (existsSync(join(dir, "chat_template.json"))) chatTemplate = templateText((readJson(join(dir, "chat_template.json")) as { chat_template?: unknown }).chat_template);
  if (!hasChatTemplate && existsSync(join(dir, "tokenizer_config.json"))) {
    const tc = readJson(join(dir, "tokenizer_config.json")) as { chat_template?: unknown };
    hasChatTemplate = tc.chat_template !== undefined && tc.chat_template !== null;
    chatTemplate = templateText(tc.chat_template);
  }
  return { config, weightsBytes, weightFiles, hasChatTemplate, chatTemplate, hasTokenizerJson: existsSync(join(dir, "tokenizer.json")) };
}

function quantization(c: MlxModelFiles["config"]): string | undefined {
  if (c.quantization?.bits) return `${c.quantization.bits}bit${c.quantization.group_size ? `-g${c.quantization.group_size}` : ""}`;
  const dtype = c.torch_dtype?.toLowerCase();
  if (dtype === "bfloat16") return "BF16";
  if (dtype === "float16") return "F16";
  if (dtype === "float32") return "F32";
  return undefined;
}

export function modelInfo(files: MlxModelFiles): ModelInfo {
  const c = files.config;
  return {
    architecture: c.model_type,
    declaredContextLength: c.max_position_embeddings,
    hasChatTemplate: files.hasChatTemplate,
    chatTemplate: files.chatTemplate,
    isEmbeddingModel: false,
    sizeBytes: files.weightsBytes,
    quantization: quantization(c),
  };
}

/** Python, mlx and the tokenizer in the worker process before any weights (measured: ~300 MB RSS on Linux and macOS). */
export const WORKER_OVERHEAD_BYTES = 384 * 1024 * 1024;

/**
 * The scheduler's view of an MLX model's RAM:
 *
 *   modelBytes   = size of the model*.safetensors files + WORKER_OVERHEAD_BYTES
 *   contextBytes = 2 × kvBytes + logitsBytes, where
 *     kvBytes     = 2 (K and V) × layers × kv_heads × head_dim × bytes_per_value × context × parallel
 *                   (head_dim = config.head_dim or hidden_size / attention heads; bytes_per_value is 4
 *                   for float32 models and 2 otherwise: quantized models compute in 16-bit)
 *     the factor 2 covers the running sequences plus the finished conversations the worker keeps
 *     for prompt-cache reuse, which it caps at kvBytes;
 *     logitsBytes = vocab × 4 bytes × parallel × 4 (logits, log-probabilities and sampling scratch).
 */
export function estimateMemory(files: MlxModelFiles, options: ResolvedLoadSettings): MemoryEstimate & { kvBytes: number } {
  const c = files.config;
  const layers = c.num_hidden_layers ?? 0;
  const heads = c.num_attention_heads ?? 1;
  const kvHeads = c.num_key_value_heads ?? heads;
  const headDim = c.head_dim ?? (c.hidden_size && heads ? Math.floor(c.hidden_size / heads) : 128);
  const valueBytes = c.torch_dtype?.toLowerCase() === "float32" && !c.quantization ? 4 : 2;
  const kvBytes = 2 * layers * kvHeads * headDim * valueBytes * options.contextLength * options.parallel;
  const logitsBytes = (c.vocab_size ?? 32_000) * 4 * options.parallel * 4;
  // A rank of a sharded model holds its share of the weights and of the KV cache (tensor parallel
  // splits heads, pipeline parallel layers); the logits are whole on every rank.
  const share = options.distributed?.size ?? 1;
  const kvShare = Math.ceil(kvBytes / share);
  return { modelBytes: Math.ceil(files.weightsBytes / share) + WORKER_OVERHEAD_BYTES, contextBytes: 2 * kvShare + logitsBytes, gpuBytes: 0, kvBytes: kvShare };
}

/**
 * A model and its draft model in one worker: the draft's weights and KV cache (at the same context
 * and parallel) come on top, without a second worker's overhead; the prompt cache keeps both
 * models' KV for a conversation, so its cap covers both. A model drafting for itself (`shared`)
 * adds only the KV cache: the worker uses its weights twice.
 */
export function estimateWithDraft(files: MlxModelFiles, draft: { files: MlxModelFiles; shared: boolean } | undefined, options: ResolvedLoadSettings): MemoryEstimate & { kvBytes: number } {
  const own = estimateMemory(files, options);
  if (!draft) return own;
  const extra = estimateMemory(draft.files, options);
  return {
    modelBytes: own.modelBytes + (draft.shared ? 0 : extra.modelBytes - WORKER_OVERHEAD_BYTES),
    contextBytes: own.contextBytes + extra.contextBytes,
    gpuBytes: 0,
    kvBytes: own.kvBytes + extra.kvBytes,
  };
}
