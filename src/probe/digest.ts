import { createHash } from "node:crypto";
import { closeSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";

const CHUNK = 64 * 1024;
const SAMPLES = 32;
const cache = new Map<string, string>();

/**
 * Identity of a model's weights for keying probe results. Hashing a 40 GB file on every start is
 * not an option, so this hashes the size plus 32 evenly spaced 64 KiB samples (the GGUF header
 * and metadata are in the first one): any re-quantisation or different file changes it. Files
 * downloaded from the hub are keyed by their verified sha256 instead (see the caller).
 */
export function sampledDigest(path: string): string {
  const st = statSync(path);
  const files = st.isDirectory()
    ? readdirSync(path).filter((f) => f.endsWith(".safetensors") || f === "config.json").sort().map((f) => join(path, f))
    : [path];
  // Never open a FIFO or device (the open would block); model paths are checked before here too.
  for (const f of files) if (!statSync(f).isFile()) throw new Error(`${f} is not a regular file`);
  const key = files.map((f) => `${f}:${statSync(f).size}:${statSync(f).mtimeMs}`).join("|");
  const hit = cache.get(key);
  if (hit) return hit;
  const h = createHash("sha256");
  const buf = Buffer.alloc(CHUNK);
  for (const f of files) {
    const size = statSync(f).size;
    h.update(`${size}\n`);
    const fd = openSync(f, "r");
    try {
      for (let i = 0; i < SAMPLES; i++) {
        const offset = size <= CHUNK ? 0 : Math.floor(((size - CHUNK) * i) / (SAMPLES - 1));
        const n = readSync(fd, buf, 0, CHUNK, offset);
        h.update(buf.subarray(0, n));
        if (size <= CHUNK) break;
      }
    } finally {
      closeSync(fd);
    }
  }
  const digest = "sampled:" + h.digest("hex");
  cache.set(key, digest);
  return digest;
}
