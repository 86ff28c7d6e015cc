// Which llama.cpp engine bundle LMX uses. Bundles live side by side under
// $LMX_HOME/engines/llama.cpp/<nodeLlamaCppVersion>-<target>/ (the one embedded in the executable
// is unpacked there too); `current.json` in that folder names the selected version. The file is
// replaced with a rename, so a reader sees the old or the new selection, never half of one, and no
// selection (the file missing) means the embedded engine.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ENGINE_MARKER_FILE, type EngineMarker } from "./bundle.ts";

const SELECTION_FILE = "current.json";

export interface EngineSelection {
  /** node-llama-cpp version of the selected bundle. */
  version: string;
  selectedAt: string;
}

export interface InstalledEngine {
  version: string;
  target: string;
  dir: string;
  sha256: string;
  /** llama.cpp release the bundle's binaries were built from, e.g. "b6000" or "v0.4.0". */
  llamaCpp: string | undefined;
}

export function enginesRoot(lmxHome: string): string {
  return join(lmxHome, "engines", "llama.cpp");
}

export function readSelection(lmxHome: string): EngineSelection | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(join(enginesRoot(lmxHome), SELECTION_FILE), "utf8"));
    const version = typeof parsed === "object" && parsed !== null ? (parsed as { version?: unknown }).version : undefined;
    if (typeof version !== "string" || version === "") return undefined;
    const selectedAt = (parsed as { selectedAt?: unknown }).selectedAt;
    return { version, selectedAt: typeof selectedAt === "string" ? selectedAt : "" };
  } catch {
    return undefined;
  }
}

/** Atomically points `current.json` at `version`. */
export async function writeSelection(lmxHome: string, version: string): Promise<void> {
  const root = enginesRoot(lmxHome);
  await mkdir(root, { recursive: true });
  const temp = join(root, `.${SELECTION_FILE}.tmp-${process.pid}`);
  const selection: EngineSelection = { version, selectedAt: new Date().toISOString() };
  try {
    await writeFile(temp, `${JSON.stringify(selection, null, 2)}\n`);
    await rename(temp, join(root, SELECTION_FILE));
  } finally {
    await rm(temp, { force: true });
  }
}

/** The llama.cpp release recorded in a node-llama-cpp package folder. */
export function llamaCppReleaseOf(nodeLlamaCppDir: string): string | undefined {
  try {
    const info: unknown = JSON.parse(readFileSync(join(nodeLlamaCppDir, "llama", "llama.cpp.info.json"), "utf8"));
    const tag = typeof info === "object" && info !== null ? (info as { tag?: unknown }).tag : undefined;
    return typeof tag === "string" ? tag : undefined;
  } catch {
    return undefined;
  }
}

function readMarker(dir: string): EngineMarker | undefined {
  try {
    const marker: unknown = JSON.parse(readFileSync(join(dir, ENGINE_MARKER_FILE), "utf8"));
    if (typeof marker !== "object" || marker === null || typeof (marker as { sha256?: unknown }).sha256 !== "string") return undefined;
    return marker as EngineMarker;
  } catch {
    return undefined;
  }
}

/** A complete (marker-carrying) engine folder for `version` on `target`, if one is installed. */
export function installedEngine(lmxHome: string, version: string, target: string): InstalledEngine | undefined {
  const dir = join(enginesRoot(lmxHome), `${version}-${target}`);
  const marker = readMarker(dir);
  if (marker === undefined) return undefined;
  return { version, target, dir, sha256: marker.sha256, llamaCpp: llamaCppReleaseOf(join(dir, "node_modules", "node-llama-cpp")) };
}

/** Every complete engine folder for `target`, newest version first. */
export function listInstalledEngines(lmxHome: string, target: string): InstalledEngine[] {
  const root = enginesRoot(lmxHome);
  if (!existsSync(root)) return [];
  const suffix = `-${target}`;
  const found: InstalledEngine[] = [];
  for (const name of readdirSync(root)) {
    if (name.startsWith(".") || !name.endsWith(suffix)) continue;
    const engine = installedEngine(lmxHome, name.slice(0, -suffix.length), target);
    if (engine !== undefined) found.push(engine);
  }
  return found.sort((a, b) => compareVersions(b.version, a.version));
}

/**
 * Orders versions like "1.2.3", "1.2.3-beta.1" and "1.10.0": numeric parts numerically, and a
 * pre-release before its release. Returns <0, 0 or >0.
 */
export function compareVersions(a: string, b: string): number {
  const split = (version: string): { core: number[]; pre: string[] } => {
    const [core = "", ...pre] = version.replace(/^v/, "").split("+")[0]?.split("-") ?? [];
    return { core: core.split(".").map((part) => Number.parseInt(part, 10) || 0), pre: pre.join("-") === "" ? [] : pre.join("-").split(".") };
  };
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < Math.max(x.core.length, y.core.length); i++) {
    const diff = (x.core[i] ?? 0) - (y.core[i] ?? 0);
    if (diff !== 0) return diff;
  }
  if (x.pre.length === 0 || y.pre.length === 0) return y.pre.length - x.pre.length;
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i];
    const q = y.pre[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    if (p === q) continue;
    const pNumeric = /^\d+$/.test(p);
    const qNumeric = /^\d+$/.test(q);
    // semver: numeric identifiers compare numerically and sort before alphanumeric ones.
    if (pNumeric && qNumeric) return Number(p) - Number(q);
    if (pNumeric !== qNumeric) return pNumeric ? -1 : 1;
    return p < q ? -1 : 1;
  }
  return 0;
}

/**
 * Whether this build's code can drive engine `version`: LMX is written against node-llama-cpp's API
 * as of its embedded version, and node-llama-cpp only adds within a major version. So: same major,
 * and no older than the embedded version's minor.
 */
export function isCompatibleEngine(version: string, embeddedVersion: string): boolean {
  const [major, minor] = version.split(".").map((part) => Number.parseInt(part, 10));
  const [baseMajor, baseMinor] = embeddedVersion.split(".").map((part) => Number.parseInt(part, 10));
  if (major === undefined || minor === undefined || baseMajor === undefined || baseMinor === undefined) return false;
  return major === baseMajor && minor >= baseMinor;
}
