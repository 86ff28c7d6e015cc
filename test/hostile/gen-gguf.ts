// Generates hostile GGUF files for the tests (never committed as binaries). Most are the qwen2
// tiny fixture with one field broken, so every other part of the file is realistic; the rest are
// hand-built headers. `bun test/hostile/gen-gguf.ts DIR` writes them all to DIR for poking at.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodeGguf, type GgufFile, type GgufValue, kv, readGgufFile } from "../fixtures/gguf.ts";
import { fixtures } from "../fixtures/models.ts";

export interface HostileCase {
  name: string;
  /** What the validator's message must mention. */
  expect: RegExp;
  bytes: () => Uint8Array;
}

/** A minimal header: magic, version 3, the counts, then `body`. */
function header(tensorCount: bigint, kvCount: bigint, body: (v: DataView, at: number) => number, size = 256): Uint8Array {
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  buf.set(new TextEncoder().encode("GGUF"), 0);
  v.setUint32(4, 3, true);
  v.setBigUint64(8, tensorCount, true);
  v.setBigUint64(16, kvCount, true);
  return buf.subarray(0, body(v, 24));
}

function putString(v: DataView, at: number, s: string, declaredLength?: bigint): number {
  const b = new TextEncoder().encode(s);
  v.setBigUint64(at, declaredLength ?? BigInt(b.length), true);
  new Uint8Array(v.buffer).set(b, at + 8);
  return at + 8 + b.length;
}

let base: GgufFile | undefined;
const qwen2 = () => (base ??= readGgufFile(fixtures.qwen2Tiny));

/** qwen2-tiny with metadata changed; `set` values replace, `undefined` removes. */
function withMetadata(changes: Record<string, GgufValue | undefined>): Uint8Array {
  const f = qwen2();
  const metadata = new Map(f.metadata);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) metadata.delete(k);
    else metadata.set(k, v);
  }
  return encodeGguf({ metadata, tensors: f.tensors });
}

/**
 * qwen2-tiny with one field of one tensor info patched in place. The info is found by its name
 * (a u64 length then the bytes) in the header: after it come u32 n_dims, u64 dims[], u32 type, u64 offset.
 */
function patchTensor(name: string, patch: (v: DataView, info: { nDimsAt: number; dimsAt: number; typeAt: number; offsetAt: number }) => void): Uint8Array {
  const bytes = encodeGguf({ metadata: qwen2().metadata, tensors: qwen2().tensors });
  const needle = new Uint8Array(8 + name.length);
  new DataView(needle.buffer).setBigUint64(0, BigInt(name.length), true);
  needle.set(new TextEncoder().encode(name), 8);
  const at = Buffer.from(bytes).indexOf(Buffer.from(needle));
  if (at < 0) throw new Error(`tensor ${name} not found`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nDimsAt = at + needle.length;
  const nDims = v.getUint32(nDimsAt, true);
  const dimsAt = nDimsAt + 4;
  const typeAt = dimsAt + 8 * nDims;
  patch(v, { nDimsAt, dimsAt, typeAt, offsetAt: typeAt + 4 });
  return bytes;
}

const arch = "qwen2";
const u32 = (n: number) => kv.u32(n);

export const HOSTILE_CASES: HostileCase[] = [
  {
    // The 78-byte file from the issue: one array declaring 2^50 strings.
    name: "huge-array-count",
    expect: /array length of a is 1125899906842624/,
    bytes: () => header(0n, 1n, (v, at) => {
      at = putString(v, at, "a");
      v.setUint32(at, 9, true);
      v.setUint32(at + 4, 8, true);
      v.setBigUint64(at + 8, 1n << 50n, true);
      return at + 16 + 29; // a few stray bytes, as in the report
    }),
  },
  {
    name: "huge-string-length",
    expect: /length of general\.name is 1152921504606846976, more than the limit/,
    bytes: () => header(0n, 1n, (v, at) => {
      at = putString(v, at, "general.name");
      v.setUint32(at, 8, true);
      return putString(v, at + 4, "tiny", 1n << 60n);
    }),
  },
  {
    name: "huge-kv-count",
    expect: /metadata key count is 4611686018427387904, more than the limit/,
    bytes: () => header(0n, (1n << 62n), (_v, at) => at + 8),
  },
  {
    name: "too-many-keys",
    expect: /metadata key count is 1048576, more than the limit of 65536/,
    bytes: () => header(0n, 1n << 20n, (_v, at) => at, 16 << 20),
  },
  {
    // 2^21 empty tokens fit in 16 MiB; keeping them all would cost far more than the file.
    name: "huge-vocabulary",
    expect: /tokenizer\.ggml\.tokens has 2097152 tokens, more than the limit/,
    bytes: () => header(0n, 1n, (v, at) => {
      at = putString(v, at, "tokenizer.ggml.tokens");
      v.setUint32(at, 9, true);
      v.setUint32(at + 4, 8, true);
      v.setBigUint64(at + 8, 1n << 21n, true);
      return at + 16 + 8 * (1 << 21);
    }, 17 << 20),
  },
  {
    name: "huge-tensor-count",
    expect: /tensor count is \d+, more than the limit/,
    bytes: () => header(1n << 40n, 0n, (_v, at) => at),
  },
  {
    name: "kv-count-lie",
    expect: /invalid GGUF file/,
    bytes: () => {
      const b = withMetadata({});
      new DataView(b.buffer, b.byteOffset).setBigUint64(16, BigInt(qwen2().metadata.size + 3), true);
      return b;
    },
  },
  {
    name: "bad-magic",
    expect: /not a GGUF file/,
    bytes: () => new TextEncoder().encode("GGUX" + "\0".repeat(60)),
  },
  {
    name: "truncated-header",
    expect: /truncated or corrupt/,
    bytes: () => withMetadata({}).subarray(0, 5000),
  },
  {
    name: "truncated-data",
    expect: /extends past the end of the file/,
    bytes: () => {
      const b = withMetadata({});
      return b.subarray(0, b.byteLength - 4096);
    },
  },
  {
    name: "tensor-offset-past-eof",
    expect: /output_norm\.weight .* extends past the end of the file/,
    bytes: () => patchTensor("output_norm.weight", (v, i) => v.setBigUint64(i.offsetAt, 1n << 40n, true)),
  },
  {
    name: "misaligned-tensor",
    expect: /offset \d+, not a multiple of the alignment 32/,
    bytes: () => patchTensor("output_norm.weight", (v, i) => v.setBigUint64(i.offsetAt, v.getBigUint64(i.offsetAt, true) + 4n, true)),
  },
  {
    name: "overlapping-tensors",
    expect: /overlap/,
    bytes: () => patchTensor("blk.1.attn_norm.weight", (v, i) => v.setBigUint64(i.offsetAt, 0n, true)),
  },
  {
    name: "n-dims-0",
    expect: /has 0 dimensions/,
    bytes: () => patchTensor("output_norm.weight", (v, i) => v.setUint32(i.nDimsAt, 0, true)),
  },
  {
    name: "n-dims-5",
    expect: /has 5 dimensions/,
    bytes: () => patchTensor("output_norm.weight", (v, i) => v.setUint32(i.nDimsAt, 5, true)),
  },
  {
    name: "negative-dim",
    expect: /dimension 0 = -64/,
    bytes: () => patchTensor("output_norm.weight", (v, i) => v.setBigInt64(i.dimsAt, -64n, true)),
  },
  {
    name: "zero-dim",
    expect: /dimension 0 = 0/,
    bytes: () => patchTensor("output_norm.weight", (v, i) => v.setBigInt64(i.dimsAt, 0n, true)),
  },
  {
    name: "unknown-ggml-type",
    expect: /unknown ggml type 77/,
    bytes: () => patchTensor("output_norm.weight", (v, i) => v.setUint32(i.typeAt, 77, true)),
  },
  {
    name: "huge-dims",
    expect: /extends past the end of the file/,
    bytes: () => patchTensor("output_norm.weight", (v, i) => v.setBigUint64(i.dimsAt, 1n << 40n, true)),
  },
  {
    name: "bad-alignment",
    expect: /general\.alignment must be a positive power of two/,
    bytes: () => {
      // The writer refuses a bad alignment, so write 32 and patch the value (after key and type).
      const b = withMetadata({ "general.alignment": u32(32) });
      const at = Buffer.from(b).indexOf(Buffer.from("general.alignment")) + "general.alignment".length + 4;
      new DataView(b.buffer, b.byteOffset).setUint32(at, 24, true);
      return b;
    },
  },
  { name: "head-count-0", expect: /qwen2\.attention\.head_count is 0/, bytes: () => withMetadata({ [`${arch}.attention.head_count`]: u32(0) }) },
  {
    name: "head-count-not-dividing",
    expect: /head_count 3 does not divide qwen2\.embedding_length 64/,
    bytes: () => withMetadata({ [`${arch}.attention.head_count`]: u32(3), [`${arch}.attention.head_count_kv`]: u32(1) }),
  },
  { name: "rope-dims-mismatch", expect: /rope\.dimension_count is 32; it must be even and at most the key head size 16/, bytes: () => withMetadata({ [`${arch}.rope.dimension_count`]: u32(32) }) },
  { name: "rope-dims-partial", expect: /rope\.dimension_count is 8, but qwen2 needs it equal to the key head size 16/, bytes: () => withMetadata({ [`${arch}.rope.dimension_count`]: u32(8) }) },
  { name: "head-count-kv-0", expect: /head_count_kv is 0/, bytes: () => withMetadata({ [`${arch}.attention.head_count_kv`]: u32(0) }) },
  {
    name: "head-count-kv-not-dividing",
    expect: /head_count_kv is 3; it must be > 0 and divide/,
    bytes: () => withMetadata({ [`${arch}.attention.head_count_kv`]: u32(3) }),
  },
  { name: "embedding-length-mismatch", expect: /token_embd\.weight has shape \[64, \d+\], but the hyperparameters say \[128/, bytes: () => withMetadata({ [`${arch}.embedding_length`]: u32(128) }) },
  { name: "feed-forward-mismatch", expect: /ffn_up\.weight has shape/, bytes: () => withMetadata({ [`${arch}.feed_forward_length`]: u32(96) }) },
  { name: "block-count-too-small", expect: /belongs to block 1, but qwen2\.block_count is 1/, bytes: () => withMetadata({ [`${arch}.block_count`]: u32(1) }) },
  { name: "block-count-too-large", expect: /no tensors for block 2/, bytes: () => withMetadata({ [`${arch}.block_count`]: u32(3) }) },
  { name: "missing-head-count", expect: /head_count is missing/, bytes: () => withMetadata({ [`${arch}.attention.head_count`]: undefined }) },
  { name: "vocab-mismatch", expect: /token_embd\.weight has shape/, bytes: withVocabCut },
  { name: "duplicate-token", expect: /tokenizer\.ggml\.tokens has token 101 equal to token 100/, bytes: () => withTokens((t) => { t[100] = t[101]!; }) },
  { name: "short-token-types", expect: /tokenizer\.ggml\.token_type has 10 entries, but tokenizer\.ggml\.tokens has \d+/, bytes: () => withTokens(() => {}, 10) },
  { name: "expert-used-gt-count", expect: /expert_used_count is 4; with qwen2\.expert_count 2/, bytes: () => withMetadata({ [`${arch}.expert_count`]: u32(2), [`${arch}.expert_used_count`]: u32(4) }) },
  { name: "nested-array", expect: /array of arrays/, bytes: () => withMetadata({ "x.nested": kv.array({ type: "array", values: [{ type: "u8", values: new Uint8Array([1]) }] }) }) },
];

/** qwen2-tiny with its vocabulary one token shorter than token_embd. */
function withVocabCut(): Uint8Array {
  const tokens = qwen2().metadata.get("tokenizer.ggml.tokens");
  const types = qwen2().metadata.get("tokenizer.ggml.token_type");
  if (tokens?.type !== "array" || tokens.items.type !== "string" || types?.type !== "array" || types.items.type !== "i32") throw new Error("qwen2 fixture has no token list");
  return withMetadata({
    "tokenizer.ggml.tokens": kv.array({ type: "string", values: tokens.items.values.slice(0, -1) }),
    "tokenizer.ggml.token_type": kv.array({ type: "i32", values: types.items.values.slice(0, -1) }),
  });
}

/** qwen2-tiny with its token list edited in place and, optionally, token_type cut to `types` entries. */
function withTokens(edit: (tokens: string[]) => void, types?: number): Uint8Array {
  const tokens = qwen2().metadata.get("tokenizer.ggml.tokens");
  const tt = qwen2().metadata.get("tokenizer.ggml.token_type");
  if (tokens?.type !== "array" || tokens.items.type !== "string" || tt?.type !== "array" || tt.items.type !== "i32") throw new Error("qwen2 fixture has no token list");
  const values = [...tokens.items.values];
  edit(values);
  return withMetadata({
    "tokenizer.ggml.tokens": kv.array({ type: "string", values }),
    "tokenizer.ggml.token_type": kv.array({ type: "i32", values: tt.items.values.slice(0, types) }),
  });
}

/** qwen2-tiny claiming an architecture the validator does not know, with `changes` applied to its keys. */
export function unknownArchitecture(arch: string, changes: Record<string, GgufValue>): Uint8Array {
  const metadata = new Map<string, GgufValue>();
  for (const [k, v] of qwen2().metadata) metadata.set(k.startsWith("qwen2.") ? `${arch}.${k.slice(6)}` : k, v);
  metadata.set("general.architecture", kv.string(arch));
  for (const [k, v] of Object.entries(changes)) metadata.set(`${arch}.${k}`, v);
  return encodeGguf({ metadata, tensors: qwen2().tensors });
}

/** qwen2-tiny split into two shards the way gguf-split names and tags them; returns the shard paths. */
export function writeSplit(dir: string, name: string): [string, string] {
  const f = qwen2();
  const half = Math.floor(f.tensors.length / 2);
  const split = (no: number): [string, GgufValue][] => [
    ["split.no", kv.u16(no)],
    ["split.count", kv.u16(2)],
    ["split.tensors.count", kv.i32(f.tensors.length)],
  ];
  const first = join(dir, `${name}-00001-of-00002.gguf`);
  const second = join(dir, `${name}-00002-of-00002.gguf`);
  writeFileSync(first, encodeGguf({ metadata: new Map([...f.metadata, ...split(0)]), tensors: f.tensors.slice(0, half) }));
  writeFileSync(second, encodeGguf({ metadata: new Map(split(1)), tensors: f.tensors.slice(half) }));
  return [first, second];
}

/** Writes case `c` to DIR/<name>.gguf and returns the path. */
export function writeCase(dir: string, c: HostileCase): string {
  const path = join(dir, `${c.name}.gguf`);
  writeFileSync(path, c.bytes());
  return path;
}

if (import.meta.main) {
  const dir = process.argv[2];
  if (!dir) throw new Error("usage: bun test/hostile/gen-gguf.ts DIR");
  for (const c of HOSTILE_CASES) console.log(writeCase(dir, c));
}
