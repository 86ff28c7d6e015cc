import { statSync } from "node:fs";
import { InvalidModelFileError } from "../errors.ts";
import { notRegularFile } from "./file-kind.ts";
import { checkHyperparameters } from "./hparams.ts";
import { type GgufHeader, type GgufTensor, readGgufHeader } from "./reader.ts";

// A model is one GGUF file or a split set name-00001-of-00003.gguf … whose first shard carries the
// metadata; llama.cpp opens the others itself, so each one is checked here too.
const SHARD = /-(\d{5})-of-(\d{5})\.gguf$/i;
const CACHE_ENTRIES = 256;

export interface GgufModel {
  /** The first (or only) file's header: metadata and its own tensors. */
  header: GgufHeader;
  shards: string[];
  /** Tensors of all shards. */
  tensors: GgufTensor[];
}

const cache = new Map<string, GgufModel | InvalidModelFileError>();

function shardPaths(path: string, header: GgufHeader): string[] {
  const count = header.metadata.get("split.count");
  const m = SHARD.exec(path);
  if (count === undefined && !m) return [path];
  const n = typeof count === "number" ? count : Number(m?.[2]);
  if (!Number.isInteger(n) || n < 1 || n > 99_999) throw new InvalidModelFileError(`invalid GGUF file ${path}: split.count is ${String(count)}`);
  if (n === 1) return [path];
  if (!m || Number(m[1]) !== 1 || Number(m[2]) !== n) {
    throw new InvalidModelFileError(`invalid GGUF file ${path}: split.count is ${n}, but the name is not the first of ${n} shards (name-00001-of-${String(n).padStart(5, "0")}.gguf)`);
  }
  const prefix = path.slice(0, m.index);
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i + 1).padStart(5, "0")}-of-${m[2]}.gguf`);
}

function validate(path: string): GgufModel {
  const header = readGgufHeader(path);
  const shards = shardPaths(path, header);
  const tensors = [...header.tensors];
  for (let i = 1; i < shards.length; i++) {
    const shard = shards[i]!;
    const why = notRegularFile(shard);
    if (why) throw new InvalidModelFileError(`shard ${i + 1} of ${shards.length} of ${path} cannot be read: ${shard}: ${why}`);
    const h = readGgufHeader(shard);
    const no = h.metadata.get("split.no");
    if (no !== i) throw new InvalidModelFileError(`invalid GGUF file ${shard}: split.no is ${String(no)}, expected ${i}`);
    tensors.push(...h.tensors);
  }
  const declared = header.metadata.get("split.tensors.count");
  if (shards.length > 1 && declared !== tensors.length) {
    throw new InvalidModelFileError(`invalid GGUF file ${path}: split.tensors.count is ${String(declared)}, but the shards hold ${tensors.length} tensors`);
  }
  if (new Set(tensors.map((t) => t.name)).size !== tensors.length) throw new InvalidModelFileError(`invalid GGUF file ${path}: a tensor name appears in two shards`);
  checkHyperparameters(header.metadata, tensors, (msg) => {
    throw new InvalidModelFileError(`invalid GGUF file ${path}: ${msg}`);
  });
  return { header, shards, tensors };
}

/** Path, size, mtime and inode of the file and of every shard its name implies. */
function identity(path: string): string {
  const m = SHARD.exec(path);
  const n = m && Number(m[1]) === 1 ? Math.min(Number(m[2]), 99_999) : 1;
  const parts: string[] = [];
  for (let i = 1; i <= n; i++) {
    const p = i === 1 ? path : `${path.slice(0, m!.index)}-${String(i).padStart(5, "0")}-of-${m![2]}.gguf`;
    try {
      const st = statSync(p);
      parts.push(`${p}\0${st.size}\0${st.mtimeMs}\0${st.ino}`);
    } catch {
      // The model is invalid while this shard is missing; later shards cannot change that.
      parts.push(`${p}\0missing`);
      break;
    }
  }
  return parts.join("\n");
}

/**
 * Checks a GGUF model (every shard) before anything else opens it, and returns its header. The
 * result, good or bad, is remembered per file identity (path, size, mtime, inode, of every
 * shard), so a scan of the models folder reads each header once.
 */
export function validateGgufModel(path: string): GgufModel {
  const why = notRegularFile(path);
  if (why) throw new InvalidModelFileError(`${path} cannot be used as a model file: ${why}`);
  const key = identity(path);
  let hit = cache.get(key);
  if (!hit) {
    try {
      hit = validate(path);
    } catch (err) {
      if (!(err instanceof InvalidModelFileError)) throw err;
      hit = err;
    }
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(key, hit);
  }
  if (hit instanceof InvalidModelFileError) throw hit;
  return hit;
}
