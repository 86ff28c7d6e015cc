import { lmxHome, parseFlags, readConfigFile, resolveSettings } from "../../config/resolve.ts";
import { serveSettings } from "../../config/settings.ts";
import { configureLog, log } from "../../log.ts";
import { restartOnEngineSwitch } from "../../update/restart.ts";
import { startServer } from "../../server.ts";
import { settingsHelp } from "../help.ts";
import type { Command } from "./index.ts";

export const serve: Command = {
  summary: "Start the OpenAI-compatible server",
  async run(args) {
    if (args.includes("--help") || args.includes("-h")) {
      console.log(["Usage: lmx serve [options]", "", "Serve GGUF models over an OpenAI-compatible HTTP API.", "", settingsHelp(serveSettings)].join("\n"));
      return 0;
    }
    const flags = parseFlags(args, serveSettings);
    if (flags.positionals.length > 0) {
      throw new (await import("../../errors.ts")).UsageError(`unexpected argument '${flags.positionals[0]}' (models are given with --model PATH)`);
    }
    const home = lmxHome();
    const file = readConfigFile(home);
    const config = resolveSettings(serveSettings, flags, process.env, file);
    configureLog({ level: config.logLevel, format: config.logFormat });
    const server = await startServer(config, home, file.models, process.env, file.peers);
    restartOnEngineSwitch(server);
    let shuttingDown = false;
    const shutdown = (signal: string) => {
      if (shuttingDown) {
        // A second signal means "now". SQLite calls are synchronous, so no write is half-done here.
        log.warn("second signal; exiting now", { signal });
        try {
          server.closeDbNow();
        } finally {
          process.exit(1);
        }
      }
      shuttingDown = true;
      const graceMs = (config.shutdownGrace ?? 10) * 1000;
      log.info("shutting down", { signal, graceSeconds: config.shutdownGrace });
      // Every step of stop() is bounded; this is the last resort should one still hang.
      setTimeout(() => {
        log.error("shutdown did not finish in time; exiting");
        try {
          server.closeDbNow();
        } finally {
          process.exit(1);
        }
      }, graceMs + 30_000).unref();
      server.stop(graceMs).then(
        () => process.exit(0),
        (err: unknown) => {
          log.error("shutdown failed", { error: String(err) });
          process.exit(1);
        },
      );
    };
    // `on`, not `once`: with `once` Bun restores the default action while the graceful stop is
    // still running and the process dies with 143 before models are unloaded.
    process.on("SIGINT", () => shutdown("SIGINT"));
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    return -1;
  },
};
