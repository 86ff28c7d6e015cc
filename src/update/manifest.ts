// The release manifest: one signed JSON file at the top of the release folder that lists every
// published version of lmx, the latest one per channel, and every published engine bundle with the
// model architectures its llama.cpp supports. URLs inside are relative to the manifest, so the
// folder can be copied to any static host (or mirror) unchanged.
//
//   <base>/manifest.json, <base>/manifest.json.sig
//   <base>/<version>/lmx-<os>-<arch>.tar.gz, engine-llama.cpp-<nlc>-<os>-<arch>.tar.gz, SHA256SUMS(.sig)
//   <base>/engines/llama.cpp/<nlc>/…   (engine bundles published without an app release)
//   <base>/install.sh

import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { SignatureError, UpdateError } from "../errors.ts";
import { type PublicKeyInfo, verifyDetached } from "./signing.ts";

// Injected by scripts/release.ts; dev builds have no default and need LMX_UPDATE_BASE_URL.
declare const LMX_BUILD_UPDATE_URL: string | undefined;

export const MANIFEST_SCHEMA = 1;
export const MANIFEST_FILE = "manifest.json";
export const ENGINE_FAMILY = "llama.cpp";

const Sha256 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "must be a lowercase hex sha256"));

export const Artifact = v.object({
  /** Relative to the manifest's URL. */
  url: v.pipe(v.string(), v.minLength(1)),
  size: v.pipe(v.number(), v.integer(), v.minValue(1)),
  sha256: Sha256,
});
export type Artifact = v.InferOutput<typeof Artifact>;

export const AppRelease = v.looseObject({
  version: v.string(),
  channel: v.string(),
  date: v.string(),
  /** The engine bundle embedded in this release's executables. */
  engine: v.object({ name: v.string(), version: v.string() }),
  platforms: v.record(v.string(), Artifact),
});
export type AppRelease = v.InferOutput<typeof AppRelease>;

export const EngineRelease = v.looseObject({
  nodeLlamaCpp: v.string(),
  llamaCpp: v.string(),
  date: v.string(),
  /** `general.architecture` values this llama.cpp release can load, read from its source. */
  architectures: v.array(v.string()),
  platforms: v.record(v.string(), Artifact),
});
export type EngineRelease = v.InferOutput<typeof EngineRelease>;

export const Manifest = v.looseObject({
  schema: v.number(),
  product: v.literal("lmx"),
  updated: v.string(),
  latest: v.record(v.string(), v.string()),
  releases: v.record(v.string(), AppRelease),
  engines: v.record(v.string(), v.record(v.string(), EngineRelease)),
});
export type Manifest = v.InferOutput<typeof Manifest>;

export function emptyManifest(): Manifest {
  return { schema: MANIFEST_SCHEMA, product: "lmx", updated: new Date(0).toISOString(), latest: {}, releases: {}, engines: { [ENGINE_FAMILY]: {} } };
}

/** Parses manifest bytes that were already verified. */
export function parseManifest(bytes: Uint8Array, source: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new UpdateError(`${source} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  const schema = typeof raw === "object" && raw !== null ? (raw as { schema?: unknown }).schema : undefined;
  if (typeof schema === "number" && schema > MANIFEST_SCHEMA) {
    throw new UpdateError(`${source} uses manifest format ${schema}, newer than this lmx understands (${MANIFEST_SCHEMA}); reinstall with install.sh`);
  }
  const parsed = v.safeParse(Manifest, raw);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new UpdateError(`${source} is not a valid release manifest: ${v.getDotPath(issue) ?? "(root)"}: ${issue.message}`);
  }
  return parsed.output;
}

/** The base URL releases are fetched from: LMX_UPDATE_BASE_URL, else the one built in. */
export function updateBaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.LMX_UPDATE_BASE_URL?.trim();
  const base = fromEnv || (typeof LMX_BUILD_UPDATE_URL === "string" ? LMX_BUILD_UPDATE_URL : "");
  if (base === "") throw new UpdateError("this lmx build has no update URL; set LMX_UPDATE_BASE_URL to the release folder's URL");
  return base.replace(/\/+$/, "");
}

/** Absolute URL of an artifact listed in the manifest at `baseUrl`. */
export function artifactUrl(baseUrl: string, artifact: Artifact): string {
  return new URL(artifact.url, `${baseUrl}/`).href;
}

const FETCH_TIMEOUT_MS = 60_000;
const MAX_METADATA_BYTES = 16 * 1024 * 1024;

/** GETs a small file (manifest, signature); undefined for 404, an UpdateError for anything else. */
export async function fetchSmall(url: string): Promise<Uint8Array | undefined> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: "follow" });
  } catch (err) {
    throw new UpdateError(`cannot reach ${url}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (res.status === 404) return undefined;
  if (!res.ok) throw new UpdateError(`GET ${url} answered ${res.status} ${res.statusText}`);
  const length = Number(res.headers.get("content-length") ?? "0");
  if (length > MAX_METADATA_BYTES) throw new UpdateError(`${url} is ${length} bytes, too large for release metadata`);
  try {
    return new Uint8Array(await res.arrayBuffer());
  } catch (err) {
    throw new UpdateError(`download of ${url} failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export interface VerifiedManifest {
  manifest: Manifest;
  baseUrl: string;
  keyId: string;
}

/**
 * Fetches `<base>/manifest.json` and its signature, verifies it with `keys`, and caches both under
 * $LMX_HOME/cache so later commands (and the "architecture not supported" hint) can use it offline.
 */
export async function fetchManifest(baseUrl: string, keys: readonly PublicKeyInfo[], lmxHome: string): Promise<VerifiedManifest> {
  const url = `${baseUrl}/${MANIFEST_FILE}`;
  const bytes = await fetchSmall(url);
  if (bytes === undefined) throw new UpdateError(`no release manifest at ${url}`);
  const signature = await fetchSmall(`${url}.sig`);
  if (signature === undefined) throw new SignatureError(`${url} has no signature (${url}.sig is missing); refusing to trust it`);
  const keyId = verifyDetached(bytes, new TextDecoder().decode(signature), keys, url);
  const manifest = parseManifest(bytes, url);
  await cacheManifest(lmxHome, bytes, signature, baseUrl).catch(() => undefined);
  return { manifest, baseUrl, keyId };
}

function cacheDir(lmxHome: string): string {
  return join(lmxHome, "cache");
}

async function cacheManifest(lmxHome: string, bytes: Uint8Array, signature: Uint8Array, baseUrl: string): Promise<void> {
  const dir = cacheDir(lmxHome);
  await mkdir(dir, { recursive: true });
  const write = async (name: string, data: Uint8Array | string): Promise<void> => {
    const temp = join(dir, `.${name}.tmp-${process.pid}`);
    await writeFile(temp, data);
    await rename(temp, join(dir, name));
  };
  // The signature is cached too and checked again on every read: the cache is only a copy.
  await write(MANIFEST_FILE, bytes);
  await write(`${MANIFEST_FILE}.sig`, signature);
  await write("manifest-source.txt", `${baseUrl}\n`);
}

/** The last manifest fetched, if it is still there and still verifies; never touches the network. */
export async function readCachedManifest(lmxHome: string, keys: readonly PublicKeyInfo[]): Promise<VerifiedManifest | undefined> {
  const dir = cacheDir(lmxHome);
  try {
    const [bytes, signature, source] = await Promise.all([
      readFile(join(dir, MANIFEST_FILE)),
      readFile(join(dir, `${MANIFEST_FILE}.sig`), "utf8"),
      readFile(join(dir, "manifest-source.txt"), "utf8"),
    ]);
    const keyId = verifyDetached(bytes, signature, keys, "the cached release manifest");
    return { manifest: parseManifest(bytes, "the cached release manifest"), baseUrl: source.trim(), keyId };
  } catch {
    return undefined;
  }
}
