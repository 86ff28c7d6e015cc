#!/usr/bin/env bun
import { UsageError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { runForkedEngineScript } from "../engines/llama/loader.ts";
import { runTrialLoadChild } from "../engines/llama/trial-load.ts";
import { runVerifyChild } from "../engines/llama/build-verify.ts";
import { commands, printHelp } from "./commands/index.ts";

async function main(argv: string[]): Promise<number> {
  // node-llama-cpp re-runs this executable to test its native binary; hand such a child over to it.
  if (await runForkedEngineScript()) return -1;
  // The engine runs a model's first load in a child of this executable (crash isolation).
  if (await runTrialLoadChild(process.argv)) return -1;
  // `lmx engine build` checks a new engine in a child of this executable before registering it.
  if (await runVerifyChild(process.argv)) return -1;
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    const topic = name === "help" ? rest[0] : undefined;
    if (topic && commands[topic]) return commands[topic].run(["--help"]);
    printHelp();
    return 0;
  }
  if (name === "--version" || name === "-v" || name === "version") {
    console.log(`lmx ${VERSION}`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`lmx: unknown command '${name}'. Run 'lmx help' for the list.`);
    return 2;
  }
  return command.run(rest);
}

try {
  const code = await main(process.argv.slice(2));
  if (code !== -1) process.exitCode = code;
} catch (err) {
  if (err instanceof UsageError) {
    console.error(`lmx: ${err.message}`);
    process.exitCode = 2;
  } else {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exitCode = 1;
  }
}
