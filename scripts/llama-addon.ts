// node-llama-cpp's addon with LMX's patch, compiled against the prebuilt libraries in node_modules
// (scripts/lib/llama-addon.ts explains why only the addon is compiled).
//
//   bun scripts/llama-addon.ts install [--if-possible]   compile (cached) and put it in node_modules
//   bun scripts/llama-addon.ts restore                   put node-llama-cpp's prebuilt addon back
//   bun scripts/llama-addon.ts status                    say which addon node_modules holds
//
// `npm ci` runs `install --if-possible` after patch-package: runs from source and the tests then
// use the addon the compiled lmx ships. Without git, cmake or a C++ compiler it warns and leaves
// the prebuilt addon (which lacks runs of tokens: slower on tiny models, otherwise the same).

import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { engineLibs } from "./lib/llama-source.ts";
import { ADDON_FILE, addonBuildBlocker, addonKind, buildLlamaAddon, installLlamaAddon, restoreLlamaAddon } from "./lib/llama-addon.ts";

const ROOT = resolve(import.meta.dir, "..");

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Bun.argv.slice(2),
    options: { "if-possible": { type: "boolean", default: false } },
    allowPositionals: true,
    strict: true,
  });
  const command = positionals[0] ?? "status";
  const libs = engineLibs(ROOT);
  const say = (msg: string) => console.log(`llama-addon: ${msg}`);
  switch (command) {
    case "status": {
      const kind = addonKind(libs.dir);
      say(`${join(libs.dir, ADDON_FILE)}: ${kind === "lmx" ? "compiled by LMX (runs of tokens)" : kind === "prebuilt" ? "node-llama-cpp's prebuilt addon" : "missing"}`);
      return 0;
    }
    case "restore":
      say(restoreLlamaAddon(libs.dir) ? `node-llama-cpp's prebuilt addon is back in ${libs.dir}` : "no prebuilt addon kept; nothing to restore");
      return 0;
    case "install": {
      const started = performance.now();
      try {
        const blocker = addonBuildBlocker(ROOT);
        if (blocker !== undefined) throw new Error(blocker);
        const addon = await buildLlamaAddon(ROOT, libs, say);
        const installed = installLlamaAddon(addon.path, libs.dir);
        const took = addon.cached ? "cached" : `compiled in ${((performance.now() - started) / 1000).toFixed(1)} s`;
        say(`${installed ? "installed" : "already installed"} in ${libs.dir} (${took})`);
      } catch (err) {
        const msg = `cannot compile node-llama-cpp's addon: ${err instanceof Error ? err.message : String(err)}`;
        if (!values["if-possible"]) throw new Error(msg);
        console.warn(`llama-addon: warning: ${msg}\nKeeping the prebuilt addon: runs from source lack runs of tokens, and \`npm run build\` fails until this is fixed.`);
      }
      return 0;
    }
    default:
      throw new Error(`unknown command "${command}" (install, restore or status)`);
  }
}

try {
  process.exit(await main());
} catch (err) {
  console.error(`llama-addon: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
