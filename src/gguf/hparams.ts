// Checks a GGUF's declared hyperparameters against each other and against its tensor shapes.
// llama.cpp turns some inconsistencies into a clean error but others into a GGML_ASSERT (abort of
// the whole process) or an integer division by zero, so for the transformer architectures below
// every rule is enforced. Architectures not listed get only the generic rules: their keys may
// legitimately differ (e.g. state-space models declare no attention heads).

import type { GgufArray, GgufTensor, GgufValue } from "./reader.ts";
import { isArray } from "./reader.ts";

/**
 * Architectures whose hyperparameters and tensor names follow the llama layout closely enough to
 * check strictly. Not phi3 (its ffn_up holds gate and up together, twice as wide) nor other
 * architectures whose layout we have not checked against llama.cpp.
 */
const STRICT = new Set([
  "llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "mistral", "mistral3", "gemma", "gemma2", "gemma3",
  "granite", "olmo", "olmo2", "internlm2", "starcoder2", "stablelm", "bert", "nomic-bert",
]);
/**
 * Architectures whose llama.cpp graph asserts that rope covers the whole head
 * (GGML_ASSERT(n_embd_head == n_rot) aborts the process otherwise).
 */
const FULL_ROPE = new Set(["llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "mistral", "granite", "internlm2", "olmo", "olmo2", "starcoder2"]);
/** llama.cpp's LLAMA_MAX_LAYERS and LLAMA_MAX_EXPERTS. */
const MAX_LAYERS = 512;
const MAX_EXPERTS = 512;

type Fail = (msg: string) => never;

class Params {
  constructor(private readonly meta: ReadonlyMap<string, GgufValue>, readonly arch: string, private readonly fail: Fail) {}

  /** A non-negative integer hyperparameter, for one layer when it is given per layer. */
  get(name: string, layer?: number): number | undefined {
    const key = `${this.arch}.${name}`;
    const v = this.meta.get(key);
    if (v === undefined) return undefined;
    if (isArray(v)) return this.item(key, v, layer);
    return this.integer(key, v);
  }

  private integer(key: string, v: unknown): number {
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) this.fail(`${key} must be a non-negative integer, got ${String(v)}`);
    return n;
  }

  private item(key: string, v: GgufArray, layer: number | undefined): number | undefined {
    if (!v.values) this.fail(`${key} is an array of ${v.length} ${v.itemType} values, not a number or a per-layer list`);
    if (layer === undefined) {
      // The largest layer value bounds the per-layer checks that do not name a layer.
      return v.values.length ? Math.max(...v.values.map((x) => this.integer(key, x))) : undefined;
    }
    const x = v.values[layer];
    return x === undefined ? undefined : this.integer(`${key}[${layer}]`, x);
  }

  perLayer(name: string): boolean {
    return isArray(this.meta.get(`${this.arch}.${name}`));
  }
}

function shape(t: GgufTensor): string {
  return `[${t.dims.join(", ")}]`;
}

/**
 * llama.cpp indexes the per-token arrays by token id without checking their lengths, and asserts
 * (aborts) when two tokens are the same string.
 */
function checkVocabulary(meta: ReadonlyMap<string, GgufValue>, fail: Fail): void {
  const tokens = meta.get("tokenizer.ggml.tokens");
  if (tokens === undefined) return;
  if (!isArray(tokens) || tokens.itemType !== "string") fail("tokenizer.ggml.tokens must be an array of strings");
  for (const key of ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"]) {
    const v = meta.get(key);
    if (v !== undefined && (!isArray(v) || v.length !== tokens.length)) {
      fail(`${key} has ${isArray(v) ? v.length : "no"} entries, but tokenizer.ggml.tokens has ${tokens.length}`);
    }
  }
  const strings = tokens.strings ?? [];
  // llama.cpp stores an empty token under this name, so it can collide too.
  const words = strings.map((s, i) => (s === "" ? `[EMPTY_${i}]` : s));
  if (new Set(words).size === words.length) return;
  const seen = new Map<string, number>();
  words.forEach((word, i) => {
    const first = seen.get(word);
    if (first !== undefined) fail(`tokenizer.ggml.tokens has token ${i} equal to token ${first} (${JSON.stringify(Buffer.from(word, "latin1").toString("utf8"))})`);
    seen.set(word, i);
  });
}

/** Checks `meta` (from the first shard) and the tensors of all shards; fails with a message naming the fields. */
export function checkHyperparameters(meta: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[], fail: Fail): void {
  const arch = meta.get("general.architecture");
  if (arch === undefined) {
    if (tensors.length > 0) fail("general.architecture is missing");
    return;
  }
  if (typeof arch !== "string" || arch.length === 0) fail(`general.architecture must be a non-empty string, got ${isArray(arch) ? "an array" : String(arch)}`);
  const p = new Params(meta, arch, fail);

  const nLayer = p.get("block_count");
  if (nLayer !== undefined && nLayer > MAX_LAYERS) fail(`${arch}.block_count is ${nLayer}, more than llama.cpp's limit of ${MAX_LAYERS}`);
  const nExpert = p.get("expert_count") ?? 0;
  const nExpertUsed = p.get("expert_used_count") ?? 0;
  if (nExpert > MAX_EXPERTS) fail(`${arch}.expert_count is ${nExpert}, more than llama.cpp's limit of ${MAX_EXPERTS}`);
  if (nExpert > 0 && (nExpertUsed === 0 || nExpertUsed > nExpert)) {
    fail(`${arch}.expert_used_count is ${nExpertUsed}; with ${arch}.expert_count ${nExpert} it must be between 1 and ${nExpert}`);
  }

  checkVocabulary(meta, fail);

  const byName = new Map(tensors.map((t) => [t.name, t]));
  const blocks = new Set<number>();
  for (const t of tensors) {
    const m = /^blk\.(\d+)\./.exec(t.name);
    if (!m) continue;
    const i = Number(m[1]);
    if (nLayer !== undefined && i >= nLayer) fail(`tensor ${t.name} belongs to block ${i}, but ${arch}.block_count is ${nLayer}`);
    blocks.add(i);
  }

  if (!STRICT.has(arch) || tensors.length === 0) return;

  const require = (name: string): number => {
    const v = p.get(name);
    if (v === undefined) fail(`${arch}.${name} is missing`);
    if (v === 0) fail(`${arch}.${name} is 0`);
    return v;
  };
  const nEmbd = require("embedding_length");
  const layers = require("block_count");
  require("context_length");
  for (let i = 0; i < layers; i++) if (!blocks.has(i)) fail(`${arch}.block_count is ${layers}, but the file has no tensors for block ${i}`);

  const vocab = meta.get("tokenizer.ggml.tokens");
  const nVocab = isArray(vocab) ? vocab.length : undefined;
  const expect = (name: string, want: (number | undefined)[]) => {
    const t = byName.get(name);
    if (!t || want.some((w) => w === undefined)) return;
    const ok = t.dims.length === want.length && t.dims.every((d, k) => d === BigInt(want[k]!));
    if (!ok) fail(`tensor ${name} has shape ${shape(t)}, but the hyperparameters say [${want.join(", ")}]`);
  };
  expect("token_embd.weight", [nEmbd, nVocab]);
  expect("output.weight", [nEmbd, nVocab]);
  expect("output_norm.weight", [nEmbd]);

  const moe = nExpert > 0;
  for (let i = 0; i < layers; i++) {
    const nHead = p.get("attention.head_count", i);
    if (nHead === undefined) fail(`${arch}.attention.head_count is missing`);
    if (nHead === 0) fail(`${arch}.attention.head_count${p.perLayer("attention.head_count") ? `[${i}]` : ""} is 0`);
    const nHeadKv = p.get("attention.head_count_kv", i) ?? nHead;
    if (nHeadKv === 0 || nHead % nHeadKv !== 0) {
      fail(`${arch}.attention.head_count_kv is ${nHeadKv}; it must be > 0 and divide ${arch}.attention.head_count (${nHead})`);
    }
    const keyLength = p.get("attention.key_length", i);
    const valueLength = p.get("attention.value_length", i);
    if ((keyLength === undefined || valueLength === undefined) && nEmbd % nHead !== 0) {
      fail(`${arch}.attention.head_count ${nHead} does not divide ${arch}.embedding_length ${nEmbd}`);
    }
    if (keyLength === 0 || valueLength === 0) fail(`${arch}.attention.key_length and value_length must be > 0`);
    const hk = keyLength ?? nEmbd / nHead;
    const hv = valueLength ?? nEmbd / nHead;
    const nRot = p.get("rope.dimension_count");
    if (nRot !== undefined && (nRot > hk || nRot % 2 !== 0)) {
      fail(`${arch}.rope.dimension_count is ${nRot}; it must be even and at most the key head size ${hk}`);
    }
    if (FULL_ROPE.has(arch) && nRot !== undefined && nRot !== hk) fail(`${arch}.rope.dimension_count is ${nRot}, but ${arch} needs it equal to the key head size ${hk}`);
    if (hk !== hv) fail(`${arch} needs equal key and value head sizes, got ${hk} (attention.key_length) and ${hv} (attention.value_length)`);
    const blk = `blk.${i}.`;
    expect(blk + "attn_norm.weight", [nEmbd]);
    expect(blk + "attn_q.weight", [nEmbd, nHead * hk]);
    expect(blk + "attn_k.weight", [nEmbd, nHeadKv * hk]);
    expect(blk + "attn_v.weight", [nEmbd, nHeadKv * hv]);
    expect(blk + "attn_output.weight", [nHead * hv, nEmbd]);
    if (!moe) {
      const nFf = p.get("feed_forward_length", i);
      if (nFf === 0) fail(`${arch}.feed_forward_length${p.perLayer("feed_forward_length") ? `[${i}]` : ""} is 0`);
      expect(blk + "ffn_up.weight", [nEmbd, nFf]);
      expect(blk + "ffn_gate.weight", [nEmbd, nFf]);
      expect(blk + "ffn_down.weight", [nFf, nEmbd]);
    }
  }
}

/**
 * The narrowest attention head of the model, in values per head: `attention.key_length`, else
 * `embedding_length` ÷ `attention.head_count` (per-layer lists: the narrowest layer). Undefined
 * when the metadata does not say (architectures without attention, malformed values).
 */
export function attentionHeadSize(meta: ReadonlyMap<string, GgufValue>): number | undefined {
  const arch = meta.get("general.architecture");
  if (typeof arch !== "string") return undefined;
  const values = (name: string): number[] => {
    const v = meta.get(`${arch}.${name}`);
    const list = isArray(v) ? (v.values ?? []) : v === undefined ? [] : [v];
    return list.map((x) => (typeof x === "bigint" ? Number(x) : x)).filter((x): x is number => typeof x === "number" && Number.isSafeInteger(x) && x > 0);
  };
  const keyLength = values("attention.key_length");
  if (keyLength.length > 0) return Math.min(...keyLength);
  const embd = values("embedding_length")[0];
  const heads = values("attention.head_count");
  if (embd === undefined || heads.length === 0) return undefined;
  return Math.floor(embd / Math.max(...heads));
}
