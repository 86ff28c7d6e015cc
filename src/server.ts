import { join } from "node:path";
import { createApp } from "./api/app.ts";
import { isLoopback, Security } from "./api/security.ts";
import type { ModelOverrides } from "./config/resolve.ts";
import type { Resolved } from "./config/resolve.ts";
import type { serveSettings } from "./config/settings.ts";
import { LlamaCppEngine } from "./engines/llama/engine.ts";
import { UsageError } from "./errors.ts";
import { InferenceService } from "./inference/service.ts";
import { log } from "./log.ts";
import { ModelCatalog } from "./models/catalog.ts";
import { Scheduler } from "./scheduler/scheduler.ts";
import { cpuInfo } from "./util/cpu.ts";

export type ServeConfig = Resolved<typeof serveSettings>;

export interface RunningServer {
  url: string;
  port: number;
  scheduler: Scheduler;
  stop(): Promise<void>;
}

/** Wires catalog, engine, scheduler and HTTP app together and starts listening. */
export async function startServer(config: ServeConfig, home: string, modelOverrides: Record<string, ModelOverrides> = {}): Promise<RunningServer> {
  if (!isLoopback(config.host) && config.apiKey.length === 0 && !config.insecureNoAuth) {
    throw new UsageError(
      `refusing to listen on ${config.host} without an API key: anyone on the network could use this machine. ` +
      "Pass --api-key KEY (or LMX_API_KEYS), or --insecure-no-auth if that is really what you want.");
  }
  const catalog = new ModelCatalog({
    modelsDir: config.modelsDir ?? join(home, "models"),
    explicit: config.model,
    configured: Object.fromEntries(Object.entries(modelOverrides).flatMap(([id, o]) => (o.path ? [[id, o.path]] : []))),
  });
  const engine = new LlamaCppEngine(home);
  const threads = config.threads || cpuInfo().defaultThreads;
  const scheduler = new Scheduler(catalog, engine, {
    contextLength: config.ctx,
    parallel: config.parallel ?? 4,
    threads,
    batchSize: config.batchSize,
    queueLimit: config.queue ?? 64,
  }, modelOverrides);
  const inference = new InferenceService(scheduler);
  const security = new Security({ boundHost: config.host, apiKeys: config.apiKey, corsOrigins: config.corsOrigin, allowedHosts: config.allowedHost });
  const app = createApp({ scheduler, inference, security });
  try {
    // idleTimeout 0: a non-streamed generation may run for minutes before its first byte.
    app.listen({ hostname: config.host, port: config.port ?? 1234, idleTimeout: 0 });
  } catch (err) {
    await scheduler.shutdown();
    throw new UsageError(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`);
  }
  const port = app.server!.port!;
  const shownHost = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${shownHost}:${port}`;
  log.info("lmx listening", { url, models: catalog.list().length, threads, parallel: config.parallel, auth: security.authRequired });
  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    scheduler,
    stop() {
      stopping ??= (async () => {
        await app.stop(true);
        await scheduler.shutdown();
      })();
      return stopping;
    },
  };
}
