import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import * as v from "valibot";
import { layerLoadSettings, loadSettingFields } from "./load-settings.ts";
import { UsageError } from "../errors.ts";
import { envName, flagName, type Setting } from "./settings.ts";

export type ParsedFlags = { values: Map<string, string[]>; positionals: string[] };

/** Where LMX keeps its state. Read from the environment only: it locates the config file itself. */
export function lmxHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.LMX_HOME || join(homedir(), ".lmx"));
}

/**
 * Splits argv into `--flag value` / `--flag=value` / boolean `--flag` values (keyed by setting key)
 * and positionals. Unknown flags are an error, so typos never silently fall back to defaults.
 */
export function parseFlags(argv: string[], settings: readonly Setting[]): ParsedFlags {
  const byFlag = new Map(settings.map((s) => [flagName(s.key), s] as const));
  const values = new Map<string, string[]>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") { positionals.push(...argv.slice(i + 1)); break; }
    if (!arg.startsWith("--")) { positionals.push(arg); continue; }
    const eq = arg.indexOf("=");
    const name = eq === -1 ? arg : arg.slice(0, eq);
    let setting = byFlag.get(name);
    let negated = false;
    if (!setting && name.startsWith("--no-")) {
      setting = byFlag.get("--" + name.slice(5));
      negated = setting?.kind === "bool";
      if (!negated) setting = undefined;
    }
    if (!setting) throw new UsageError(`unknown option ${name}`);
    let value: string;
    if (setting.kind === "bool") {
      value = eq === -1 ? String(!negated) : arg.slice(eq + 1);
    } else if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) throw new UsageError(`option ${name} needs a value`);
      value = next;
      i++;
    }
    const list = values.get(setting.key) ?? [];
    list.push(value);
    values.set(setting.key, list);
  }
  return { values, positionals };
}

/** A `models` entry of config.json: an optional file, and load settings (the context is called `ctx` there, as the flag). */
const ConfiguredModel = v.pipe(
  v.object({ path: v.optional(v.string()), ctx: loadSettingFields.contextLength, ...omitContext(loadSettingFields) }),
  v.transform(({ path, ctx, ...rest }) => ({ ...(path !== undefined ? { path } : {}), load: layerLoadSettings({ contextLength: ctx, ...rest }) })),
);
export type ConfiguredModel = v.InferOutput<typeof ConfiguredModel>;

function omitContext<T extends { contextLength: unknown }>({ contextLength: _, ...rest }: T): Omit<T, "contextLength"> {
  return rest;
}

/** A `peers` entry of config.json; `apiKey` may be `env:VAR`, read from the server's environment. */
const ConfiguredPeer = v.object({
  name: v.pipe(v.string(), v.maxLength(64)),
  url: v.pipe(v.string(), v.maxLength(2048)),
  apiKey: v.optional(v.pipe(v.string(), v.maxLength(4096))),
});
export type ConfiguredPeer = v.InferOutput<typeof ConfiguredPeer>;

const ConfigFile = v.looseObject({
  models: v.optional(v.record(v.string(), ConfiguredModel)),
  peers: v.optional(v.pipe(v.array(ConfiguredPeer), v.maxLength(64))),
});

export interface ConfigFileContents {
  values: Record<string, unknown>;
  models: Record<string, ConfiguredModel>;
  /** Peers with their keys: the `--peer`/LMX_PEERS setting holds URLs only. */
  peers?: ConfiguredPeer[];
}

export function readConfigFile(home: string): ConfigFileContents {
  const path = join(home, "config.json");
  if (!existsSync(path)) return { values: {}, models: {}, peers: [] };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new UsageError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = v.safeParse(ConfigFile, raw);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new UsageError(`${path}: ${v.getDotPath(issue) ?? "(root)"}: ${issue.message}`);
  }
  const { models, peers, ...values } = parsed.output;
  return { values, models: models ?? {}, peers: peers ?? [] };
}

type SettingValue<S extends Setting> = S extends { kind: "int" } ? number | undefined
  : S extends { kind: "bool" } ? boolean
  : S extends { kind: "list" } ? string[]
  : S extends { kind: "map" } ? Record<string, string>
  : S extends { kind: "string"; default: string } ? string
  : string | undefined;

export type Resolved<T extends readonly Setting[]> = { [S in T[number] as S["key"]]: SettingValue<S> };

function convert(setting: Setting, raw: unknown, source: string): unknown {
  const where = `${source}: ${setting.kind === "bool" ? "" : "value "}`;
  switch (setting.kind) {
    case "string":
      if (typeof raw !== "string") throw new UsageError(`${where}expected a string`);
      if (setting.choices !== undefined && !setting.choices.includes(raw)) throw new UsageError(`${where}${JSON.stringify(raw)} is not one of ${setting.choices.join(", ")}`);
      return raw;
    case "int": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) throw new UsageError(`${where}${JSON.stringify(raw)} is not an integer`);
      if (setting.min !== undefined && n < setting.min) throw new UsageError(`${where}${n} is below the minimum ${setting.min}`);
      if (setting.max !== undefined && n > setting.max) throw new UsageError(`${where}${n} is above the maximum ${setting.max}`);
      return n;
    }
    case "bool":
      if (typeof raw === "boolean") return raw;
      if (typeof raw === "string" && /^(1|true|yes|on)$/i.test(raw)) return true;
      if (typeof raw === "string" && /^(0|false|no|off|)$/i.test(raw)) return false;
      throw new UsageError(`${where}${JSON.stringify(raw)} is not a boolean`);
    case "list":
      if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) return raw;
      if (typeof raw === "string") return raw.split(",").map((s) => s.trim()).filter(Boolean);
      throw new UsageError(`${where}expected a list of strings`);
    case "map":
      if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
        // A list value (a route's fallback chain) is kept as its comma-separated form, as on the command line.
        const entries = Object.entries(raw).map(([k, x]) => [k, Array.isArray(x) && x.every((y) => typeof y === "string") ? x.join(",") : x] as const);
        if (entries.every(([, x]) => typeof x === "string")) return Object.fromEntries(entries);
        throw new UsageError(`${where}expected an object of strings`);
      }
      if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) return pairs(raw, where);
      if (typeof raw === "string") return pairs(raw.split(setting.separator ?? ";"), where);
      throw new UsageError(`${where}expected NAME=VALUE pairs`);
  }
}

/** `NAME=VALUE` items (blank ones skipped) as an object; a later NAME replaces an earlier one. */
function pairs(items: readonly string[], where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items.map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf("=");
    if (eq <= 0 || eq === item.length - 1) throw new UsageError(`${where}'${item}' is not NAME=VALUE`);
    out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return out;
}

/** flag > LMX_* env > config.json > default, for every declared setting. */
export function resolveSettings<const T extends readonly Setting[]>(
  settings: T,
  flags: ParsedFlags,
  env: NodeJS.ProcessEnv,
  file: ConfigFileContents,
): Resolved<T> {
  const out: Record<string, unknown> = {};
  for (const s of settings) {
    const fromFlags = flags.values.get(s.key);
    const fromEnv = [envName(s.key), ...(s.envAliases ?? [])].map((n) => env[n]).find((x) => x !== undefined && x !== "");
    const fromFile = s.flagOnly ? undefined : file.values[s.key];
    let value: unknown;
    if (fromFlags) {
      // Repeated flags accumulate for lists; each occurrence is one item (paths may contain commas).
      value = s.kind === "list" ? fromFlags : s.kind === "map" ? convert(s, fromFlags, flagName(s.key)) : convert(s, fromFlags[fromFlags.length - 1], flagName(s.key));
    } else if (fromEnv !== undefined && fromEnv !== "") {
      value = convert(s, fromEnv, envName(s.key));
    } else if (fromFile !== undefined) {
      value = convert(s, fromFile, `config.json ${s.key}`);
    } else {
      value = s.kind === "map" ? {} : s.default;
    }
    out[s.key] = value;
  }
  return out as Resolved<T>;
}
