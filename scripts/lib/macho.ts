// Checks Mach-O code signatures without Apple's tools, so a release built on Linux can prove that
// what it ships for macOS will run: Apple Silicon kills any process that maps an unsigned page,
// and the kernel checks every page against the hash in the signature's CodeDirectory. We parse
// the LC_CODE_SIGNATURE blob, recompute every page hash and every special-slot hash (requirements,
// entitlements), and require the signature to cover the file up to where the signature starts.
// An ad-hoc signature (no certificate) is enough to run; a CMS blob, if present, is not verified.

const MH_MAGIC = 0xfeedface;
const MH_MAGIC_64 = 0xfeedfacf;
const FAT_MAGIC = 0xcafebabe;
const FAT_MAGIC_64 = 0xcafebabf;
const LC_CODE_SIGNATURE = 0x1d;
const LC_SEGMENT_64 = 0x19;

const CSMAGIC_EMBEDDED_SIGNATURE = 0xfade0cc0;
const CSMAGIC_CODEDIRECTORY = 0xfade0c02;
const CSSLOT_CODEDIRECTORY = 0;
const CSSLOT_ALTERNATE_CODEDIRECTORIES = 0x1000;
const CS_ADHOC = 0x2;

const HASH_TYPES: Record<number, { algorithm: string; size: number }> = {
  1: { algorithm: "sha1", size: 20 },
  2: { algorithm: "sha256", size: 32 },
  3: { algorithm: "sha256", size: 20 }, // SHA-256 truncated to 20 bytes
  4: { algorithm: "sha384", size: 48 },
};

const CPU_NAMES: Record<number, string> = { 7: "i386", 0x01000007: "x86_64", 12: "arm", 0x0100000c: "arm64" };

export class MachOSignatureError extends Error {
  override name = "MachOSignatureError";
}

export interface CodeDirectoryCheck {
  hashType: string;
  pages: number;
  pageSize: number;
}

export interface SliceSignature {
  arch: string;
  identifier: string;
  adhoc: boolean;
  codeDirectories: CodeDirectoryCheck[];
}

/** True for thin and universal Mach-O files. */
export function isMachO(bytes: Uint8Array): boolean {
  if (bytes.length < 4) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = view.getUint32(0, true);
  const be = view.getUint32(0, false);
  return le === MH_MAGIC || le === MH_MAGIC_64 || be === FAT_MAGIC || be === FAT_MAGIC_64;
}

/**
 * Verifies the signature of every slice of a Mach-O file. Throws MachOSignatureError when a slice
 * is unsigned, a hash does not match, or the signature does not cover the code.
 */
export function verifyMachOSignature(bytes: Uint8Array, label = "file"): SliceSignature[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8) throw new MachOSignatureError(`${label}: too short to be Mach-O`);
  const be = view.getUint32(0, false);
  if (be === FAT_MAGIC || be === FAT_MAGIC_64) {
    const wide = be === FAT_MAGIC_64;
    const count = view.getUint32(4, false);
    const slices: SliceSignature[] = [];
    for (let i = 0; i < count; i++) {
      const at = 8 + i * (wide ? 32 : 20);
      const offset = wide ? Number(view.getBigUint64(at + 8, false)) : view.getUint32(at + 8, false);
      const size = wide ? Number(view.getBigUint64(at + 16, false)) : view.getUint32(at + 12, false);
      if (offset + size > bytes.length) throw new MachOSignatureError(`${label}: universal slice ${i} lies outside the file`);
      slices.push(verifySlice(bytes.subarray(offset, offset + size), label));
    }
    return slices;
  }
  return [verifySlice(bytes, label)];
}

function verifySlice(slice: Uint8Array, label: string): SliceSignature {
  const view = new DataView(slice.buffer, slice.byteOffset, slice.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== MH_MAGIC && magic !== MH_MAGIC_64) throw new MachOSignatureError(`${label}: not a Mach-O file`);
  const arch = CPU_NAMES[view.getUint32(4, true)] ?? `cpu ${view.getUint32(4, true)}`;
  const where = `${label} (${arch})`;
  const ncmds = view.getUint32(16, true);
  let cursor = magic === MH_MAGIC_64 ? 32 : 28;
  let signature: { offset: number; size: number } | undefined;
  let linkedit: { offset: number; size: number } | undefined;
  for (let i = 0; i < ncmds; i++) {
    if (cursor + 8 > slice.length) throw new MachOSignatureError(`${where}: load commands run past the end of the file`);
    const cmd = view.getUint32(cursor, true);
    const size = view.getUint32(cursor + 4, true);
    if (cmd === LC_CODE_SIGNATURE) signature = { offset: view.getUint32(cursor + 8, true), size: view.getUint32(cursor + 12, true) };
    if (cmd === LC_SEGMENT_64 && segmentName(slice, cursor) === "__LINKEDIT") {
      linkedit = { offset: Number(view.getBigUint64(cursor + 40, true)), size: Number(view.getBigUint64(cursor + 48, true)) };
    }
    if (size < 8) throw new MachOSignatureError(`${where}: malformed load command`);
    cursor += size;
  }
  if (signature === undefined) throw new MachOSignatureError(`${where}: not code-signed (no LC_CODE_SIGNATURE); macOS on Apple Silicon refuses to run it`);
  if (signature.offset + signature.size > slice.length) throw new MachOSignatureError(`${where}: code signature lies outside the file`);
  // dyld refuses a signature that its __LINKEDIT segment does not map.
  if (linkedit !== undefined && (signature.offset < linkedit.offset || signature.offset + signature.size > linkedit.offset + linkedit.size)) {
    throw new MachOSignatureError(`${where}: code signature lies outside the __LINKEDIT segment`);
  }

  const blob = slice.subarray(signature.offset, signature.offset + signature.size);
  const sv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (sv.getUint32(0, false) !== CSMAGIC_EMBEDDED_SIGNATURE) throw new MachOSignatureError(`${where}: code signature is not an embedded signature SuperBlob`);
  const count = sv.getUint32(8, false);
  const blobs = new Map<number, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const type = sv.getUint32(12 + i * 8, false);
    const offset = sv.getUint32(16 + i * 8, false);
    if (offset + 8 > blob.length) throw new MachOSignatureError(`${where}: signature index points outside the signature`);
    const length = sv.getUint32(offset + 4, false);
    if (offset + length > blob.length) throw new MachOSignatureError(`${where}: signature blob ${type} runs past the signature`);
    blobs.set(type, blob.subarray(offset, offset + length));
  }

  const directories = [...blobs.entries()]
    .filter(([type]) => type === CSSLOT_CODEDIRECTORY || (type >= CSSLOT_ALTERNATE_CODEDIRECTORIES && type < CSSLOT_ALTERNATE_CODEDIRECTORIES + 5))
    .map(([, data]) => data);
  if (directories.length === 0) throw new MachOSignatureError(`${where}: code signature has no CodeDirectory`);

  let identifier = "";
  let adhoc = false;
  const checks: CodeDirectoryCheck[] = [];
  for (const cd of directories) {
    const result = verifyCodeDirectory(cd, slice, signature.offset, blobs, where);
    identifier = result.identifier;
    adhoc ||= result.adhoc;
    checks.push(result.check);
  }
  return { arch, identifier, adhoc, codeDirectories: checks };
}

function verifyCodeDirectory(
  cd: Uint8Array,
  slice: Uint8Array,
  signatureOffset: number,
  blobs: Map<number, Uint8Array>,
  where: string,
): { identifier: string; adhoc: boolean; check: CodeDirectoryCheck } {
  const v = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  if (v.getUint32(0, false) !== CSMAGIC_CODEDIRECTORY) throw new MachOSignatureError(`${where}: malformed CodeDirectory`);
  const version = v.getUint32(8, false);
  const flags = v.getUint32(12, false);
  const hashOffset = v.getUint32(16, false);
  const identOffset = v.getUint32(20, false);
  const nSpecialSlots = v.getUint32(24, false);
  const nCodeSlots = v.getUint32(28, false);
  let codeLimit = v.getUint32(32, false);
  const hashSize = v.getUint8(36);
  const hashType = v.getUint8(37);
  const pageShift = v.getUint8(39);
  if (version >= 0x20300 && cd.length >= 64) {
    const limit64 = Number(v.getBigUint64(56, false));
    if (limit64 !== 0) codeLimit = limit64;
  }
  const hash = HASH_TYPES[hashType];
  if (hash === undefined || hash.size !== hashSize) throw new MachOSignatureError(`${where}: unsupported code hash type ${hashType}/${hashSize}`);
  if (codeLimit !== signatureOffset) {
    throw new MachOSignatureError(`${where}: signature covers ${codeLimit} bytes but the code runs to ${signatureOffset}; the file was changed after signing`);
  }
  const identEnd = cd.indexOf(0, identOffset);
  const identifier = new TextDecoder().decode(cd.subarray(identOffset, identEnd === -1 ? undefined : identEnd));
  const digest = (data: Uint8Array): Uint8Array => new Bun.CryptoHasher(hash.algorithm as "sha256").update(data).digest().subarray(0, hashSize);
  const slot = (index: number): Uint8Array => cd.subarray(hashOffset + index * hashSize, hashOffset + (index + 1) * hashSize);

  const pageSize = pageShift === 0 ? codeLimit : 2 ** pageShift;
  const expectedSlots = Math.ceil(codeLimit / pageSize);
  if (nCodeSlots !== expectedSlots) throw new MachOSignatureError(`${where}: CodeDirectory has ${nCodeSlots} page hashes, the code needs ${expectedSlots}`);
  for (let page = 0; page < nCodeSlots; page++) {
    const start = page * pageSize;
    const actual = digest(slice.subarray(start, Math.min(start + pageSize, codeLimit)));
    if (!equalBytes(actual, slot(page))) {
      throw new MachOSignatureError(`${where}: page ${page} (offset ${start}) does not match its signed hash; macOS would kill the process`);
    }
  }
  // Special slots hash other blobs of the signature (requirements = 2, entitlements = 5, …),
  // stored at negative indexes; an all-zero hash means "no such blob".
  for (let special = 1; special <= nSpecialSlots; special++) {
    const expected = slot(-special);
    const present = blobs.get(special);
    if (present === undefined) {
      if (expected.some((byte) => byte !== 0) && special !== 1 && special !== 3) {
        throw new MachOSignatureError(`${where}: signature names special slot ${special} but carries no such blob`);
      }
      continue;
    }
    if (!equalBytes(digest(present), expected)) throw new MachOSignatureError(`${where}: special slot ${special} hash does not match its blob`);
  }
  return {
    identifier,
    adhoc: (flags & CS_ADHOC) !== 0,
    check: { hashType: hash.algorithm + (hash.size === 20 && hash.algorithm === "sha256" ? "-truncated" : ""), pages: nCodeSlots, pageSize },
  };
}

function segmentName(bytes: Uint8Array, command: number): string {
  const raw = bytes.subarray(command + 8, command + 24);
  const end = raw.indexOf(0);
  return new TextDecoder().decode(end === -1 ? raw : raw.subarray(0, end));
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const CSMAGIC_REQUIREMENTS = 0xfade0c01;
const CSSLOT_REQUIREMENTS = 2;
const CS_EXECSEG_MAIN_BINARY = 0x1;
const MH_EXECUTE = 2;
const CPU_TYPE_ARM64 = 0x0100000c;
const CD_VERSION = 0x20400;
const CD_HEADER_SIZE = 88;
const SIGN_PAGE_SHIFT = 12;

/**
 * Replaces the code signature of a thin 64-bit Mach-O with an ad-hoc one, the same shape
 * `codesign -s -` writes: a SHA-256 CodeDirectory over 4 KiB pages plus an empty requirements set.
 * Used where what we ship carries no signature (node-llama-cpp's Intel Mac binaries) or a stale one
 * (Bun's darwin-x64 runtime keeps Oven's signature after `--compile` appends the app, so every hash
 * past the append point is wrong). The signature goes at the end of __LINKEDIT, which is grown to
 * map it; a file without room for one more load command is refused rather than rewritten.
 */
export function adhocSign(input: Uint8Array, identifier: string): Uint8Array {
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  if (view.getUint32(0, true) !== MH_MAGIC_64) throw new MachOSignatureError(`${identifier}: only thin 64-bit Mach-O files can be signed`);
  const cpu = view.getUint32(4, true);
  const fileType = view.getUint32(12, true);
  const ncmds = view.getUint32(16, true);
  const sizeofcmds = view.getUint32(20, true);
  let cursor = 32;
  let signatureCommand: number | undefined;
  let linkeditCommand: number | undefined;
  let text: { offset: number; size: number } | undefined;
  let firstSectionOffset = Number.POSITIVE_INFINITY;
  for (let i = 0; i < ncmds; i++) {
    const cmd = view.getUint32(cursor, true);
    const size = view.getUint32(cursor + 4, true);
    if (cmd === LC_CODE_SIGNATURE) signatureCommand = cursor;
    if (cmd === LC_SEGMENT_64) {
      const name = segmentName(input, cursor);
      if (name === "__LINKEDIT") linkeditCommand = cursor;
      if (name === "__TEXT") text = { offset: Number(view.getBigUint64(cursor + 40, true)), size: Number(view.getBigUint64(cursor + 48, true)) };
      const sections = view.getUint32(cursor + 64, true);
      for (let s = 0; s < sections; s++) {
        const sectionOffset = view.getUint32(cursor + 72 + s * 80 + 48, true);
        if (sectionOffset > 0) firstSectionOffset = Math.min(firstSectionOffset, sectionOffset);
      }
    }
    cursor += size;
  }
  if (linkeditCommand === undefined) throw new MachOSignatureError(`${identifier}: no __LINKEDIT segment to hold a signature`);
  const linkeditOffset = Number(view.getBigUint64(linkeditCommand + 40, true));
  const codeEnd = signatureCommand === undefined ? input.length : view.getUint32(signatureCommand + 8, true);
  if (signatureCommand === undefined && 32 + sizeofcmds + 16 > firstSectionOffset) {
    throw new MachOSignatureError(`${identifier}: no room for a code signature load command`);
  }
  const signatureOffset = Math.ceil(codeEnd / 16) * 16;
  const pageSize = 2 ** SIGN_PAGE_SHIFT;
  const codeSlots = Math.ceil(signatureOffset / pageSize);
  const ident = new TextEncoder().encode(`${identifier}\0`);
  const specialSlots = CSSLOT_REQUIREMENTS;
  const hashOffset = CD_HEADER_SIZE + ident.length + specialSlots * 32;
  const cdLength = hashOffset + codeSlots * 32;
  const requirementsLength = 12;
  const superHeader = 12 + 2 * 8;
  const signatureSize = superHeader + cdLength + requirementsLength;

  // Everything before the signature, with the load commands updated to describe it.
  const out = new Uint8Array(signatureOffset + signatureSize);
  out.set(input.subarray(0, Math.min(codeEnd, input.length)));
  const ov = new DataView(out.buffer);
  const commandAt = signatureCommand ?? 32 + sizeofcmds;
  if (signatureCommand === undefined) {
    ov.setUint32(16, ncmds + 1, true);
    ov.setUint32(20, sizeofcmds + 16, true);
    ov.setUint32(commandAt, LC_CODE_SIGNATURE, true);
    ov.setUint32(commandAt + 4, 16, true);
  }
  ov.setUint32(commandAt + 8, signatureOffset, true);
  ov.setUint32(commandAt + 12, signatureSize, true);
  const linkeditFileSize = signatureOffset + signatureSize - linkeditOffset;
  const segmentAlign = cpu === CPU_TYPE_ARM64 ? 16384 : 4096;
  const vmSize = Math.max(Number(ov.getBigUint64(linkeditCommand + 32, true)), Math.ceil(linkeditFileSize / segmentAlign) * segmentAlign);
  ov.setBigUint64(linkeditCommand + 48, BigInt(linkeditFileSize), true);
  ov.setBigUint64(linkeditCommand + 32, BigInt(vmSize), true);

  const requirements = new Uint8Array(requirementsLength);
  const rv = new DataView(requirements.buffer);
  rv.setUint32(0, CSMAGIC_REQUIREMENTS, false);
  rv.setUint32(4, requirementsLength, false);

  const cd = new Uint8Array(cdLength);
  const cv = new DataView(cd.buffer);
  cv.setUint32(0, CSMAGIC_CODEDIRECTORY, false);
  cv.setUint32(4, cdLength, false);
  cv.setUint32(8, CD_VERSION, false);
  cv.setUint32(12, CS_ADHOC, false);
  cv.setUint32(16, hashOffset, false);
  cv.setUint32(20, CD_HEADER_SIZE, false);
  cv.setUint32(24, specialSlots, false);
  cv.setUint32(28, codeSlots, false);
  cv.setUint32(32, signatureOffset, false);
  cv.setUint8(36, 32);
  cv.setUint8(37, 2); // SHA-256
  cv.setUint8(39, SIGN_PAGE_SHIFT);
  cv.setBigUint64(64, BigInt(text?.offset ?? 0), false);
  cv.setBigUint64(72, BigInt(text?.size ?? 0), false);
  cv.setBigUint64(80, BigInt(fileType === MH_EXECUTE ? CS_EXECSEG_MAIN_BINARY : 0), false);
  cd.set(ident, CD_HEADER_SIZE);
  const sha256 = (data: Uint8Array): Uint8Array => new Bun.CryptoHasher("sha256").update(data).digest();
  cd.set(sha256(requirements), hashOffset - CSSLOT_REQUIREMENTS * 32);
  for (let page = 0; page < codeSlots; page++) {
    const start = page * pageSize;
    cd.set(sha256(out.subarray(start, Math.min(start + pageSize, signatureOffset))), hashOffset + page * 32);
  }

  const sv = new DataView(out.buffer, signatureOffset, signatureSize);
  sv.setUint32(0, CSMAGIC_EMBEDDED_SIGNATURE, false);
  sv.setUint32(4, signatureSize, false);
  sv.setUint32(8, 2, false);
  sv.setUint32(12, CSSLOT_CODEDIRECTORY, false);
  sv.setUint32(16, superHeader, false);
  sv.setUint32(20, CSSLOT_REQUIREMENTS, false);
  sv.setUint32(24, superHeader + cdLength, false);
  out.set(cd, signatureOffset + superHeader);
  out.set(requirements, signatureOffset + superHeader + cdLength);
  return out;
}

/** The file, ad-hoc signed unless it already carries a valid signature. */
export function ensureSigned(bytes: Uint8Array, identifier: string): { bytes: Uint8Array; signed: boolean } {
  try {
    verifyMachOSignature(bytes, identifier);
    return { bytes, signed: false };
  } catch (err) {
    if (!(err instanceof MachOSignatureError)) throw err;
    return { bytes: adhocSign(bytes, identifier), signed: true };
  }
}
