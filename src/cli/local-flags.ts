// Flags of commands that act on this machine rather than on a running server (update, engine,
// service). They are parsed like every other flag but never read from LMX_* variables or
// config.json: `LMX_VERSION=…` in someone's environment must not silently pick an update.

import { parseFlags, resolveSettings, type Resolved } from "../config/resolve.ts";
import { flagName, type Setting } from "../config/settings.ts";

export function parseLocalFlags<const S extends readonly Setting[]>(argv: string[], settings: S): { flags: Resolved<S>; args: string[] } {
  const parsed = parseFlags(argv, settings);
  return { flags: resolveSettings(settings, parsed, {}, { values: {}, models: {} }), args: parsed.positionals };
}

export function localFlagsHelp(settings: readonly Setting[]): string {
  const rows = settings.map((s) => ({ flag: flagName(s.key) + (s.kind === "bool" ? "" : ` ${s.placeholder ?? "VALUE"}`), text: s.description }));
  const width = Math.max(...rows.map((r) => r.flag.length)) + 2;
  return ["Options:", ...rows.map((r) => `  ${r.flag.padEnd(width)}${r.text}`)].join("\n");
}

export function wantsHelp(argv: string[]): boolean {
  return argv.includes("--help") || argv.includes("-h");
}
