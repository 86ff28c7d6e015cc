import { lmxHome, parseFlags, readConfigFile, resolveSettings, type Resolved } from "../config/resolve.ts";
import { clientSettings, type Setting } from "../config/settings.ts";
import { UsageError } from "../errors.ts";
import { ApiError, LmxClient, ServerUnreachableError } from "./client.ts";
import type { Command } from "./commands/index.ts";
import { settingsHelp } from "./help.ts";

type ClientSettings = typeof clientSettings;

export interface ClientContext<S extends readonly Setting[]> {
  client: LmxClient;
  flags: Resolved<S>;
  args: string[];
  json: boolean;
  /** Prints `value` as JSON with --json, otherwise the human form. */
  print(value: unknown, human: () => string): void;
}

/**
 * A command that talks to a running server. It declares its own flags (shown in --help with the
 * client settings) and positional usage; connection, auth and error printing are handled here.
 */
export function clientCommand<const S extends readonly Setting[]>(spec: {
  summary: string;
  usage: string;
  description?: string;
  settings?: S;
  minArgs?: number;
  run(ctx: ClientContext<S>): Promise<number>;
}): Command {
  return {
    summary: spec.summary,
    async run(argv) {
      const own = (spec.settings ?? []) as unknown as S;
      if (argv.includes("--help") || argv.includes("-h")) {
        console.log([`Usage: lmx ${spec.usage}`, "", spec.description ?? spec.summary, "", settingsHelp([...own, ...clientSettings])].join("\n"));
        return 0;
      }
      const all = [...own, ...clientSettings] as readonly Setting[];
      const parsed = parseFlags(argv, all);
      if (parsed.positionals.length < (spec.minArgs ?? 0)) throw new UsageError(`usage: lmx ${spec.usage}`);
      const file = readConfigFile(lmxHome());
      const conn = resolveSettings(clientSettings, parsed, process.env, file) as Resolved<ClientSettings>;
      const flags = resolveSettings(own, parsed, process.env, file);
      const host = conn.host === "0.0.0.0" || conn.host === "::" ? "127.0.0.1" : conn.host.includes(":") ? `[${conn.host}]` : conn.host;
      const url = (conn.url ?? `http://${host}:${conn.port}`).replace(/\/+$/, "");
      const client = new LmxClient(url, conn.token);
      const print = (value: unknown, human: () => string) => console.log(conn.json ? JSON.stringify(value, null, 2) : human());
      try {
        return await spec.run({ client, flags, args: parsed.positionals, json: conn.json, print });
      } catch (err) {
        if (err instanceof ApiError || err instanceof ServerUnreachableError) {
          console.error(`lmx: ${err.message}`);
          return 1;
        }
        throw err;
      }
    },
  };
}
