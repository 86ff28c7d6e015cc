// How a running server moves to a newly selected engine. Two node-llama-cpp versions cannot live in
// one process, so the server restarts itself: it stops taking loads (they answer 503
// engine_restarting), waits for running and queued requests to finish, shuts down the way SIGTERM
// does (models unloaded, port closed, database closed) and then execve()s its own executable with
// the same arguments. The process id stays the same, so a terminal, launchd or systemd see one
// uninterrupted process; the new image imports the selected engine at its first load.

import { log } from "../log.ts";
import { onEngineSwitch } from "../engines/llama/loader.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import { isCompiledExecutable } from "./self-update.ts";

const DRAIN_LIMIT_MS = 120_000;

/** The part of a running server a restart needs (the server itself sits above this layer). */
export interface Restartable {
  scheduler: Pick<Scheduler, "loaded">;
  stop(): Promise<void>;
}

/** Arguments that start this same program again: the executable's own, or `bun <script>` from source. */
export function selfCommand(): string[] {
  return [process.execPath, ...process.argv.slice(isCompiledExecutable() ? 2 : 1)];
}

async function waitUntilIdle(server: Restartable, limitMs: number): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const busy = (await server.scheduler.loaded()).reduce((sum, model) => sum + model.running + model.queued, 0);
    if (busy === 0) return true;
    if (Date.now() > deadline) return false;
    await Bun.sleep(250);
  }
}

/** Makes `server` restart into the selected engine when a load finds that the selection changed. */
export function restartOnEngineSwitch(server: Restartable): void {
  let restarting = false;
  onEngineSwitch((next) => {
    if (restarting) return;
    restarting = true;
    log.info("llama.cpp engine switch: restarting once running requests finish", { to: next.nodeLlamaCppVersion, source: next.source });
    void (async () => {
      const idle = await waitUntilIdle(server, DRAIN_LIMIT_MS);
      if (!idle) log.warn("requests still running after 120 s; restarting anyway");
      await server.stop();
      const [file, ...rest] = selfCommand();
      log.info("restarting", { command: [file, ...rest].join(" ") });
      // Bun implements process.execve; the typings mark it optional because Windows lacks it.
      if (process.execve === undefined) throw new Error("this platform cannot restart a process in place");
      process.execve(file as string, [file as string, ...rest], process.env as Record<string, string>);
    })().catch((err: unknown) => {
      // Exiting non-zero lets a service manager start a fresh process; staying up half-stopped would not.
      log.error("engine switch restart failed", { error: err instanceof Error ? err.message : String(err) });
      process.exit(1);
    });
  });
}
