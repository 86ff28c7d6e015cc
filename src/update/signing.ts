// Ed25519 signatures over release metadata (manifest.json, SHA256SUMS, engine bundles).
//
// Keys: the private key is a PKCS#8 PEM file that stays with whoever publishes releases; public
// keys are SPKI, written as PEM files and built into the executable as base64 DER (44 bytes for
// Ed25519). A key's id is the first 16 hex digits of the SHA-256 of its DER form.
//
// A signature file ("<file>.sig") is one line of text, easy to produce and to check from sh:
//
//   lmx-signature-v1 ed25519 <key id> <base64 of the 64-byte signature over the file's bytes>
//
// install.sh checks the same signature with `openssl pkeyutl -verify -rawin`.

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { SignatureError } from "../errors.ts";

// Injected by scripts/release.ts with `--define` (a JSON array of base64 SPKI keys); none in dev builds.
declare const LMX_BUILD_PUBLIC_KEYS: string | undefined;

const SIGNATURE_PREFIX = "lmx-signature-v1";

export interface PublicKeyInfo {
  id: string;
  /** base64 of the SPKI DER encoding. */
  spki: string;
  key: KeyObject;
}

function keyIdOf(spkiDer: Uint8Array): string {
  return createHash("sha256").update(spkiDer).digest("hex").slice(0, 16);
}

/** Reads a public key given as PEM or as base64 SPKI DER; only Ed25519 keys are accepted. */
export function parsePublicKey(text: string): PublicKeyInfo {
  const trimmed = text.trim();
  let key: KeyObject;
  try {
    key = trimmed.startsWith("-----BEGIN")
      ? createPublicKey(trimmed)
      : createPublicKey({ key: Buffer.from(trimmed, "base64"), format: "der", type: "spki" });
  } catch (err) {
    throw new SignatureError(`not a public key: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new SignatureError(`release keys must be Ed25519, got ${key.asymmetricKeyType}`);
  const der = key.export({ type: "spki", format: "der" });
  return { id: keyIdOf(der), spki: der.toString("base64"), key };
}

/** Reads an Ed25519 private key (PKCS#8 PEM) and derives its public half. */
export function parsePrivateKey(pem: string): { key: KeyObject; publicKey: PublicKeyInfo } {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new SignatureError(`not a private key: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new SignatureError(`release keys must be Ed25519, got ${key.asymmetricKeyType}`);
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  return { key, publicKey: parsePublicKey(spki.toString("base64")) };
}

/** A fresh key pair as PEM text. */
export function generateKeyPair(): { privatePem: string; publicPem: string; id: string } {
  const pair = generateKeyPairSync("ed25519");
  const publicPem = pair.publicKey.export({ type: "spki", format: "pem" }).toString();
  return { privatePem: pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicPem, id: parsePublicKey(publicPem).id };
}

/** The contents of `<file>.sig` for `data`. */
export function signDetached(data: Uint8Array, privateKey: KeyObject): string {
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const signature = sign(null, data, privateKey).toString("base64");
  return `${SIGNATURE_PREFIX} ed25519 ${keyIdOf(spki)} ${signature}\n`;
}

/**
 * Checks `signatureText` (a `.sig` file) over `data` against the trusted keys and returns the id
 * of the key that signed. Every failure is a SignatureError naming what was wrong.
 */
export function verifyDetached(data: Uint8Array, signatureText: string, trusted: readonly PublicKeyInfo[], what: string): string {
  if (trusted.length === 0) {
    throw new SignatureError(`cannot verify ${what}: this lmx build has no release keys (development builds cannot update themselves)`);
  }
  const parts = signatureText.trim().split(/\s+/);
  if (parts.length !== 4 || parts[0] !== SIGNATURE_PREFIX || parts[1] !== "ed25519") {
    throw new SignatureError(`the signature of ${what} is malformed (expected "${SIGNATURE_PREFIX} ed25519 <key id> <signature>")`);
  }
  const [, , id, encoded] = parts as [string, string, string, string];
  const key = trusted.find((candidate) => candidate.id === id);
  if (key === undefined) {
    throw new SignatureError(`${what} is signed by key ${id}, which this lmx does not trust (trusted: ${trusted.map((k) => k.id).join(", ")})`);
  }
  const signature = Buffer.from(encoded, "base64");
  if (signature.length !== 64 || !verify(null, data, key.key, signature)) {
    throw new SignatureError(`the signature of ${what} does not match its contents (tampered with or corrupted)`);
  }
  return id;
}

function builtInKeys(): PublicKeyInfo[] {
  if (typeof LMX_BUILD_PUBLIC_KEYS !== "string") return [];
  const list = JSON.parse(LMX_BUILD_PUBLIC_KEYS) as unknown;
  if (!Array.isArray(list)) return [];
  return list.filter((item): item is string => typeof item === "string").map(parsePublicKey);
}

/** Keys this executable trusts for updates: one, or two while a key is being rotated. */
export const BUILTIN_PUBLIC_KEYS: readonly PublicKeyInfo[] = builtInKeys();
