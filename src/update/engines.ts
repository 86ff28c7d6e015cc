// Engine bundles installed side by side: `lmx engine list | update | use`. Installing downloads a
// bundle named in the signed manifest into $LMX_HOME/engines/llama.cpp/, checks its size and
// SHA-256, and unpacks it with the same atomic extraction the embedded bundle uses; selecting one
// rewrites current.json with a rename. The server reads the selection at its next model load.

import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { UpdateError } from "../errors.ts";
import { EMBEDDED_ENGINE, engineDir, extractEngineArchive } from "../engines/llama/bundle.ts";
import { currentEngineVersion, engineBundleInfo, selectedEngine } from "../engines/llama/loader.ts";
import { hostTarget } from "../engines/llama/platform.ts";
import {
  compareVersions,
  enginesRoot,
  installedEngine,
  type InstalledEngine,
  isCompatibleEngine,
  listInstalledEngines,
  writeSelection,
} from "../engines/llama/selection.ts";
import { downloadVerified } from "./download.ts";
import { type BuildInfo, readBuildInfo } from "./engine-build/built.ts";
import { artifactUrl, ENGINE_FAMILY, type EngineRelease, fetchManifest, type Manifest, readCachedManifest, type VerifiedManifest } from "./manifest.ts";
import { BUILTIN_PUBLIC_KEYS } from "./signing.ts";

/** The node-llama-cpp version this build was written against (the embedded bundle's). */
export function baseEngineVersion(): string {
  return EMBEDDED_ENGINE?.nodeLlamaCppVersion ?? engineBundleInfo().nodeLlamaCppVersion;
}

function requireBundles(): void {
  if (EMBEDDED_ENGINE === undefined) {
    throw new UpdateError("this lmx runs from source and always uses node-llama-cpp from node_modules; engine bundles apply to the compiled executable");
  }
}

export interface EngineRow {
  version: string;
  llamaCpp: string | undefined;
  /** Architectures the manifest lists for it, when known. */
  architectures: number | undefined;
  installed: boolean;
  embedded: boolean;
  selected: boolean;
  compatible: boolean;
  /** Published for this platform in the manifest. */
  available: boolean;
  /** Set for engines compiled here by `lmx engine build`: what from and when. */
  build: { ref: string; repo: string; commit: string; builtAt: string; cpu: string } | undefined;
}

/** Installed, embedded and (with a manifest) published engines for this platform, newest first. */
export function listEngines(lmxHome: string, manifest?: Manifest): EngineRow[] {
  const target = hostTarget();
  const base = baseEngineVersion();
  const active = selectedEngine(lmxHome).nodeLlamaCppVersion;
  const rows = new Map<string, EngineRow>();
  const row = (version: string): EngineRow => {
    let found = rows.get(version);
    if (found === undefined) {
      found = {
        version,
        llamaCpp: undefined,
        architectures: undefined,
        installed: false,
        embedded: version === EMBEDDED_ENGINE?.nodeLlamaCppVersion,
        selected: version === active,
        compatible: isCompatibleEngine(version, base),
        available: false,
        build: undefined,
      };
      rows.set(version, found);
    }
    return found;
  };
  for (const engine of listInstalledEngines(lmxHome, target)) {
    const r = row(engine.version);
    r.installed = true;
    r.llamaCpp ??= engine.llamaCpp;
    const info = readBuildInfo(engine.dir);
    if (info !== undefined) {
      r.build = { ref: info.ref, repo: info.repo, commit: info.commit, builtAt: info.builtAt, cpu: info.cpu };
      r.architectures = info.architectures.length;
    }
  }
  if (EMBEDDED_ENGINE !== undefined) row(EMBEDDED_ENGINE.nodeLlamaCppVersion);
  row(active).llamaCpp ??= /llama\.cpp (\S+)$/.exec(currentEngineVersion(lmxHome))?.[1];
  for (const [version, entry] of Object.entries(manifest?.engines[ENGINE_FAMILY] ?? {})) {
    if (entry.platforms[target] === undefined && !rows.has(version)) continue;
    const r = row(version);
    r.llamaCpp = entry.llamaCpp;
    r.architectures = entry.architectures.length;
    r.available = entry.platforms[target] !== undefined;
  }
  return [...rows.values()].sort((a, b) => compareVersions(b.version, a.version));
}

/** The newest engine in the manifest this build can use on this platform (optionally: that loads `architecture`). */
export function newestCompatibleEngine(manifest: Manifest, architecture?: string): { version: string; entry: EngineRelease } | undefined {
  const target = hostTarget();
  const base = baseEngineVersion();
  return Object.entries(manifest.engines[ENGINE_FAMILY] ?? {})
    .filter(([version, entry]) => entry.platforms[target] !== undefined && isCompatibleEngine(version, base))
    .filter(([, entry]) => architecture === undefined || entry.architectures.includes(architecture))
    .sort(([a], [b]) => compareVersions(b, a))
    .map(([version, entry]) => ({ version, entry }))[0];
}

/** Downloads, verifies and unpacks engine `version` from the manifest unless it is already installed. */
export async function installEngine(lmxHome: string, verified: VerifiedManifest, version: string): Promise<InstalledEngine> {
  requireBundles();
  const target = hostTarget();
  const entry = verified.manifest.engines[ENGINE_FAMILY]?.[version];
  if (entry === undefined) {
    const known = Object.keys(verified.manifest.engines[ENGINE_FAMILY] ?? {}).sort(compareVersions).join(", ");
    throw new UpdateError(`engine ${version} is not published (published: ${known || "none"})`);
  }
  const artifact = entry.platforms[target];
  if (artifact === undefined) throw new UpdateError(`engine ${version} is not published for ${target}`);
  if (!isCompatibleEngine(version, baseEngineVersion())) {
    throw new UpdateError(`engine ${version} is not compatible with this lmx (built for node-llama-cpp ${baseEngineVersion()}); run "lmx update" first`);
  }
  const existing = installedEngine(lmxHome, version, target);
  if (existing !== undefined && existing.sha256 === artifact.sha256) return existing;

  const root = enginesRoot(lmxHome);
  await mkdir(root, { recursive: true });
  const archive = join(root, `.download-${version}-${process.pid}-${randomBytes(4).toString("hex")}.tar.gz`);
  try {
    await downloadVerified(artifactUrl(verified.baseUrl, artifact), archive, artifact);
    const dest = await extractEngineArchive({ archive, sha256: artifact.sha256, dest: engineDir(lmxHome, version, target), nodeLlamaCppVersion: version, target });
    const pkg = JSON.parse(await readFile(join(dest, "node_modules", "node-llama-cpp", "package.json"), "utf8")) as { version?: unknown };
    if (pkg.version !== version) {
      await rm(dest, { recursive: true, force: true });
      throw new UpdateError(`engine bundle ${version} holds node-llama-cpp ${String(pkg.version)}; removed it`);
    }
  } finally {
    await rm(archive, { force: true });
  }
  const installed = installedEngine(lmxHome, version, target);
  if (installed === undefined) throw new UpdateError(`engine ${version} did not install completely`);
  return installed;
}

/** Selects an installed (or the embedded) engine; the next model load uses it. */
export async function useEngine(lmxHome: string, version: string): Promise<void> {
  requireBundles();
  const target = hostTarget();
  const embedded = version === EMBEDDED_ENGINE?.nodeLlamaCppVersion;
  if (!embedded && installedEngine(lmxHome, version, target) === undefined) {
    const installed = listInstalledEngines(lmxHome, target).map((e) => e.version);
    throw new UpdateError(`engine ${version} is not installed (installed: ${[...new Set([EMBEDDED_ENGINE?.nodeLlamaCppVersion, ...installed])].join(", ")}); "lmx engine update ${version}" installs it`);
  }
  if (!isCompatibleEngine(version, baseEngineVersion())) {
    throw new UpdateError(`engine ${version} is not compatible with this lmx (built for node-llama-cpp ${baseEngineVersion()})`);
  }
  await writeSelection(lmxHome, version);
}

export interface EngineSwitch {
  version: string;
  /** The engine selected before. */
  previous: string;
  llamaCpp: string;
}

/**
 * Installs `version` (default: the newest compatible published engine) from the signed manifest at
 * `baseUrl` and selects it: `lmx engine update` and `POST /admin/v1/engines/update`.
 */
export async function updateToEngine(lmxHome: string, baseUrl: string, version?: string): Promise<EngineSwitch> {
  const verified = await fetchManifest(baseUrl, BUILTIN_PUBLIC_KEYS, lmxHome);
  const wanted = version ?? newestCompatibleEngine(verified.manifest)?.version;
  if (wanted === undefined) throw new UpdateError("no published engine is compatible with this lmx on this platform");
  const entry = verified.manifest.engines[ENGINE_FAMILY]?.[wanted];
  const previous = selectedEngine(lmxHome).nodeLlamaCppVersion;
  const installed = await installEngine(lmxHome, verified, wanted);
  await useEngine(lmxHome, wanted);
  return { version: wanted, previous, llamaCpp: entry?.llamaCpp ?? installed.llamaCpp ?? "unknown" };
}

/** Engines compiled here by `lmx engine build` that this lmx can use, with what they record. */
export function builtEngines(lmxHome: string): { version: string; info: BuildInfo }[] {
  const base = baseEngineVersion();
  return listInstalledEngines(lmxHome, hostTarget()).flatMap((engine) => {
    const info = readBuildInfo(engine.dir);
    return info !== undefined && isCompatibleEngine(engine.version, base) ? [{ version: engine.version, info }] : [];
  });
}

/**
 * The message for a model whose architecture the active engine cannot load: which built engines
 * are installed and whether one knows the architecture, the published engine that adds it (from
 * the last verified manifest), and otherwise the command that builds one.
 */
export async function unsupportedArchitectureMessage(lmxHome: string, modelId: string, architecture: string): Promise<string> {
  const active = currentEngineVersion(lmxHome);
  const activeVersion = selectedEngine(lmxHome).nodeLlamaCppVersion;
  const parts = [`cannot load ${modelId}: its architecture "${architecture}" is not supported by the active llama.cpp engine (${active}).`];
  const built = builtEngines(lmxHome).filter((b) => b.version !== activeVersion);
  const knowing = built.find((b) => b.info.architectures.includes(architecture));
  if (knowing !== undefined) {
    parts.push(`The engine built from llama.cpp ${knowing.info.ref} (${knowing.info.commit.slice(0, 10)}) supports it: run "lmx engine use ${knowing.version}".`);
    return parts.join(" ");
  }
  if (built.length > 0) parts.push(`Installed built engines do not know it either (${built.map((b) => `${b.version} from ${b.info.ref}`).join(", ")}).`);
  const buildHint = `"lmx engine build <ref>" builds an engine from the llama.cpp release, commit, branch or pr/NUMBER that adds it.`;
  const cached = await readCachedManifest(lmxHome, BUILTIN_PUBLIC_KEYS);
  if (cached === undefined) {
    parts.push(`Run "lmx engine list --check" to see whether a published engine supports it; ${buildHint}`);
    return parts.join(" ");
  }
  const match = newestCompatibleEngine(cached.manifest, architecture);
  if (match === undefined) {
    parts.push(`No engine published as of ${cached.manifest.updated} supports it yet ("lmx engine list --check" looks again); ${buildHint}`);
    return parts.join(" ");
  }
  parts.push(`Engine ${match.version} (llama.cpp ${match.entry.llamaCpp}) supports it: run "lmx engine update ${match.version}".`);
  return parts.join(" ");
}
