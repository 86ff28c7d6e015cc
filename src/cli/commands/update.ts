import { lmxHome } from "../../config/resolve.ts";
import { ServiceError, UpdateError, UsageError } from "../../errors.ts";
import { currentEngineVersion, selectedEngine } from "../../engines/llama/loader.ts";
import { hostTarget } from "../../engines/llama/platform.ts";
import { compareVersions } from "../../engines/llama/selection.ts";
import { newestCompatibleEngine } from "../../update/engines.ts";
import { updateBaseUrl } from "../../update/manifest.ts";
import { applyUpdate, planUpdate, previousPath, rollback, runningExecutable, type SelfUpdateContext } from "../../update/self-update.ts";
import { ServiceManager } from "../../service/manager.ts";
import { BUILTIN_PUBLIC_KEYS } from "../../update/signing.ts";
import { CHANNEL, VERSION } from "../../version.ts";
import { localFlagsHelp, parseLocalFlags, wantsHelp } from "../local-flags.ts";
import { updateEngine } from "./engine.ts";
import type { Command } from "./index.ts";

const settings = [
  { key: "check", kind: "bool", default: false, flagOnly: true, description: "Only report whether a newer version (and engine) is published." },
  { key: "version", kind: "string", flagOnly: true, placeholder: "V", description: "Install exactly version V (also older ones)." },
  { key: "channel", kind: "string", flagOnly: true, placeholder: "C", description: "Release channel to follow (default: the one this build came from, else stable)." },
  { key: "engineOnly", kind: "bool", default: false, flagOnly: true, description: "Update only the llama.cpp engine bundle, not lmx itself (same as 'lmx engine update')." },
  { key: "rollback", kind: "bool", default: false, flagOnly: true, description: "Put back the version the last update replaced (kept as lmx.old)." },
] as const;

/** Restarts the background service after the executable changed; a note for the user, or undefined. */
async function restartService(home: string): Promise<string | undefined> {
  if (process.platform !== "darwin" && process.platform !== "linux") return undefined;
  const restarted = await new ServiceManager(home).restartIfRunning();
  return restarted ? "Restarted the background service on the new version." : undefined;
}

export const update: Command = {
  summary: "Update lmx to the latest signed release (or roll back)",
  async run(argv) {
    if (wantsHelp(argv)) {
      console.log([
        "Usage: lmx update [--check] [--version V] [--channel C] [--engine-only] [--rollback]",
        "",
        "Downloads the release manifest, verifies its Ed25519 signature with the key built into this lmx, downloads the new",
        "executable beside the installed one, checks its size and SHA-256, runs its --version, then renames it into place.",
        "The replaced executable is kept as lmx.old. On any failure the installed lmx is left untouched.",
        "Releases come from LMX_UPDATE_BASE_URL, else the URL built into this lmx.",
        "",
        localFlagsHelp(settings),
      ].join("\n"));
      return 0;
    }
    const { flags, args } = parseLocalFlags(argv, settings);
    if (args.length > 0) throw new UsageError(`unexpected argument '${args[0]}'`);
    const modes = [flags.check, flags.rollback, flags.engineOnly].filter(Boolean).length;
    if (modes > 1) throw new UsageError("--check, --rollback and --engine-only exclude each other");
    if (flags.rollback && (flags.version !== undefined || flags.channel !== undefined)) throw new UsageError("--rollback takes no --version or --channel");
    const home = lmxHome();
    const channel = flags.channel ?? (CHANNEL === "dev" ? "stable" : CHANNEL);
    try {
      if (flags.engineOnly) {
        await updateEngine(flags.version, (line) => console.log(line));
        return 0;
      }
      if (flags.rollback) {
        const executable = runningExecutable();
        const { from, to } = await rollback({ executable, lmxHome: home });
        console.log(`Rolled back lmx ${from} → ${to} (${executable}); ${from} is now ${previousPath(executable)}.`);
        const note = await restartService(home);
        if (note) console.log(note);
        return 0;
      }
      const executable = flags.check ? process.execPath : runningExecutable();
      const ctx: SelfUpdateContext = {
        lmxHome: home,
        baseUrl: updateBaseUrl(),
        keys: BUILTIN_PUBLIC_KEYS,
        executable,
        currentVersion: VERSION,
        target: hostTarget(),
      };
      const plan = await planUpdate(ctx, { version: flags.version, channel });
      if (flags.check) {
        const engine = newestCompatibleEngine(plan.verified.manifest);
        const lines = [
          `installed: lmx ${VERSION} (${ctx.target}), engine ${currentEngineVersion(home)}`,
          `${flags.version ? "requested" : `latest on ${channel}`}: lmx ${plan.release.version} (${plan.release.date.slice(0, 10)})`,
          plan.direction > 0 ? `An update is available: run "lmx update"${flags.version ? ` --version ${flags.version}` : ""}.` : "lmx is up to date.",
        ];
        const inUse = selectedEngine(home).nodeLlamaCppVersion;
        if (engine !== undefined && compareVersions(engine.version, inUse) <= 0) {
          lines.push(`The engine in use (${inUse}) is the newest one for this lmx.`);
        } else if (engine !== undefined) {
          lines.push(`A newer engine is available: ${engine.version} (llama.cpp ${engine.entry.llamaCpp}, ${engine.entry.architectures.length} architectures); "lmx engine update" installs it.`);
        }
        console.log(lines.join("\n"));
        return 0;
      }
      if (plan.direction === 0) {
        console.log(`lmx ${VERSION} is the ${flags.version ? "requested" : `latest ${channel}`} version already.`);
        return 0;
      }
      if (plan.direction < 0 && flags.version === undefined) {
        // A replayed old manifest must not be able to downgrade anyone; going back is explicit.
        throw new UpdateError(`the manifest's latest ${channel} release (${plan.release.version}) is older than this lmx (${VERSION}); pass --version ${plan.release.version} to downgrade on purpose`);
      }
      console.log(`Downloading lmx ${plan.release.version} for ${ctx.target} (${(plan.artifact.size / 1024 / 1024).toFixed(1)} MB)…`);
      const installed = await applyUpdate(ctx, plan);
      console.log(`Updated lmx ${VERSION} → ${installed} (${ctx.executable}). The previous version is kept as ${previousPath(ctx.executable)}; "lmx update --rollback" puts it back.`);
      try {
        const note = await restartService(home);
        if (note) console.log(note);
      } catch (err) {
        if (!(err instanceof ServiceError)) throw err;
        console.error(`lmx update: updated, but restarting the background service failed: ${err.message}`);
        return 1;
      }
      return 0;
    } catch (err) {
      if (err instanceof UpdateError) {
        console.error(`lmx update: ${err.message}`);
        if (!flags.check && !flags.engineOnly) console.error("The installed lmx was not changed.");
        return 1;
      }
      throw err;
    }
  },
};
