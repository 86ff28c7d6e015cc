// Reads single files out of a git bundle without git. node-llama-cpp ships the llama.cpp source it
// was built from as `llama/gitRelease.bundle`; the release build reads llama.cpp's list of model
// architectures from it, so the manifest says exactly what each engine bundle can load. A release
// machine need not have git installed, and the format is small enough to read directly:
//
//   bundle: "# v2 git bundle\n" (or v3 with "@capability" lines), "<sha> <ref>\n"…, "\n", packfile
//   pack:   "PACK", u32 version, u32 object count, then per object a type/size header and a zlib
//           stream; deltas name their base by pack offset (ofs-delta) or by object id (ref-delta)

import { createHash } from "node:crypto";
import { inflateSync } from "node:zlib";

const OBJ_COMMIT = 1;
const OBJ_TREE = 2;
const OBJ_BLOB = 3;
const OBJ_TAG = 4;
const OBJ_OFS_DELTA = 6;
const OBJ_REF_DELTA = 7;
const TYPE_NAMES: Record<number, string> = { [OBJ_COMMIT]: "commit", [OBJ_TREE]: "tree", [OBJ_BLOB]: "blob", [OBJ_TAG]: "tag" };

export class GitBundleError extends Error {
  override name = "GitBundleError";
}

interface RawObject {
  type: number;
  /** Inflated bytes: the object itself, or delta instructions for the delta types. */
  data: Uint8Array;
  baseOffset?: number;
  baseId?: string;
}

interface GitObject {
  type: number;
  data: Uint8Array;
}

export interface GitBundle {
  /** Ref name → commit id, as listed in the bundle header ("HEAD", "refs/tags/b1234", …). */
  refs: Map<string, string>;
  /** Bytes of the file at `path` ("src/llama-arch.cpp") in the tree of `commit`; undefined if absent. */
  readFile(commit: string, path: string): Uint8Array | undefined;
}

const decoder = new TextDecoder();

export function readGitBundle(bytes: Uint8Array): GitBundle {
  const { refs, packStart } = parseHeader(bytes);
  const raw = parsePack(bytes, packStart);
  const resolved = new Map<number, GitObject>();
  const offsetById = new Map<string, number>();

  const resolve = (offset: number): GitObject => {
    const done = resolved.get(offset);
    if (done) return done;
    // Delta chains can be long; walk them iteratively rather than recursing once per link.
    const chain: number[] = [];
    let cursor = offset;
    let base: GitObject | undefined;
    for (;;) {
      const hit = resolved.get(cursor);
      if (hit) {
        base = hit;
        break;
      }
      const obj = raw.get(cursor);
      if (obj === undefined) throw new GitBundleError(`pack has no object at offset ${cursor}`);
      if (obj.type !== OBJ_OFS_DELTA && obj.type !== OBJ_REF_DELTA) {
        base = { type: obj.type, data: obj.data };
        resolved.set(cursor, base);
        break;
      }
      chain.push(cursor);
      if (obj.baseOffset !== undefined) cursor = obj.baseOffset;
      else {
        const byId = offsetById.get(obj.baseId ?? "");
        // Thin bundles may name bases that live only in the sender's repository.
        if (byId === undefined) throw new GitBundleError(`delta base ${obj.baseId} is not in the bundle`);
        cursor = byId;
      }
    }
    for (let i = chain.length - 1; i >= 0; i--) {
      const at = chain[i] as number;
      base = { type: base.type, data: applyDelta(base.data, (raw.get(at) as RawObject).data) };
      resolved.set(at, base);
    }
    return base;
  };

  // Object ids are hashes of resolved content, so resolve every object once. Bases come before
  // their deltas for ofs-deltas; ref-deltas may point forward, hence the retry pass.
  const pending: number[] = [];
  const index = (offset: number): boolean => {
    const obj = raw.get(offset) as RawObject;
    if (obj.type === OBJ_REF_DELTA && !offsetById.has(obj.baseId ?? "")) return false;
    const { type, data } = resolve(offset);
    offsetById.set(objectId(type, data), offset);
    return true;
  };
  for (const offset of raw.keys()) if (!index(offset)) pending.push(offset);
  for (let progress = true; pending.length > 0 && progress; ) {
    progress = false;
    for (let i = pending.length - 1; i >= 0; i--) {
      if (index(pending[i] as number)) {
        pending.splice(i, 1);
        progress = true;
      }
    }
  }

  const lookup = (id: string, type: number): GitObject => {
    const offset = offsetById.get(id);
    if (offset === undefined) throw new GitBundleError(`object ${id} is not in the bundle`);
    const obj = resolve(offset);
    if (obj.type !== type) throw new GitBundleError(`object ${id} is a ${TYPE_NAMES[obj.type]}, expected a ${TYPE_NAMES[type]}`);
    return obj;
  };

  return {
    refs,
    readFile(commit, path) {
      const commitText = decoder.decode(lookup(commit, OBJ_COMMIT).data);
      const treeId = /^tree ([0-9a-f]{40})$/m.exec(commitText)?.[1];
      if (treeId === undefined) throw new GitBundleError(`commit ${commit} names no tree`);
      let current = treeId;
      const parts = path.split("/").filter(Boolean);
      for (let i = 0; i < parts.length; i++) {
        const entry = readTree(lookup(current, OBJ_TREE).data).get(parts[i] as string);
        if (entry === undefined) return undefined;
        current = entry;
        if (i === parts.length - 1) return lookup(current, OBJ_BLOB).data;
      }
      return undefined;
    },
  };
}

function parseHeader(bytes: Uint8Array): { refs: Map<string, string>; packStart: number } {
  const refs = new Map<string, string>();
  let pos = 0;
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end === -1) throw new GitBundleError("truncated bundle header");
    const text = decoder.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const signature = line();
  if (signature !== "# v2 git bundle" && signature !== "# v3 git bundle") throw new GitBundleError("not a git bundle (v2 or v3)");
  for (;;) {
    const text = line();
    if (text === "") break;
    if (text.startsWith("@") || text.startsWith("-")) continue; // capabilities, prerequisites
    const match = /^([0-9a-f]{40}) (.+)$/.exec(text);
    if (match === null) throw new GitBundleError(`unexpected bundle header line ${JSON.stringify(text)}`);
    refs.set(match[2] as string, match[1] as string);
  }
  return { refs, packStart: pos };
}

function parsePack(bytes: Uint8Array, start: number): Map<number, RawObject> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (decoder.decode(bytes.subarray(start, start + 4)) !== "PACK") throw new GitBundleError("bundle holds no packfile");
  const version = view.getUint32(start + 4);
  if (version !== 2 && version !== 3) throw new GitBundleError(`unsupported pack version ${version}`);
  const count = view.getUint32(start + 8);
  const objects = new Map<number, RawObject>();
  let pos = start + 12;
  for (let i = 0; i < count; i++) {
    const offset = pos;
    let byte = bytes[pos++] as number;
    const type = (byte >> 4) & 7;
    while (byte & 0x80) byte = bytes[pos++] as number; // size; the inflated length says it too
    let baseOffset: number | undefined;
    let baseId: string | undefined;
    if (type === OBJ_OFS_DELTA) {
      byte = bytes[pos++] as number;
      let distance = byte & 0x7f;
      while (byte & 0x80) {
        byte = bytes[pos++] as number;
        distance = ((distance + 1) << 7) | (byte & 0x7f);
      }
      baseOffset = offset - distance;
    } else if (type === OBJ_REF_DELTA) {
      baseId = Buffer.from(bytes.subarray(pos, pos + 20)).toString("hex");
      pos += 20;
    } else if (TYPE_NAMES[type] === undefined) {
      throw new GitBundleError(`unknown pack object type ${type} at offset ${offset}`);
    }
    if (pos >= bytes.length) throw new GitBundleError("truncated packfile");
    // `info` reports how many compressed bytes the stream used, which is where the next object starts.
    const inflated = inflateSync(bytes.subarray(pos), { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    pos += inflated.engine.bytesWritten;
    objects.set(offset, { type, data: new Uint8Array(inflated.buffer), baseOffset, baseId });
  }
  return objects;
}

function readVarint(data: Uint8Array, start: number): [number, number] {
  let value = 0;
  let shift = 0;
  let pos = start;
  for (;;) {
    const byte = data[pos++] as number;
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(byte & 0x80)) return [value, pos];
  }
}

function applyDelta(base: Uint8Array, delta: Uint8Array): Uint8Array {
  const [baseSize, afterBase] = readVarint(delta, 0);
  if (baseSize !== base.length) throw new GitBundleError("delta does not fit its base");
  const [size, start] = readVarint(delta, afterBase);
  const out = new Uint8Array(size);
  let pos = start;
  let written = 0;
  while (pos < delta.length) {
    const op = delta[pos++] as number;
    if (op & 0x80) {
      let copyOffset = 0;
      let copySize = 0;
      for (let bit = 0; bit < 4; bit++) if (op & (1 << bit)) copyOffset |= (delta[pos++] as number) << (8 * bit);
      for (let bit = 0; bit < 3; bit++) if (op & (0x10 << bit)) copySize |= (delta[pos++] as number) << (8 * bit);
      if (copySize === 0) copySize = 0x10000;
      copyOffset >>>= 0;
      out.set(base.subarray(copyOffset, copyOffset + copySize), written);
      written += copySize;
    } else if (op !== 0) {
      out.set(delta.subarray(pos, pos + op), written);
      pos += op;
      written += op;
    } else {
      throw new GitBundleError("invalid delta instruction 0");
    }
  }
  if (written !== size) throw new GitBundleError("delta produced the wrong size");
  return out;
}

function objectId(type: number, data: Uint8Array): string {
  return createHash("sha1").update(`${TYPE_NAMES[type]} ${data.length}\0`).update(data).digest("hex");
}

/** Entry name → object id of one tree object. */
function readTree(data: Uint8Array): Map<string, string> {
  const entries = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    const nul = data.indexOf(0, space);
    if (space === -1 || nul === -1) throw new GitBundleError("malformed tree object");
    const name = decoder.decode(data.subarray(space + 1, nul));
    entries.set(name, Buffer.from(data.subarray(nul + 1, nul + 21)).toString("hex"));
    pos = nul + 21;
  }
  return entries;
}
