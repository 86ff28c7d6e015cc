import type { AnyElysia } from "elysia";
import { homedir } from "node:os";
import { join } from "node:path";
import { adminImportRoutes } from "./api/routes/admin-import.ts";
import { adminRuntimeRoutes } from "./api/routes/admin-runtimes.ts";
import { createApp } from "./api/app.ts";
import { isLoopback, Security } from "./api/security.ts";
import { KeyStore } from "./auth/keys.ts";
import type { ModelOverrides, Resolved } from "./config/resolve.ts";
import type { serveSettings } from "./config/settings.ts";
import { LlamaCppEngine } from "./engines/llama/engine.ts";
import { MlxEngine } from "./engines/mlx/engine.ts";
import { errorMessage, UsageError } from "./errors.ts";
import { EventBus } from "./events/bus.ts";
import { InferenceService } from "./inference/service.ts";
import { log } from "./log.ts";
import { ModelCatalog } from "./models/catalog.ts";
import { LoadHistory } from "./models/history.ts";
import { ModelImporter } from "./models/importer.ts";
import { type FileRemover, ModelManager } from "./models/manager.ts";
import { ModelRegistry } from "./models/registry.ts";
import { ProbeService } from "./probe/service.ts";
import { MlxRuntime } from "./runtimes/mlx.ts";
import { Scheduler } from "./scheduler/scheduler.ts";
import { type Db, openDb } from "./store/db.ts";
import { cpuInfo } from "./util/cpu.ts";
import { parseMemorySize } from "./util/size.ts";
import { bounded } from "./util/watch.ts";

export type ServeConfig = Resolved<typeof serveSettings>;

/** Longest wait for one shutdown step after the grace period (unloading a model, freeing an engine). */
const STEP_LIMIT_MS = 3000;

export interface RunningServer {
  url: string;
  port: number;
  scheduler: Scheduler;
  db: Db;
  events: EventBus;
  /**
   * Stops taking requests, lets running ones finish for up to `graceMs` (default 0: abort them at
   * once), then aborts the rest, frees models and closes the database. Never hangs: every step
   * is bounded. Idempotent.
   */
  stop(graceMs?: number): Promise<void>;
  /** Checkpoints and closes the database now (for an immediate exit on a second signal). */
  closeDbNow(): void;
}

/** Capabilities layered on the core server (downloads, hub search, import) get the core services. */
export interface ServerPlugin {
  routes(core: { db: Db; registry: ModelRegistry; events: EventBus; scheduler: Scheduler; home: string; config: ServeConfig }): { routes: AnyElysia; fileRemover?: FileRemover; stop?: () => Promise<void> };
}

/** Wires store, catalog, engine, scheduler and HTTP app together and starts listening. */
export async function startServer(config: ServeConfig, home: string, modelOverrides: Record<string, ModelOverrides> = {}, plugins: ServerPlugin[] = []): Promise<RunningServer> {
  if (!isLoopback(config.host) && config.apiKey.length === 0 && !config.insecureNoAuth) {
    throw new UsageError(
      `refusing to listen on ${config.host} without an API key: anyone on the network could use this machine. ` +
      "Pass --api-key KEY (or LMX_API_KEYS), or --insecure-no-auth if that is really what you want.");
  }
  let memoryBudget: number;
  try {
    memoryBudget = parseMemorySize(config.memoryBudget);
  } catch (err) {
    throw new UsageError(`--memory-budget: ${(err as Error).message}`);
  }
  const db = openDb(join(home, "lmx.db"));
  const events = new EventBus();
  const registry = new ModelRegistry(db);
  const history = new LoadHistory(db, events);
  const keys = new KeyStore(db, config.apiKey);
  const catalog = new ModelCatalog({
    modelsDir: config.modelsDir ?? join(home, "models"),
    explicit: config.model,
    configured: Object.fromEntries(Object.entries(modelOverrides).flatMap(([id, o]) => (o.path ? [[id, o.path]] : []))),
    registered: () => registry.descriptors(),
    aliases: () => registry.aliases(),
  });
  const engine = new LlamaCppEngine(home);
  // MLX models run in a Python runtime LMX installs and supervises (src/runtimes/, docs/mlx.md).
  const mlxRuntime: MlxRuntime = new MlxRuntime(db, home, { python: config.python, autoInstall: config.autoInstallRuntimes, inUse: (): boolean => mlxEngine.inUse });
  const mlxEngine = new MlxEngine(mlxRuntime);
  const threads = config.threads || cpuInfo().defaultThreads;
  const scheduler = new Scheduler(catalog, { gguf: engine, mlx: mlxEngine }, {
    contextLength: config.ctx,
    parallel: config.parallel ?? 4,
    threads,
    batchSize: config.batchSize,
    queueLimit: config.queue ?? 64,
    memoryBudget,
    ttlSeconds: config.ttl ?? 0,
  }, modelOverrides, {
    savedDefaults: (id) => registry.savedDefaults(id),
    events,
    // Bound late: the probe service needs the scheduler it informs.
    testedContext: (d) => probes.testedDefault(d),
  });
  const probes: ProbeService = new ProbeService(db, scheduler, registry, events);
  const extras = plugins.map((p) => p.routes({ db, registry, events, scheduler, home, config }));
  const fileRemover = extras.find((x) => x.fileRemover)?.fileRemover;
  const manager = new ModelManager(scheduler, registry, history, probes, fileRemover);
  const importer = new ModelImporter(registry, {
    lmstudioDir: config.lmstudioDir ?? join(homedir(), ".lmstudio", "models"),
    ollamaDir: config.ollamaDir ?? join(homedir(), ".ollama", "models"),
  }, (d) => engine.inspect(d));
  const inference = new InferenceService(scheduler);
  const security = new Security({ boundHost: config.host, keys, corsOrigins: config.corsOrigin, allowedHosts: config.allowedHost });
  const app = createApp({ scheduler, inference, security, manager, events, keys, probes, home, extra: [adminImportRoutes(importer), adminRuntimeRoutes(mlxRuntime), ...extras.map((x) => x.routes)] });
  let dbClosed = false;
  const closeDb = () => {
    if (dbClosed) return;
    dbClosed = true;
    history.close();
    try {
      // Folds the WAL into the database file, so what is left on disk is one self-contained file.
      db.$client.run("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch (err) {
      log.warn("WAL checkpoint failed at shutdown", { error: errorMessage(err) });
    }
    db.$client.close();
  };
  const shutdownCore = async () => {
    try {
      probes.stop();
      // Download jobs re-queue themselves and resume at the next start.
      for (const x of extras) await bounded("a plugin to stop", Promise.resolve(x.stop?.()), STEP_LIMIT_MS);
      await scheduler.shutdown(STEP_LIMIT_MS);
    } finally {
      closeDb();
    }
  };
  try {
    // idleTimeout 0: a non-streamed generation may run for minutes before its first byte.
    app.listen({ hostname: config.host, port: config.port ?? 1234, idleTimeout: 0 });
  } catch (err) {
    await shutdownCore();
    throw new UsageError(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`);
  }
  // Bun's server itself: Elysia's stop() complains when called twice, and shutdown stops in two steps.
  const http = app.server!;
  const port = http.port!;
  const shownHost = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${shownHost}:${port}`;
  log.info("lmx listening", { url, models: catalog.list().length, threads, parallel: config.parallel, budget: config.memoryBudget, auth: security.authRequired });
  if (config.reprobeStale) void probes.reprobeStale().catch((err) => log.warn("re-probing stale models failed", { error: errorMessage(err) }));
  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    scheduler,
    db,
    events,
    stop(graceMs = 0) {
      stopping ??= (async () => {
        scheduler.drain();
        // Stop listening; connections with a request in flight stay open for the grace period.
        void Promise.resolve(http.stop(false)).catch(() => undefined);
        if (graceMs > 0 && !(await scheduler.waitIdle(graceMs))) log.warn("grace period over; aborting running requests", { graceSeconds: graceMs / 1000 });
        await shutdownCore();
        await bounded("the HTTP server to close its connections", Promise.resolve(http.stop(true)), STEP_LIMIT_MS);
      })();
      return stopping;
    },
    closeDbNow: closeDb,
  };
}
