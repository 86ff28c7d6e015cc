// The only place that imports node-llama-cpp at run time (everything else uses `import type`).
// From source it comes from node_modules; in the compiled executable it comes from an engine bundle
// under $LMX_HOME (see bundle.ts), because node-llama-cpp needs real files on disk: the selected
// one (selection.ts), or the bundle embedded in the executable when none is selected.
//
// A process imports node-llama-cpp once. Two engine versions cannot share a process (their native
// libraries export the same symbols and the dynamic linker would bind the second addon to the
// first's libllama), so when another engine is selected while one is loaded, the next model load
// asks the server to restart itself into the new engine (see onEngineSwitch).

import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { pathToFileURL } from "node:url";
import { lmxHome as defaultLmxHome } from "../../config/resolve.ts";
import { EngineError, errorMessage } from "../../errors.ts";
import { log } from "../../log.ts";
import { EMBEDDED_ENGINE, ENGINE_MARKER_FILE, engineDir, ensureEngineExtracted } from "./bundle.ts";
import { hostTarget } from "./platform.ts";
import { installedEngine, isCompatibleEngine, llamaCppReleaseOf, readSelection } from "./selection.ts";

export type NodeLlamaCpp = typeof import("node-llama-cpp");

export interface ActiveEngine {
  nodeLlamaCppVersion: string;
  source: "embedded" | "installed" | "node_modules";
  /** Engine folder of an installed bundle; for the embedded one, where it is (or will be) unpacked. */
  dir?: string;
}

let loaded: { engine: ActiveEngine; module: Promise<NodeLlamaCpp> } | undefined;
const warnedSelections = new Set<string>();

/**
 * The engine a load would use now: the selected bundle if it is installed, complete and
 * compatible with this build; otherwise the embedded one (a broken selection never stops a start).
 */
export function selectedEngine(lmxHome: string): ActiveEngine {
  const embedded = EMBEDDED_ENGINE;
  if (embedded === undefined) return { nodeLlamaCppVersion: nodeModulesVersion(), source: "node_modules", dir: nodeModulesPackageDir() };
  const fallback: ActiveEngine = {
    nodeLlamaCppVersion: embedded.nodeLlamaCppVersion,
    source: "embedded",
    dir: engineDir(lmxHome, embedded.nodeLlamaCppVersion, embedded.target),
  };
  const selection = readSelection(lmxHome);
  if (selection === undefined || selection.version === embedded.nodeLlamaCppVersion) return fallback;
  const installed = installedEngine(lmxHome, selection.version, embedded.target);
  const problem = installed === undefined
    ? "is not installed (or its folder is incomplete)"
    : !isCompatibleEngine(selection.version, embedded.nodeLlamaCppVersion) ? `is not compatible with this lmx (built for ${embedded.nodeLlamaCppVersion})` : undefined;
  if (problem !== undefined || installed === undefined) {
    if (!warnedSelections.has(selection.version)) {
      warnedSelections.add(selection.version);
      log.warn(`selected llama.cpp engine ${selection.version} ${problem}; using the embedded engine ${embedded.nodeLlamaCppVersion}`);
    }
    return fallback;
  }
  return { nodeLlamaCppVersion: installed.version, source: "installed", dir: installed.dir };
}

/**
 * Loads node-llama-cpp once per process (later calls share the first result, whatever `lmxHome`
 * they pass). A failed load is not cached, so a later call can retry.
 */
export function loadNodeLlamaCpp(lmxHome: string): Promise<NodeLlamaCpp> {
  if (loaded === undefined) {
    const engine = selectedEngine(lmxHome);
    const pending = engine.source === "node_modules" ? loadFromNodeModules() : loadFromBundle(lmxHome, engine);
    const entry = { engine, module: pending };
    loaded = entry;
    pending.catch(() => {
      if (loaded === entry) loaded = undefined;
    });
  }
  return loaded.module;
}

/** The engine this process imported, if it imported one. */
export function loadedEngine(): ActiveEngine | undefined {
  return loaded?.engine;
}

/** The selected engine when it differs from the one this process already imported. */
export function pendingEngineSwitch(lmxHome: string): ActiveEngine | undefined {
  if (loaded === undefined) return undefined;
  const selected = selectedEngine(lmxHome);
  return selected.nodeLlamaCppVersion === loaded.engine.nodeLlamaCppVersion ? undefined : selected;
}

type SwitchListener = (next: ActiveEngine) => void;
const switchListeners = new Set<SwitchListener>();

/** Registers the server's restart handler; returns a function that unregisters it. */
export function onEngineSwitch(listener: SwitchListener): () => void {
  switchListeners.add(listener);
  return () => switchListeners.delete(listener);
}

/** Tells the registered handlers that `next` should replace the loaded engine; false if nobody listens. */
export function requestEngineSwitch(next: ActiveEngine): boolean {
  for (const listener of switchListeners) listener(next);
  return switchListeners.size > 0;
}

/**
 * "node-llama-cpp <version>, llama.cpp <release>" of the engine in use (the loaded one, else the
 * one a load would pick), in the same form as `Engine.version()`. Results measured with an engine
 * (context probes) store this string and count as stale once it changes. Never loads the engine.
 */
export function currentEngineVersion(lmxHome: string = defaultLmxHome()): string {
  const engine = loaded?.engine ?? selectedEngine(lmxHome);
  const packageDir = engine.source === "node_modules" ? engine.dir : engine.dir === undefined ? undefined : join(engine.dir, "node_modules", "node-llama-cpp");
  const release = (packageDir === undefined ? undefined : llamaCppReleaseOf(packageDir)) ?? embeddedLlamaCppRelease(engine) ?? "unknown";
  return `node-llama-cpp ${engine.nodeLlamaCppVersion}, llama.cpp ${release}`;
}

// Injected by scripts/build.ts; lets the version be reported before the embedded bundle is unpacked.
declare const LMX_ENGINE_LLAMA_CPP_RELEASE: string | undefined;

function embeddedLlamaCppRelease(engine: ActiveEngine): string | undefined {
  if (engine.source !== "embedded" || typeof LMX_ENGINE_LLAMA_CPP_RELEASE !== "string") return undefined;
  return LMX_ENGINE_LLAMA_CPP_RELEASE;
}

async function loadFromBundle(lmxHome: string, engine: ActiveEngine): Promise<NodeLlamaCpp> {
  const dir = engine.source === "embedded" || engine.dir === undefined ? await ensureEngineExtracted(lmxHome) : engine.dir;
  const entry = join(dir, "node_modules", "node-llama-cpp", "dist", "index.js");
  log.info("using llama.cpp engine", { nodeLlamaCpp: engine.nodeLlamaCppVersion, source: engine.source, dir });
  try {
    return (await import(pathToFileURL(entry).href)) as NodeLlamaCpp;
  } catch (err) {
    // The marker says the folder was complete once; if files went missing since, a fresh copy helps.
    const remedy = engine.source === "installed" && EMBEDDED_ENGINE !== undefined
      ? `run "lmx engine use ${EMBEDDED_ENGINE.nodeLlamaCppVersion}" to go back to the built-in engine, or "lmx engine update ${engine.nodeLlamaCppVersion}" after deleting that folder`
      : "delete that folder to have lmx unpack it again";
    throw new EngineError(`cannot load node-llama-cpp from ${dir}: ${errorMessage(err)} (${remedy})`, "engine_load_failed");
  }
}

async function loadFromNodeModules(): Promise<NodeLlamaCpp> {
  // scripts/build.ts marks this specifier external; the compiled executable never takes this path.
  return await import("node-llama-cpp");
}

export interface EngineBundleInfo {
  nodeLlamaCppVersion: string;
  /** "<os>-<arch>" of the prebuilt binaries, e.g. "linux-x64". */
  platform: string;
  source: "embedded" | "installed" | "node_modules";
  /** Engine folder (bundles, when `lmxHome` is given) or node-llama-cpp's package folder. */
  path?: string;
}

/** What `lmx --version` and system info report about the llama.cpp engine. Never loads it. */
export function engineBundleInfo(lmxHome?: string): EngineBundleInfo {
  const embedded = EMBEDDED_ENGINE;
  if (embedded !== undefined) {
    const engine = loaded?.engine ?? (lmxHome === undefined ? undefined : selectedEngine(lmxHome));
    return {
      nodeLlamaCppVersion: engine?.nodeLlamaCppVersion ?? embedded.nodeLlamaCppVersion,
      platform: embedded.target,
      source: engine?.source === "installed" ? "installed" : "embedded",
      path: lmxHome === undefined ? undefined : (engine?.dir ?? engineDir(lmxHome, embedded.nodeLlamaCppVersion, embedded.target)),
    };
  }
  const packageDir = nodeModulesPackageDir();
  return {
    nodeLlamaCppVersion: packageDir === undefined ? "unknown" : readPackageVersion(packageDir),
    platform: hostTarget(),
    source: "node_modules",
    path: packageDir,
  };
}

function nodeModulesVersion(): string {
  const dir = nodeModulesPackageDir();
  return dir === undefined ? "unknown" : readPackageVersion(dir);
}

function nodeModulesPackageDir(): string | undefined {
  try {
    // node-llama-cpp's "exports" hide package.json, so resolve the entry point and walk up from dist/.
    return dirname(dirname(Bun.resolveSync("node-llama-cpp", import.meta.dir)));
  } catch {
    return undefined;
  }
}

function readPackageVersion(packageDir: string): string {
  try {
    const pkg: unknown = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
    const version = typeof pkg === "object" && pkg !== null ? (pkg as { version?: unknown }).version : undefined;
    return typeof version === "string" ? version : "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * In a compiled executable, `child_process.fork(script)` starts the executable itself with the
 * script as argv[2] instead of running the script. node-llama-cpp forks a helper
 * (testBindingBinary.js) to check the native binary before loading it, so the CLI entry point must
 * call this first and stop if it returns true:
 *
 *   if (await runForkedEngineScript()) return;
 *
 * It only acts on a forked child (an IPC channel is present) whose script lies inside an extracted
 * engine folder, and then imports that script, which takes over the process.
 */
export async function runForkedEngineScript(argv: readonly string[] = process.argv): Promise<boolean> {
  if (EMBEDDED_ENGINE === undefined || process.send === undefined) return false;
  const script = argv[2];
  if (script === undefined || !isAbsolute(script) || !/\.[cm]?js$/.test(script) || !existsSync(script)) return false;
  if (!insideEngineFolder(script)) return false;
  await import(pathToFileURL(script).href);
  return true;
}

function insideEngineFolder(path: string): boolean {
  let dir = dirname(path);
  for (let depth = 0; depth < 16; depth++) {
    if (existsSync(join(dir, ENGINE_MARKER_FILE))) return true;
    const parent = dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
  return false;
}
