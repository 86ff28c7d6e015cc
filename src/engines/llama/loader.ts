// The only place that imports node-llama-cpp at run time (everything else uses `import type`).
// From source it comes from node_modules; in the compiled executable it comes from the engine
// bundle unpacked under $LMX_HOME (see bundle.ts), because node-llama-cpp needs real files on disk.

import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { pathToFileURL } from "node:url";
import { EngineError, errorMessage } from "../../errors.ts";
import { EMBEDDED_ENGINE, ENGINE_MARKER_FILE, engineDir, ensureEngineExtracted } from "./bundle.ts";
import { hostTarget } from "./platform.ts";

export type NodeLlamaCpp = typeof import("node-llama-cpp");

let modulePromise: Promise<NodeLlamaCpp> | undefined;

/**
 * Loads node-llama-cpp once per process (later calls share the first result, whatever `lmxHome`
 * they pass). A failed load is not cached, so a later call can retry.
 */
export function loadNodeLlamaCpp(lmxHome: string): Promise<NodeLlamaCpp> {
  if (modulePromise === undefined) {
    const pending = EMBEDDED_ENGINE !== undefined ? loadFromBundle(lmxHome) : loadFromNodeModules();
    modulePromise = pending;
    pending.catch(() => {
      if (modulePromise === pending) modulePromise = undefined;
    });
  }
  return modulePromise;
}

async function loadFromBundle(lmxHome: string): Promise<NodeLlamaCpp> {
  const dir = await ensureEngineExtracted(lmxHome);
  const entry = join(dir, "node_modules", "node-llama-cpp", "dist", "index.js");
  try {
    return (await import(pathToFileURL(entry).href)) as NodeLlamaCpp;
  } catch (err) {
    // The marker says the folder was complete once; if files went missing since, a fresh copy helps.
    throw new EngineError(
      `cannot load node-llama-cpp from ${dir}: ${errorMessage(err)} (delete that folder to have lmx unpack it again)`,
      "engine_load_failed",
    );
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
  source: "embedded" | "node_modules";
  /** Engine folder (embedded, when `lmxHome` is given) or node-llama-cpp's package folder. */
  path?: string;
}

/** What `lmx --version` and system info report about the llama.cpp engine. Never loads it. */
export function engineBundleInfo(lmxHome?: string): EngineBundleInfo {
  const embedded = EMBEDDED_ENGINE;
  if (embedded !== undefined) {
    return {
      nodeLlamaCppVersion: embedded.nodeLlamaCppVersion,
      platform: embedded.target,
      source: "embedded",
      path: lmxHome === undefined ? undefined : engineDir(lmxHome, embedded.nodeLlamaCppVersion, embedded.target),
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
