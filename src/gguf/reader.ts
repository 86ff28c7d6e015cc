// A strict reader for the header of a GGUF file (magic, metadata, tensor table). It exists
// because model files come from the internet and llama.cpp trusts them: every count and length
// is checked against the bytes left in the file before anything is allocated or looped over, so
// a 78-byte file declaring 2^50 strings fails in microseconds. Only the header region is read
// (in chunks, on demand); tensor data is never touched, so a 40 GB model reads as fast as a tiny one.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 KV count, the KVs
// (string key, u32 type, value), the tensor infos (string name, u32 n_dims, u64 dims[n_dims],
// u32 ggml type, u64 offset), padding to `general.alignment`, then the tensor data.

import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { InvalidModelFileError } from "../errors.ts";
import { ggmlTensorBytes, ggmlTypeName } from "./ggml-types.ts";

const MAGIC = "GGUF";
const DEFAULT_ALIGNMENT = 32;
const CHUNK = 1 << 20;

/** Bounds no real model comes near; they cap time and memory for files that only claim to. */
export const LIMITS = {
  /** GGML_MAX_DIMS. */
  maxDims: 4,
  /** GGML_MAX_NAME is 64 including the terminating NUL. */
  maxTensorName: 63,
  /** Merged-expert GGUFs of the largest models have a few thousand. */
  maxTensors: 1 << 18,
  /** Real models have under a hundred keys. */
  maxKeys: 1 << 16,
  maxKeyBytes: 1 << 16,
  maxArrayItems: 1 << 24,
  /** The largest real vocabularies have about 260k tokens. */
  maxVocabulary: 1 << 20,
  /** All metadata strings kept in memory together (chat templates are the big ones). */
  maxStringBytes: 64 << 20,
} as const;

export const ValueType = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;
export type ValueTypeName = keyof typeof ValueType;
const TYPE_NAMES = Object.keys(ValueType) as ValueTypeName[];
const WIDTH: Record<ValueTypeName, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, string: 8, array: 12, u64: 8, i64: 8, f64: 8 };
/** String arrays whose items are kept (the others are skipped without being decoded). */
const KEPT_STRING_ARRAYS = new Set(["tokenizer.ggml.tokens"]);
/** Numeric arrays up to this length keep their values (per-layer hyperparameters); longer ones only their length. */
const KEPT_ARRAY_ITEMS = 4096;
const KEPT_ITEMS_TOTAL = 1 << 16;

export type GgufScalar = number | bigint | boolean | string;
export interface GgufArray {
  itemType: ValueTypeName;
  length: number;
  /** Only for numeric and bool arrays of up to 4096 items. */
  values?: (number | bigint | boolean)[];
  /** Only for the vocabulary: one char per byte (latin1), so equal strings mean equal bytes, as in llama.cpp. */
  strings?: string[];
}
export type GgufValue = GgufScalar | GgufArray;

export interface GgufTensor {
  name: string;
  /** Innermost dimension first, as ggml's ne[]. */
  dims: bigint[];
  type: number;
  /** Relative to the start of the data section. */
  offset: bigint;
  bytes: bigint;
}

export interface GgufHeader {
  path: string;
  fileSize: number;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensor[];
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
}

export function isArray(v: GgufValue | undefined): v is GgufArray {
  return typeof v === "object" && v !== null;
}

/** Buffered, bounds-checked reads from a file descriptor. */
class Cursor {
  pos = 0;
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  private stringBytes = 0;
  private keptItems = 0;
  private readonly decoder = new TextDecoder("utf-8");

  constructor(private readonly fd: number, readonly size: number, private readonly fail: (msg: string) => never) {}

  get left(): number {
    return this.size - this.pos;
  }

  /** Fails unless `n` more bytes exist; `what` names the field for the error. */
  ensure(n: number | bigint, what: string): void {
    if (BigInt(n) > BigInt(this.left)) this.fail(`${what} needs ${n} bytes at offset ${this.pos} but the file has ${this.left} left (truncated or corrupt)`);
  }

  private take(n: number, what: string): Buffer {
    this.ensure(n, what);
    const end = this.pos + n;
    if (this.pos < this.bufStart || end > this.bufStart + this.buf.length) {
      const len = Math.min(Math.max(n, CHUNK), this.size - this.pos);
      const buf = Buffer.allocUnsafe(len);
      let got = 0;
      while (got < len) {
        const r = readSync(this.fd, buf, got, len - got, this.pos + got);
        if (r === 0) this.fail(`file shrank while being read at offset ${this.pos + got}`);
        got += r;
      }
      this.buf = buf;
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos = end;
    return this.buf.subarray(at, at + n);
  }

  skip(n: number, what: string): void {
    this.ensure(n, what);
    this.pos += n;
  }

  u8 = (what: string) => this.take(1, what).readUInt8(0);
  u32 = (what: string) => this.take(4, what).readUInt32LE(0);
  u64 = (what: string) => this.take(8, what).readBigUInt64LE(0);

  /** A u64 count or length that must fit in what is left of the file at `itemBytes` each. */
  count(what: string, itemBytes: number, cap: number): number {
    const n = this.u64(what);
    if (n > BigInt(cap)) this.fail(`${what} is ${n}, more than the limit of ${cap}`);
    this.ensure(n * BigInt(itemBytes), `${what} (${n})`);
    return Number(n);
  }

  scalar(type: ValueTypeName, what: string): GgufScalar {
    const b = this.take(WIDTH[type], what);
    switch (type) {
      case "u8": return b.readUInt8(0);
      case "i8": return b.readInt8(0);
      case "u16": return b.readUInt16LE(0);
      case "i16": return b.readInt16LE(0);
      case "u32": return b.readUInt32LE(0);
      case "i32": return b.readInt32LE(0);
      case "f32": return b.readFloatLE(0);
      case "f64": return b.readDoubleLE(0);
      case "u64": return b.readBigUInt64LE(0);
      case "i64": return b.readBigInt64LE(0);
      case "bool": return b.readUInt8(0) !== 0;
      default: return this.fail(`${what}: ${type} is not a scalar type`);
    }
  }

  string(what: string, max: number): string {
    const len = this.count(`length of ${what}`, 1, max);
    this.stringBytes += len;
    if (this.stringBytes > LIMITS.maxStringBytes) this.fail(`metadata strings exceed ${LIMITS.maxStringBytes} bytes in total (at ${what})`);
    return this.decoder.decode(this.take(len, what));
  }

  /** Whether `n` more array items may be kept in memory (bounded per file, whatever the key count). */
  keepItems(n: number): boolean {
    if (this.keptItems + n > KEPT_ITEMS_TOTAL) return false;
    this.keptItems += n;
    return true;
  }

  /** A string kept byte for byte (latin1), counted against the string budget; as fast as skipString. */
  bytesString(what: () => string): string {
    const start = this.pos;
    this.skipString(what);
    const len = this.pos - start - 8;
    this.stringBytes += len;
    if (this.stringBytes > LIMITS.maxStringBytes) this.fail(`metadata strings exceed ${LIMITS.maxStringBytes} bytes in total (at ${what()})`);
    const at = start + 8 - this.bufStart;
    if (at >= 0 && at + len <= this.buf.length) return this.buf.toString("latin1", at, at + len);
    this.pos = start + 8;
    return this.take(len, what()).toString("latin1");
  }

  /** The hot loop of a vocabulary: no BigInt and no message built unless the length is bad. */
  skipString(what: () => string): void {
    let at = this.pos - this.bufStart;
    if (at < 0 || at + 8 > this.buf.length) {
      this.take(8, "string length");
      this.pos -= 8;
      at = 0;
    }
    const lo = this.buf.readUInt32LE(at);
    const hi = this.buf.readUInt32LE(at + 4);
    this.pos += 8;
    if (hi !== 0 || lo > this.left) this.ensure(this.buf.readBigUInt64LE(at), what());
    this.pos += lo;
  }
}

function valueType(c: Cursor, what: string, fail: (m: string) => never): ValueTypeName {
  const code = c.u32(`type of ${what}`);
  const name = TYPE_NAMES[code];
  if (name === undefined) fail(`${what} has unknown value type ${code}`);
  return name;
}

function readArray(c: Cursor, key: string, fail: (m: string) => never): GgufArray {
  const itemType = valueType(c, `items of ${key}`, fail);
  // llama.cpp's own reader rejects arrays of arrays; accepting them here would only defer the error.
  if (itemType === "array") fail(`${key} is an array of arrays, which GGUF readers do not support`);
  const length = c.count(`array length of ${key}`, WIDTH[itemType], LIMITS.maxArrayItems);
  if (itemType === "string") {
    if (KEPT_STRING_ARRAYS.has(key)) {
      if (length > LIMITS.maxVocabulary) fail(`${key} has ${length} tokens, more than the limit of ${LIMITS.maxVocabulary}`);
      const strings: string[] = [];
      for (let i = 0; i < length; i++) strings.push(c.bytesString(() => `${key}[${i}]`));
      return { itemType, length, strings };
    }
    for (let i = 0; i < length; i++) c.skipString(() => `${key}[${i}]`);
    return { itemType, length };
  }
  if (length > KEPT_ARRAY_ITEMS || !c.keepItems(length)) {
    c.skip(length * WIDTH[itemType], key);
    return { itemType, length };
  }
  const values: (number | bigint | boolean)[] = [];
  for (let i = 0; i < length; i++) values.push(c.scalar(itemType, `${key}[${i}]`) as number | bigint | boolean);
  return { itemType, length, values };
}

function parse(c: Cursor, path: string, fail: (m: string) => never): GgufHeader {
  c.ensure(24, "the GGUF header");
  const magic = String.fromCharCode(c.u8("magic"), c.u8("magic"), c.u8("magic"), c.u8("magic"));
  if (magic !== MAGIC) fail(`not a GGUF file (magic ${JSON.stringify(magic)})`);
  const version = c.u32("version");
  if (version !== 2 && version !== 3) fail(`unsupported GGUF version ${version} (2 and 3 are supported)`);
  // Minimum on-disk sizes: a tensor info is name length + n_dims + one dim + type + offset,
  // a KV is key length + type + a one-byte value.
  const tensorCount = c.count("tensor count", 32, LIMITS.maxTensors);
  const kvCount = c.count("metadata key count", 13, LIMITS.maxKeys);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key #${i}`, LIMITS.maxKeyBytes);
    if (metadata.has(key)) fail(`metadata key ${key} appears twice`);
    const type = valueType(c, key, fail);
    let value: GgufValue;
    if (type === "array") value = readArray(c, key, fail);
    else if (type === "string") value = c.string(key, LIMITS.maxStringBytes);
    else value = c.scalar(type, key);
    metadata.set(key, value);
  }
  // The KVs may have used up the room the counts were checked against at the start.
  c.ensure(tensorCount * 32, `the ${tensorCount} tensor infos`);

  const align = metadata.get("general.alignment");
  let alignment = DEFAULT_ALIGNMENT;
  if (align !== undefined) {
    if (typeof align !== "number" || !Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) {
      fail(`general.alignment must be a positive power of two, got ${String(isArray(align) ? "an array" : align)}`);
    }
    alignment = align;
  }

  const tensors: GgufTensor[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`name of tensor #${i}`, LIMITS.maxTensorName);
    if (names.has(name)) fail(`tensor ${name} appears twice`);
    names.add(name);
    const nDims = c.u32(`n_dims of tensor ${name}`);
    if (nDims < 1 || nDims > LIMITS.maxDims) fail(`tensor ${name} has ${nDims} dimensions (1 to ${LIMITS.maxDims} allowed)`);
    const dims: bigint[] = [];
    for (let d = 0; d < nDims; d++) {
      const n = c.u64(`dimension ${d} of tensor ${name}`);
      // ggml reads dimensions as int64, so anything past 2^63 is negative to it.
      if (n === 0n || n > BigInt.asUintN(63, -1n)) fail(`tensor ${name} has dimension ${d} = ${BigInt.asIntN(64, n)} (must be > 0)`);
      dims.push(n);
    }
    const type = c.u32(`type of tensor ${name}`);
    const offset = c.u64(`offset of tensor ${name}`);
    const bytes = ggmlTensorBytes(type, dims);
    if (typeof bytes === "string") fail(`tensor ${name} [${dims.join(", ")}]: ${bytes}`);
    if (offset % BigInt(alignment) !== 0n) fail(`tensor ${name} has offset ${offset}, not a multiple of the alignment ${alignment}`);
    tensors.push({ name, dims, type, offset, bytes });
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const dataBytes = BigInt(c.size - Math.min(dataOffset, c.size));
  const byOffset = [...tensors].sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  let prev: GgufTensor | undefined;
  for (const t of byOffset) {
    if (t.offset + t.bytes > dataBytes) {
      fail(`tensor ${t.name} (${ggmlTypeName(t.type)} [${t.dims.join(", ")}], ${t.bytes} bytes at data offset ${t.offset}) extends past the end of the file (${dataBytes} bytes of tensor data)`);
    }
    if (prev && t.offset < prev.offset + prev.bytes) fail(`tensors ${prev.name} and ${t.name} overlap (offsets ${prev.offset} and ${t.offset})`);
    prev = t;
  }
  return { path, fileSize: c.size, version, metadata, tensors, alignment, dataOffset };
}

/** Reads and checks the header of one GGUF file; any inconsistency is an InvalidModelFileError naming the field. */
export function readGgufHeader(path: string): GgufHeader {
  const fail = (msg: string): never => {
    throw new InvalidModelFileError(`invalid GGUF file ${path}: ${msg}`);
  };
  // Callers skip non-regular files before they get here (file-kind.ts); O_NONBLOCK makes sure a
  // FIFO swapped in since then cannot block the open either.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) fail("not a regular file");
    return parse(new Cursor(fd, st.size, fail), path, fail);
  } finally {
    closeSync(fd);
  }
}
