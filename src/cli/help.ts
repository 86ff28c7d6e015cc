import { envName, flagName, type Setting } from "../config/settings.ts";

/** The settings table every command's --help prints: flag, env var, default, description. */
export function settingsHelp(settings: readonly Setting[]): string {
  const rows = settings.map((s) => {
    const flag = flagName(s.key) + (s.kind === "bool" ? "" : ` ${s.placeholder ?? "VALUE"}`);
    const def = s.defaultText ?? (s.kind === "map" ? "none" : s.kind === "list" ? (s.default.length ? s.default.join(",") : "none") : s.default === undefined ? "none" : String(s.default));
    return { flag, text: `${s.description}\n${" ".repeat(4)}env ${[envName(s.key), ...(s.envAliases ?? [])].join(" or ")}${s.flagOnly ? "" : `, config.json "${s.key}"`}; default: ${def}` };
  });
  const width = Math.max(...rows.map((r) => r.flag.length)) + 2;
  const body = rows.map((r) => {
    const [first, ...more] = r.text.split("\n");
    return `  ${r.flag.padEnd(width)}${first}\n${more.map((m) => " ".repeat(width + 2) + m.trim()).join("\n")}`;
  });
  return ["Options (flag > LMX_* env > $LMX_HOME/config.json > default):", ...body].join("\n");
}
