// `lmx service`: runs `lmx serve` in the background under the system's own service manager — a
// launchd agent on macOS, a systemd user unit on Linux — so it starts at login, restarts if it
// dies, and logs to $LMX_HOME/logs/lmx.log on both. The serve flags given to `lmx service install`
// are written into the agent/unit; secrets among them (API keys, the Hugging Face token) go into
// environment variables in a file only the user can read, never onto a command line that `ps`
// shows.

import { existsSync } from "node:fs";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { homedir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { ServiceError } from "../errors.ts";

export const LAUNCHD_LABEL = "dev.lmx.server";
export const SYSTEMD_UNIT = "lmx.service";

export interface ServiceSpec {
  executable: string;
  /** Arguments after `lmx serve`. */
  serveArgs: string[];
  /** Environment the server runs with (LMX_HOME and the secrets). */
  env: Record<string, string>;
  lmxHome: string;
}

export type ServiceKind = "launchd" | "systemd";

export function serviceKind(platform: NodeJS.Platform = process.platform): ServiceKind {
  if (platform === "darwin") return "launchd";
  if (platform === "linux") return "systemd";
  throw new ServiceError(`lmx service supports macOS (launchd) and Linux (systemd), not ${platform}`);
}

export function logFile(lmxHome: string): string {
  return join(lmxHome, "logs", "lmx.log");
}

export interface ServicePaths {
  /** The plist or unit file. */
  definition: string;
  /** systemd: the EnvironmentFile with secrets (launchd keeps them in the 0600 plist). */
  envFile?: string;
}

export function servicePaths(kind: ServiceKind, lmxHome: string, env: NodeJS.ProcessEnv = process.env): ServicePaths {
  const home = env.HOME || homedir();
  if (kind === "launchd") return { definition: join(home, "Library", "LaunchAgents", `${LAUNCHD_LABEL}.plist`) };
  const configHome = env.XDG_CONFIG_HOME || join(home, ".config");
  return { definition: join(configHome, "systemd", "user", SYSTEMD_UNIT), envFile: join(lmxHome, "service.env") };
}

function xml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

/** The launchd agent: runs at login, restarted whenever it exits, logging under $LMX_HOME/logs. */
export function renderLaunchdPlist(spec: ServiceSpec): string {
  const args = [spec.executable, "serve", ...spec.serveArgs].map((arg) => `    <string>${xml(arg)}</string>`).join("\n");
  const env = Object.entries(spec.env)
    .map(([key, value]) => `    <key>${xml(key)}</key>\n    <string>${xml(value)}</string>`)
    .join("\n");
  const log = xml(logFile(spec.lmxHome));
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>${LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
${args}
  </array>
  <key>EnvironmentVariables</key>
  <dict>
${env}
  </dict>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <true/>
  <key>ThrottleInterval</key>
  <integer>5</integer>
  <key>WorkingDirectory</key>
  <string>${xml(spec.lmxHome)}</string>
  <key>StandardOutPath</key>
  <string>${log}</string>
  <key>StandardErrorPath</key>
  <string>${log}</string>
</dict>
</plist>
`;
}

/** One systemd command-line word: quoted, with `\`, `"`, `%` and `$` escaped as systemd wants. */
function systemdWord(text: string): string {
  if (/[\n\r]/.test(text)) throw new ServiceError(`cannot put a value with a line break into a systemd unit: ${JSON.stringify(text)}`);
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/%/g, "%%").replace(/\$/g, "$$$$")}"`;
}

/** A path in a unit setting that takes it unquoted (WorkingDirectory, EnvironmentFile, append:). */
function systemdPath(path: string): string {
  if (/\s/.test(path)) throw new ServiceError(`the systemd unit cannot name a path with white space: ${JSON.stringify(path)} (choose an LMX_HOME without spaces)`);
  return path.replace(/%/g, "%%");
}

/** The systemd user unit; secrets come from `envFile`, everything else is in the unit. */
export function renderSystemdUnit(spec: ServiceSpec, envFile: string): string {
  const exec = [spec.executable, "serve", ...spec.serveArgs].map(systemdWord).join(" ");
  const log = systemdPath(logFile(spec.lmxHome));
  return `[Unit]
Description=LMX local LLM server (OpenAI-compatible API)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=${exec}
EnvironmentFile=-${systemdPath(envFile)}
WorkingDirectory=${systemdPath(spec.lmxHome)}
Restart=always
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=60
StandardOutput=append:${log}
StandardError=append:${log}

[Install]
WantedBy=default.target
`;
}

/** KEY=value lines for systemd's EnvironmentFile (values double-quoted, `\` and `"` escaped). */
export function renderEnvFile(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([key, value]) => {
      if (/[\n\r]/.test(value)) throw new ServiceError(`environment value for ${key} contains a line break`);
      return `${key}="${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
    })
    .join("\n") + "\n";
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type CommandRunner = (argv: string[]) => Promise<CommandResult>;

export const runCommand: CommandRunner = async (argv) => {
  let proc;
  try {
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  } catch (err) {
    return { code: 127, stdout: "", stderr: err instanceof Error ? err.message : String(err) };
  }
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
};

async function writePrivate(path: string, text: string, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.tmp-${process.pid}`;
  await writeFile(temp, text, { mode });
  await chmod(temp, mode);
  await rename(temp, path);
}

export interface ServiceStatus {
  installed: boolean;
  running: boolean;
  pid?: number;
  /** The manager's own words ("active (running)", "state = running"). */
  detail: string;
  definition: string;
}

export class ServiceManager {
  readonly kind: ServiceKind;
  readonly paths: ServicePaths;

  constructor(
    readonly lmxHome: string,
    private readonly run: CommandRunner = runCommand,
    kind: ServiceKind = serviceKind(),
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.kind = kind;
    this.paths = servicePaths(kind, lmxHome, env);
  }

  private get domain(): string {
    return `gui/${userInfo().uid}`;
  }

  private async must(argv: string[], what: string): Promise<CommandResult> {
    const result = await this.run(argv);
    if (result.code !== 0) {
      const detail = (result.stderr || result.stdout).trim();
      const hint = this.kind === "systemd" && /bus|XDG_RUNTIME_DIR|Failed to connect/i.test(detail)
        ? " (no systemd user session here: log in through a normal session, or run 'loginctl enable-linger $USER' as an admin)"
        : "";
      throw new ServiceError(`${what} failed: ${argv.join(" ")} exited with ${result.code}${detail ? `: ${detail}` : ""}${hint}`);
    }
    return result;
  }

  /** The files install would write, without writing them. */
  render(spec: ServiceSpec): Array<{ path: string; text: string; mode: number }> {
    if (this.kind === "launchd") return [{ path: this.paths.definition, text: renderLaunchdPlist(spec), mode: 0o600 }];
    const envFile = this.paths.envFile as string;
    return [
      { path: this.paths.definition, text: renderSystemdUnit(spec, envFile), mode: 0o644 },
      { path: envFile, text: renderEnvFile(spec.env), mode: 0o600 },
    ];
  }

  async install(spec: ServiceSpec, start: boolean): Promise<void> {
    await mkdir(dirname(logFile(spec.lmxHome)), { recursive: true });
    for (const file of this.render(spec)) await writePrivate(file.path, file.text, file.mode);
    if (this.kind === "launchd") {
      // Reinstalling replaces a loaded agent; bootout of one that is not loaded just fails.
      await this.run(["launchctl", "bootout", `${this.domain}/${LAUNCHD_LABEL}`]);
      if (start) await this.must(["launchctl", "bootstrap", this.domain, this.paths.definition], "loading the launchd agent");
      return;
    }
    await this.must(["systemctl", "--user", "daemon-reload"], "reloading systemd");
    await this.must(["systemctl", "--user", "enable", SYSTEMD_UNIT], "enabling the unit");
    if (start) await this.must(["systemctl", "--user", "restart", SYSTEMD_UNIT], "starting the unit");
  }

  async uninstall(): Promise<void> {
    if (this.kind === "launchd") {
      await this.run(["launchctl", "bootout", `${this.domain}/${LAUNCHD_LABEL}`]);
      await rm(this.paths.definition, { force: true });
      return;
    }
    await this.run(["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT]);
    await rm(this.paths.definition, { force: true });
    if (this.paths.envFile) await rm(this.paths.envFile, { force: true });
    await this.run(["systemctl", "--user", "daemon-reload"]);
  }

  private requireInstalled(): void {
    if (!existsSync(this.paths.definition)) throw new ServiceError(`the service is not installed (no ${this.paths.definition}); run "lmx service install"`);
  }

  async start(): Promise<void> {
    this.requireInstalled();
    if (this.kind === "launchd") {
      const loaded = await this.run(["launchctl", "print", `${this.domain}/${LAUNCHD_LABEL}`]);
      if (loaded.code !== 0) await this.must(["launchctl", "bootstrap", this.domain, this.paths.definition], "loading the launchd agent");
      else await this.must(["launchctl", "kickstart", `${this.domain}/${LAUNCHD_LABEL}`], "starting the launchd agent");
      return;
    }
    await this.must(["systemctl", "--user", "start", SYSTEMD_UNIT], "starting the unit");
  }

  async stop(): Promise<void> {
    this.requireInstalled();
    // KeepAlive would restart a killed agent at once, so stopping means unloading it.
    if (this.kind === "launchd") await this.must(["launchctl", "bootout", `${this.domain}/${LAUNCHD_LABEL}`], "stopping the launchd agent");
    else await this.must(["systemctl", "--user", "stop", SYSTEMD_UNIT], "stopping the unit");
  }

  async restart(): Promise<void> {
    this.requireInstalled();
    if (this.kind === "launchd") await this.must(["launchctl", "kickstart", "-k", `${this.domain}/${LAUNCHD_LABEL}`], "restarting the launchd agent");
    else await this.must(["systemctl", "--user", "restart", SYSTEMD_UNIT], "restarting the unit");
  }

  async status(): Promise<ServiceStatus> {
    const definition = this.paths.definition;
    const installed = existsSync(definition);
    if (this.kind === "launchd") {
      const result = await this.run(["launchctl", "print", `${this.domain}/${LAUNCHD_LABEL}`]);
      if (result.code !== 0) return { installed, running: false, detail: installed ? "not loaded" : "not installed", definition };
      const state = /^\s*state = (.+)$/m.exec(result.stdout)?.[1]?.trim() ?? "unknown";
      const pid = Number(/^\s*pid = (\d+)$/m.exec(result.stdout)?.[1]);
      return { installed, running: state === "running", pid: Number.isInteger(pid) ? pid : undefined, detail: `state = ${state}`, definition };
    }
    const result = await this.run(["systemctl", "--user", "show", SYSTEMD_UNIT, "--property=ActiveState,SubState,MainPID"]);
    if (result.code !== 0) return { installed, running: false, detail: (result.stderr || result.stdout).trim() || "systemctl failed", definition };
    const prop = (name: string): string | undefined => new RegExp(`^${name}=(.*)$`, "m").exec(result.stdout)?.[1]?.trim();
    const active = prop("ActiveState") ?? "unknown";
    const pid = Number(prop("MainPID"));
    return { installed, running: active === "active", pid: pid > 0 ? pid : undefined, detail: `${active} (${prop("SubState") ?? "?"})`, definition };
  }

  /** Restarts the service if it is installed and running; true if it did. */
  async restartIfRunning(): Promise<boolean> {
    if (!existsSync(this.paths.definition)) return false;
    const status = await this.status().catch(() => undefined);
    if (!status?.running) return false;
    await this.restart();
    return true;
  }
}
