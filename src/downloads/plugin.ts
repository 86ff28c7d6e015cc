import { adminDownloadRoutes } from "../api/admin/downloads.ts";
import { hubCacheDir, hubToken } from "../hub/cache.ts";
import type { ServerPlugin } from "../server.ts";
import { HubExecutor } from "./hub-executor.ts";
import { DownloadJobs } from "./jobs.ts";

/** Hugging Face downloads and search, layered on the core server. */
export async function downloadsPlugin(env: NodeJS.ProcessEnv = process.env): Promise<ServerPlugin> {
  const token = await hubToken(env);
  return {
    routes({ db, events, scheduler, config }) {
      const hub = { hubUrl: config.hubUrl.replace(/\/+$/, ""), token: config.hfToken ?? token, cacheDir: config.hubCache ?? hubCacheDir(env) };
      // Metadata of finished downloads is read by the engine that will serve them.
      const executor = new HubExecutor(hub, (d) => scheduler.engineFor(d).inspect(d));
      const jobs = new DownloadJobs(db, events, executor);
      return {
        routes: adminDownloadRoutes(jobs, hub, () => scheduler.memoryBudget),
        fileRemover: executor,
        stop: () => jobs.stop(),
      };
    },
  };
}
