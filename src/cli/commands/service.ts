import { existsSync, openSync, readSync, closeSync, statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { lmxHome, parseFlags, resolveSettings } from "../../config/resolve.ts";
import { flagName, serveSettings, type Setting } from "../../config/settings.ts";
import { ServiceError, UpdateError, UsageError } from "../../errors.ts";
import { runningExecutable } from "../../update/self-update.ts";
import { logFile, ServiceManager, type ServiceSpec } from "../../service/manager.ts";
import { settingsHelp } from "../help.ts";
import { localFlagsHelp, wantsHelp } from "../local-flags.ts";
import type { Command } from "./index.ts";

const installSettings = [
  { key: "start", kind: "bool", default: true, flagOnly: true, description: "Start the service right away (--no-start only installs it)." },
  { key: "print", kind: "bool", default: false, flagOnly: true, description: "Print the files install would write, and change nothing." },
] as const;

const logsSettings = [
  { key: "follow", kind: "bool", default: false, flagOnly: true, description: "Keep printing new lines as they are written (-f)." },
  { key: "lines", kind: "int", default: 50, min: 0, max: 100000, flagOnly: true, placeholder: "N", description: "Lines to show from the end (-n N)." },
] as const;

const USAGE = "service install [serve options] [--no-start] [--print] | uninstall | start | stop | status | logs [-f] [-n N]";

// Passed to the service as environment variables so they are not visible in `ps` or in the unit.
const SECRET_ENV: Partial<Record<string, string>> = { apiKey: "LMX_API_KEYS", hfToken: "LMX_HF_TOKEN" };
// Relative paths would resolve against the service's working directory ($LMX_HOME), not the shell's.
const PATH_SETTINGS = new Set(["modelsDir", "hubCache", "lmstudioDir", "ollamaDir"]);

function absoluteModelSpec(spec: string): string {
  const eq = spec.indexOf("=");
  if (eq > 0 && !spec.slice(0, eq).includes("/")) return `${spec.slice(0, eq)}=${resolve(spec.slice(eq + 1))}`;
  return resolve(spec);
}

/** The serve flags as given, re-serialized (paths made absolute), with secrets moved to `env`. */
export function serviceSpecFromArgs(argv: string[], executable: string, home: string): ServiceSpec {
  const parsed = parseFlags(argv, serveSettings);
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
  // Rejects bad values now rather than in a service that then restarts forever.
  resolveSettings(serveSettings, parsed, {}, { values: {}, models: {} });
  const env: Record<string, string> = { LMX_HOME: home };
  const serveArgs: string[] = [];
  for (const setting of serveSettings as readonly Setting[]) {
    const values = parsed.values.get(setting.key);
    if (values === undefined) continue;
    const secret = SECRET_ENV[setting.key];
    if (secret !== undefined) {
      env[secret] = setting.kind === "list" ? values.join(",") : (values[values.length - 1] as string);
      continue;
    }
    for (const raw of setting.kind === "list" || setting.kind === "map" ? values : [values[values.length - 1] as string]) {
      let value = raw;
      if (setting.key === "model") value = absoluteModelSpec(raw);
      else if (PATH_SETTINGS.has(setting.key) && !isAbsolute(raw)) value = resolve(raw);
      serveArgs.push(setting.kind === "bool" ? (/^(1|true|yes|on)$/i.test(value) ? flagName(setting.key) : `--no-${flagName(setting.key).slice(2)}`) : `${flagName(setting.key)}=${value}`);
    }
  }
  return { executable, serveArgs, env, lmxHome: home };
}

function splitInstallArgs(argv: string[]): { own: string[]; serve: string[] } {
  const ownFlags = new Set(["--start", "--no-start", "--print"]);
  return { own: argv.filter((arg) => ownFlags.has(arg.split("=")[0] as string)), serve: argv.filter((arg) => !ownFlags.has(arg.split("=")[0] as string)) };
}

function tail(path: string, lines: number): { text: string; size: number } {
  const size = statSync(path).size;
  const length = Math.min(size, Math.max(64 * 1024, lines * 400));
  const buffer = Buffer.alloc(length);
  const fd = openSync(path, "r");
  try {
    readSync(fd, buffer, 0, length, size - length);
  } finally {
    closeSync(fd);
  }
  const all = buffer.toString("utf8").split("\n");
  if (all[all.length - 1] === "") all.pop();
  return { text: lines === 0 ? "" : all.slice(-lines).join("\n"), size };
}

async function follow(path: string, from: number): Promise<never> {
  let offset = from;
  for (;;) {
    await Bun.sleep(500);
    const size = existsSync(path) ? statSync(path).size : 0;
    if (size < offset) offset = 0; // rotated or truncated
    if (size > offset) {
      process.stdout.write(await Bun.file(path).slice(offset, size).text());
      offset = size;
    }
  }
}

export const service: Command = {
  summary: "Run lmx serve in the background (launchd on macOS, systemd on Linux)",
  async run(argv) {
    const [action, ...rest] = argv;
    if (action === undefined || wantsHelp(argv)) {
      console.log([
        `Usage: lmx ${USAGE}`,
        "",
        "install writes a launchd agent (~/Library/LaunchAgents/dev.lmx.server.plist) or a systemd user unit",
        "(~/.config/systemd/user/lmx.service) that runs 'lmx serve' with the serve options given here, starts at login,",
        "restarts when it exits and logs to $LMX_HOME/logs/lmx.log. API keys and tokens go into the environment, not the command line.",
        "",
        localFlagsHelp([...installSettings, ...logsSettings]),
        "",
        settingsHelp(serveSettings),
      ].join("\n"));
      return 0;
    }
    const home = lmxHome();
    try {
      const manager = new ServiceManager(home);
      switch (action) {
        case "install": {
          const { own, serve } = splitInstallArgs(rest);
          const ownFlags = parseFlags(own, installSettings);
          const options = resolveSettings(installSettings, ownFlags, {}, { values: {}, models: {} });
          const spec = serviceSpecFromArgs(serve, runningExecutable(), home);
          if (options.print) {
            for (const file of manager.render(spec)) console.log(`# ${file.path} (mode ${file.mode.toString(8)})\n${file.text}`);
            return 0;
          }
          await manager.install(spec, options.start);
          console.log([
            `Installed the ${manager.kind} service: ${manager.paths.definition}`,
            options.start ? `It is running 'lmx serve ${spec.serveArgs.join(" ")}' and starts at login.` : "Start it with: lmx service start",
            `Logs: lmx service logs -f   (${logFile(home)})`,
            manager.kind === "systemd" ? "To keep it running while you are logged out: loginctl enable-linger $USER" : undefined,
          ].filter(Boolean).join("\n"));
          return 0;
        }
        case "uninstall":
          await manager.uninstall();
          console.log(`Stopped and removed the ${manager.kind} service.`);
          return 0;
        case "start":
          await manager.start();
          console.log("Started the lmx service.");
          return 0;
        case "stop":
          await manager.stop();
          console.log("Stopped the lmx service.");
          return 0;
        case "status": {
          const status = await manager.status();
          console.log([
            `service:  ${manager.kind}, ${status.installed ? status.definition : "not installed"}`,
            `state:    ${status.running ? "running" : "not running"} (${status.detail})${status.pid ? `, pid ${status.pid}` : ""}`,
            `logs:     ${logFile(home)}`,
          ].join("\n"));
          return status.running ? 0 : 3;
        }
        case "logs": {
          const normalized = rest.map((arg) => (arg === "-f" ? "--follow" : arg === "-n" ? "--lines" : arg));
          const options = resolveSettings(logsSettings, parseFlags(normalized, logsSettings), {}, { values: {}, models: {} });
          const path = logFile(home);
          if (!existsSync(path)) {
            if (!options.follow) throw new ServiceError(`no log file yet at ${path}`);
            await follow(path, 0);
          }
          const { text, size } = tail(path, options.lines ?? 50);
          if (text) console.log(text);
          if (options.follow) await follow(path, size);
          return 0;
        }
        default:
          throw new UsageError(`usage: lmx ${USAGE}`);
      }
    } catch (err) {
      if (err instanceof ServiceError || err instanceof UpdateError) {
        console.error(`lmx service: ${err.message}`);
        return 1;
      }
      throw err;
    }
  },
};
