import { engine } from "./engine.ts";
import { bench } from "./bench.ts";
import { importCmd } from "./import.ts";
import { keys } from "./keys.ts";
import { load } from "./load.ts";
import { peers } from "./peers.ts";
import { ls } from "./ls.ts";
import { probe } from "./probe.ts";
import { ps } from "./ps.ts";
import { pull } from "./pull.ts";
import { rm } from "./rm.ts";
import { run } from "./run.ts";
import { runtime } from "./runtime.ts";
import { search } from "./search.ts";
import { serve } from "./serve.ts";
import { service } from "./service.ts";
import { show } from "./show.ts";
import { unload } from "./unload.ts";
import { update } from "./update.ts";

export interface Command {
  summary: string;
  /** Returns the exit code, or -1 for a long-running command that exits on its own. */
  run(args: string[]): Promise<number>;
}

export const commands: Record<string, Command> = { serve, pull, search, ls, ps, load, unload, run, show, rm, probe, import: importCmd, keys, peers, runtime, update, engine, service, bench };

export function printHelp(): void {
  const lines = [
    "lmx — a headless local LLM server with an OpenAI-compatible API",
    "",
    "Usage: lmx <command> [options]",
    "",
    "Commands:",
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`),
    `  ${"help".padEnd(10)} Show help for a command (lmx help serve)`,
    "",
    "Options:",
    "  --version  Print the version",
    "",
    "Settings come from flags, then LMX_* environment variables, then $LMX_HOME/config.json ($LMX_HOME defaults to ~/.lmx).",
  ];
  console.log(lines.join("\n"));
}
