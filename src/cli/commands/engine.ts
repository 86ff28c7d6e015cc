import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { lmxHome, parseFlags, readConfigFile, resolveSettings } from "../../config/resolve.ts";
import { serveSettings } from "../../config/settings.ts";
import { LmxError, UpdateError, UsageError } from "../../errors.ts";
import { currentEngineVersion, loadedEngine, selectedEngine } from "../../engines/llama/loader.ts";
import { ModelRegistry } from "../../models/registry.ts";
import { openDb } from "../../store/db.ts";
import { EngineBuildCancelled } from "../../update/engine-build/errors.ts";
import type { PhaseProgress } from "../../update/engine-build/progress.ts";
import { type KnownModelFile, resolveBuildRequest, runEngineBuild } from "../../update/engine-build/request.ts";
import { listEngines, updateToEngine, useEngine } from "../../update/engines.ts";
import { fetchManifest, readCachedManifest, updateBaseUrl } from "../../update/manifest.ts";
import { BUILTIN_PUBLIC_KEYS } from "../../update/signing.ts";
import { localFlagsHelp, wantsHelp } from "../local-flags.ts";
import { table } from "../table.ts";
import type { Command } from "./index.ts";

const settings = [
  { key: "check", kind: "bool", default: false, flagOnly: true, description: "list: fetch the release manifest now instead of using the last one fetched." },
  { key: "json", kind: "bool", default: false, flagOnly: true, description: "list: print JSON." },
  { key: "verifyModel", kind: "string", flagOnly: true, placeholder: "PATH", description: "build: the small GGUF the new engine must load and generate with (default: the smallest GGUF model lmx knows)." },
  { key: "native", kind: "bool", default: false, flagOnly: true, description: "build: compile for this machine's CPU only (much faster; the engine may not run on other CPUs)." },
] as const;

// The repository is a real setting (LMX_LLAMA_REPO, config.json), shared with the server's build jobs.
const repoSetting = serveSettings.filter((s) => s.key === "llamaRepo");

const USAGE = "engine list [--check] [--json] | engine update [VERSION] | engine use VERSION | engine build REF [--llama-repo URL] [--native] [--verify-model PATH]";

const SWITCH_NOTE = "A running server switches at its next model load (it restarts itself once running requests finish).";

/** Installs `version` (default: the newest compatible published engine) and selects it. */
export async function updateEngine(version: string | undefined, say: (line: string) => void): Promise<void> {
  const r = await updateToEngine(lmxHome(), updateBaseUrl(), version);
  if (r.previous === r.version) say(`llama.cpp engine ${r.version} (llama.cpp ${r.llamaCpp}) is installed and selected already.`);
  else say(`Installed and selected llama.cpp engine ${r.version} (llama.cpp ${r.llamaCpp}), replacing ${r.previous}. ${SWITCH_NOTE}`);
}

/** GGUF models in the registry, for the default verification model; none when there is no database yet. */
function knownModels(home: string): KnownModelFile[] {
  const path = join(home, "lmx.db");
  if (!existsSync(path)) return [];
  const db = openDb(path);
  try {
    return new ModelRegistry(db).all();
  } finally {
    db.$client.close();
  }
}

const PHASE_TEXT: Record<PhaseProgress["phase"], string> = {
  prepare: "checking prerequisites",
  fetch: "fetching the source",
  configure: "configuring (cmake)",
  compile: "compiling",
  verify: "verifying: loading a model and generating",
  register: "registering",
};

/** `lmx engine build`: phases on stderr, the result on stdout; SIGTERM/SIGINT cancel and clean up. */
async function buildCommand(home: string, request: { ref: string; repo: string; verifyModel: string | undefined; native: boolean }): Promise<number> {
  let resolved;
  try {
    resolved = resolveBuildRequest(request, knownModels(home));
  } catch (err) {
    if (err instanceof LmxError) {
      console.error(`lmx engine build: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const ac = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    signalled = signal;
    ac.abort();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  let last = "";
  try {
    const built = await runEngineBuild(home, resolved, {
      signal: ac.signal,
      onLog: (path) => console.error(`lmx engine build: building llama.cpp ${resolved.ref.ref} from ${resolved.repo}; full log: ${path}`),
      onProgress: (p) => {
        // One line per phase and per 5% of compilation: readable in a terminal and in a service log.
        const step = p.percent === null ? "" : ` ${p.phase === "compile" ? Math.floor(p.percent / 5) * 5 : p.percent}%`;
        const line = `[${p.phase}] ${PHASE_TEXT[p.phase]}${step}`;
        if (line !== last) console.error(line);
        last = line;
      },
    });
    const what = `llama.cpp engine ${built.version} (${built.info.ref} at ${built.info.commit.slice(0, 12)}, reported by the binary as ${built.info.reportedCommit})`;
    console.log(built.existed ? `${what} was built before; nothing to do.` : `Built and verified ${what}.`);
    console.log(`Switch to it with "lmx engine use ${built.version}"; "lmx engine use ${selectedEngine(home).nodeLlamaCppVersion}" goes back.`);
    return 0;
  } catch (err) {
    if (err instanceof EngineBuildCancelled) {
      console.error(`lmx engine build: ${err.message}`);
      return signalled === "SIGINT" ? 130 : 143;
    }
    if (err instanceof UpdateError) {
      console.error(`lmx engine build: ${err.message}`);
      return 1;
    }
    throw err;
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}

export const engine: Command = {
  summary: "List, install and switch llama.cpp engine versions",
  async run(argv) {
    if (wantsHelp(argv)) {
      console.log([
        `Usage: lmx ${USAGE}`,
        "",
        "Engine bundles (node-llama-cpp with prebuilt llama.cpp) live side by side under $LMX_HOME/engines/llama.cpp/.",
        "  list            installed, embedded and published engines (* = in use)",
        "  update [V]      download the newest compatible engine (or V), verify it against the signed manifest, select it",
        "  use V           select an installed engine (or the embedded one)",
        "  build REF       compile llama.cpp REF (a release tag b6000, a commit, a branch or pr/NUMBER) with node-llama-cpp's",
        "                  source build, verify it with a small model, and register it beside the others (then: engine use)",
        SWITCH_NOTE,
        "",
        localFlagsHelp([...settings, ...repoSetting]),
      ].join("\n"));
      return 0;
    }
    const parsed = parseFlags(argv, [...settings, ...repoSetting]);
    // The engine's own flags never come from LMX_* or config.json (see local-flags.ts); the repository does.
    const flags = resolveSettings(settings, parsed, {}, { values: {}, models: {} });
    const [action, version, extra] = parsed.positionals;
    if (extra !== undefined) throw new UsageError(`usage: lmx ${USAGE}`);
    const home = lmxHome();
    if (action === "build" && version !== undefined) {
      const { llamaRepo } = resolveSettings(repoSetting, parsed, process.env, readConfigFile(home));
      return buildCommand(home, { ref: version, repo: llamaRepo, verifyModel: flags.verifyModel === undefined ? undefined : resolve(flags.verifyModel), native: flags.native });
    }
    try {
      if (action === "list" && version === undefined) {
        const verified = flags.check
          ? await fetchManifest(updateBaseUrl(), BUILTIN_PUBLIC_KEYS, home)
          : await readCachedManifest(home, BUILTIN_PUBLIC_KEYS);
        const rows = listEngines(home, verified?.manifest);
        if (flags.json) {
          console.log(JSON.stringify({ active: currentEngineVersion(home), loaded: loadedEngine() ?? null, engines: rows, manifest: verified?.manifest.updated ?? null }, null, 2));
          return 0;
        }
        const status = (r: (typeof rows)[number]): string => [
          r.selected ? "in use" : undefined,
          r.embedded ? "embedded" : undefined,
          r.installed ? (r.build === undefined ? "installed" : "built here") : undefined,
          r.available && !r.installed ? "available" : undefined,
          r.compatible ? undefined : "incompatible",
        ].filter(Boolean).join(", ");
        const built = (r: (typeof rows)[number]): string | undefined =>
          r.build === undefined ? undefined : `${r.build.ref} @ ${r.build.commit.slice(0, 10)}, ${r.build.builtAt.slice(0, 16).replace("T", " ")}`;
        console.log(table(["", "VERSION", "LLAMA.CPP", "ARCHITECTURES", "STATUS", "BUILT FROM"],
          rows.map((r) => [r.selected ? "*" : " ", r.version, r.llamaCpp, r.architectures, status(r), built(r)])));
        if (verified === undefined) console.log("\nPublished engines are not shown: run 'lmx engine list --check' to fetch the release manifest.");
        return 0;
      }
      if (action === "update") {
        await updateEngine(version, (line) => console.log(line));
        return 0;
      }
      if (action === "use" && version !== undefined) {
        const before = selectedEngine(home).nodeLlamaCppVersion;
        await useEngine(home, version);
        console.log(before === version ? `llama.cpp engine ${version} is in use already.` : `Selected llama.cpp engine ${version} (was ${before}). ${SWITCH_NOTE}`);
        return 0;
      }
    } catch (err) {
      if (err instanceof UpdateError) {
        console.error(`lmx engine: ${err.message}`);
        return 1;
      }
      throw err;
    }
    throw new UsageError(`usage: lmx ${USAGE}`);
  },
};
