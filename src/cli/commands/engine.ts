import { lmxHome } from "../../config/resolve.ts";
import { UpdateError, UsageError } from "../../errors.ts";
import { currentEngineVersion, loadedEngine, selectedEngine } from "../../engines/llama/loader.ts";
import { installEngine, listEngines, newestCompatibleEngine, useEngine } from "../../update/engines.ts";
import { ENGINE_FAMILY, fetchManifest, readCachedManifest, updateBaseUrl } from "../../update/manifest.ts";
import { BUILTIN_PUBLIC_KEYS } from "../../update/signing.ts";
import { localFlagsHelp, parseLocalFlags, wantsHelp } from "../local-flags.ts";
import { table } from "../table.ts";
import type { Command } from "./index.ts";

const settings = [
  { key: "check", kind: "bool", default: false, flagOnly: true, description: "list: fetch the release manifest now instead of using the last one fetched." },
  { key: "json", kind: "bool", default: false, flagOnly: true, description: "list: print JSON." },
] as const;

const USAGE = "engine list [--check] [--json] | engine update [VERSION] | engine use VERSION";

const SWITCH_NOTE = "A running server switches at its next model load (it restarts itself once running requests finish).";

/** Installs `version` (default: the newest compatible published engine) and selects it. */
export async function updateEngine(version: string | undefined, say: (line: string) => void): Promise<void> {
  const home = lmxHome();
  const verified = await fetchManifest(updateBaseUrl(), BUILTIN_PUBLIC_KEYS, home);
  const wanted = version ?? newestCompatibleEngine(verified.manifest)?.version;
  if (wanted === undefined) throw new UpdateError("no published engine is compatible with this lmx on this platform");
  const entry = verified.manifest.engines[ENGINE_FAMILY]?.[wanted];
  const before = selectedEngine(home).nodeLlamaCppVersion;
  const installed = await installEngine(home, verified, wanted);
  await useEngine(home, wanted);
  const llamaCpp = entry?.llamaCpp ?? installed.llamaCpp ?? "unknown";
  if (before === wanted) say(`llama.cpp engine ${wanted} (llama.cpp ${llamaCpp}) is installed and selected already.`);
  else say(`Installed and selected llama.cpp engine ${wanted} (llama.cpp ${llamaCpp}), replacing ${before}. ${SWITCH_NOTE}`);
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
        SWITCH_NOTE,
        "",
        localFlagsHelp(settings),
      ].join("\n"));
      return 0;
    }
    const { flags, args } = parseLocalFlags(argv, settings);
    const [action, version, extra] = args;
    if (extra !== undefined) throw new UsageError(`usage: lmx ${USAGE}`);
    const home = lmxHome();
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
          r.installed ? "installed" : undefined,
          r.available && !r.installed ? "available" : undefined,
          r.compatible ? undefined : "incompatible",
        ].filter(Boolean).join(", ");
        console.log(table(["", "VERSION", "LLAMA.CPP", "ARCHITECTURES", "STATUS"],
          rows.map((r) => [r.selected ? "*" : " ", r.version, r.llamaCpp, r.architectures, status(r)])));
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
