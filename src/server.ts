import { homedir } from "node:os";
import type { Server } from "bun";
import { join } from "node:path";
import * as v from "valibot";
import { createApp } from "./api/app.ts";
import { ConnectionGuard } from "./api/connections.ts";
import { portTakenMessage } from "./api/port-clash.ts";
import { isLoopback, Security } from "./api/security.ts";
import { KeyStore } from "./auth/keys.ts";
import { loadSettingFields } from "./config/load-settings.ts";
import type { ConfiguredModel, ConfiguredPeer, Resolved } from "./config/resolve.ts";
import type { serveSettings } from "./config/settings.ts";
import { LlamaCppEngine } from "./engines/llama/engine.ts";
import { engineBundleInfo } from "./engines/llama/loader.ts";
import { MlxEngine } from "./engines/mlx/engine.ts";
import { HubExecutor } from "./downloads/hub-executor.ts";
import { DownloadJobs } from "./downloads/jobs.ts";
import { EngineBuildJobs } from "./update/engine-build/jobs.ts";
import { runEngineBuild } from "./update/engine-build/request.ts";
import { errorMessage, UsageError } from "./errors.ts";
import { EventBus } from "./events/bus.ts";
import { hubCacheDir, hubToken } from "./hub/cache.ts";
import { isReasoningFormat, REASONING_FORMATS } from "./core/reasoning.ts";
import { InferenceCore } from "./core/service.ts";
import { log } from "./log.ts";
import { Metrics } from "./metrics/service.ts";
import { ModelCatalog } from "./models/catalog.ts";
import { LoadHistory } from "./models/history.ts";
import { LoadRecordStore } from "./models/load-records.ts";
import { ModelImporter } from "./models/importer.ts";
import { ModelManager } from "./admin/model-manager.ts";
import { ModelRegistry } from "./models/registry.ts";
import { chainOf, routeProblem, RouteTable } from "./models/routes.ts";
import { PeerHealth } from "./peers/health.ts";
import { HeldResponses } from "./peers/held-responses.ts";
import { peerKey, peerProblem, PeerRegistry, type PeerSpec } from "./peers/registry.ts";
import { PeerService } from "./peers/service.ts";
import { Coordinator } from "./distributed/coordinator.ts";
import { GroupMember } from "./distributed/member.ts";
import { loadSettingsToBody } from "./api/admin/schemas.ts";
import { ProbeService } from "./probe/service.ts";
import { ResponseStore } from "./responses/store.ts";
import { MlxRuntime } from "./runtimes/mlx.ts";
import { maxThreads } from "./scheduler/load-limits.ts";
import { Scheduler } from "./scheduler/scheduler.ts";
import { unsupportedArchitectureMessage } from "./update/engines.ts";
import { type Db, openDb } from "./store/db.ts";
import { cpuInfo } from "./util/cpu.ts";
import { parseMemorySize } from "./util/size.ts";
import { bounded } from "./util/watch.ts";
import { VERSION } from "./version.ts";

export type ServeConfig = Resolved<typeof serveSettings>;

/** Longest wait for one shutdown step after the grace period (unloading a model, freeing an engine). */
const STEP_LIMIT_MS = 3000;

export interface RunningServer {
  url: string;
  port: number;
  /** The second listener's URL (--ollama-port), when there is one. */
  ollamaUrl?: string;
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

/** A size setting in bytes ("16MB"); a share of RAM makes no sense for these, so it is refused. */
function byteSize(value: string, flag: string, example: string): number {
  try {
    if (value.includes("%")) throw new Error(`give a size like ${example}, not a share of RAM`);
    return parseMemorySize(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/**
 * The declared peers: config.json's (with their keys), then --peer / LMX_PEERS, which give a URL
 * only and so keep the key config.json gives a peer of the same name.
 */
function declaredPeers(fromFile: readonly ConfiguredPeer[], fromSettings: Record<string, string>): PeerSpec[] {
  const byName = new Map<string, PeerSpec>(fromFile.map((p) => [p.name, { ...p }]));
  for (const [name, url] of Object.entries(fromSettings)) byName.set(name, { ...byName.get(name), name, url });
  for (const spec of byName.values()) {
    const problem = peerProblem(spec);
    if (problem) throw new UsageError(`--peer ${spec.name}=${spec.url}: ${problem}`);
  }
  return [...byName.values()];
}

/**
 * Wires store, catalog, engines, scheduler, services and HTTP app together and starts listening.
 * `env` supplies the Hugging Face token and cache location (tests pass their own), and the
 * peers' `env:VAR` keys.
 */
export async function startServer(config: ServeConfig, home: string, configuredModels: Record<string, ConfiguredModel> = {}, env: NodeJS.ProcessEnv = process.env, configuredPeers: readonly ConfiguredPeer[] = []): Promise<RunningServer> {
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
  if (!isReasoningFormat(config.reasoningFormat)) throw new UsageError(`--reasoning-format: '${config.reasoningFormat}' is not one of ${REASONING_FORMATS.join(", ")}`);
  const reasoningFormat = config.reasoningFormat;
  const hubTokenFromEnv = await hubToken(env);
  const maxBodyBytes = byteSize(config.maxBodySize, "--max-body-size", "16MB");
  for (const [name, model] of Object.entries(config.routes)) {
    const problem = routeProblem(name, model);
    if (problem) throw new UsageError(`--route ${name}=${model}: ${problem}`);
  }
  const peerSpecs = declaredPeers(configuredPeers, config.peers);
  const storedResponsesBytes = byteSize(config.storedResponsesSize, "--stored-responses-size", "256MB");
  const promptCacheBytes = config.promptCacheSize.trim() === "0" ? 0 : byteSize(config.promptCacheSize, "--prompt-cache-size", "4GB");
  const db = openDb(join(home, "lmx.db"));
  const responseLimits = { count: config.storedResponses ?? 10_000, bytes: storedResponsesBytes, ageMs: (config.storedResponsesDays ?? 30) * 86_400_000 };
  const responses = new ResponseStore(db, responseLimits);
  const events = new EventBus();
  const registry = new ModelRegistry(db);
  const history = new LoadHistory(db, events);
  const keys = new KeyStore(db, config.apiKey);
  const routes = new RouteTable(config.routes, db);
  const catalog = new ModelCatalog({
    modelsDir: config.modelsDir ?? join(home, "models"),
    explicit: config.model,
    configured: Object.fromEntries(Object.entries(configuredModels).flatMap(([id, o]) => (o.path ? [[id, o.path]] : []))),
    registered: () => registry.descriptors(),
    aliases: () => registry.aliases(),
    // The first target of a fallback chain; the peers service walks the rest.
    route: (name) => { const model = routes.resolve(name); return model === undefined ? undefined : chainOf(model)[0]; },
  });
  const engine = new LlamaCppEngine(home, {
    unsupportedArchitecture: (id, architecture) => unsupportedArchitectureMessage(home, id, architecture),
    promptCacheBytes,
    records: new LoadRecordStore(db),
  });
  // MLX models run in a Python runtime LMX installs and supervises (src/runtimes/, docs/mlx.md).
  const mlxRuntime: MlxRuntime = new MlxRuntime(db, home, { python: config.python, autoInstall: config.autoInstallRuntimes, inUse: (): boolean => mlxEngine.inUse });
  const mlxEngine = new MlxEngine(mlxRuntime);
  const threads = config.threads || cpuInfo().defaultThreads;
  if (threads > maxThreads()) throw new UsageError(`--threads ${threads}: at most ${maxThreads()} (twice this machine's logical CPUs); 0 picks the best count`);
  const scheduler = new Scheduler(catalog, { gguf: engine, mlx: mlxEngine }, {
    load: { contextLength: config.ctx, parallel: config.parallel ?? 4, threads, ttl: config.ttl ?? 0, flashAttention: v.parse(loadSettingFields.flashAttention, config.flashAttention),
      speculative: v.parse(loadSettingFields.speculative, config.speculative), draft: v.parse(loadSettingFields.draft, config.draft) },
    batchSize: config.batchSize,
    queueLimit: config.queue ?? 64,
    memoryBudget,
  }, Object.fromEntries(Object.entries(configuredModels).map(([id, m]) => [id, m.load])), {
    savedDefaults: (id) => registry.savedDefaults(id),
    events,
    // Bound late: the probe service needs the scheduler it informs.
    testedContext: (d) => probes.testedDefault(d),
  });
  const probes: ProbeService = new ProbeService(db, scheduler, registry, events);
  const hub = { hubUrl: config.hubUrl.replace(/\/+$/, ""), token: config.hfToken ?? hubTokenFromEnv, cacheDir: config.hubCache ?? hubCacheDir(env) };
  // Metadata of finished downloads is read by the engine that will serve them.
  const hubExecutor = new HubExecutor(hub, (d) => scheduler.engineFor(d).inspect(d));
  const downloads = new DownloadJobs(db, events, hubExecutor);
  const engineBuilds = { jobs: new EngineBuildJobs(events, (build, options) => runEngineBuild(home, build, options)), llamaRepo: config.llamaRepo, knownModels: () => registry.all() };
  const manager = new ModelManager(scheduler, registry, history, probes, hubExecutor);
  const importer = new ModelImporter(registry, {
    lmstudioDir: config.lmstudioDir ?? join(homedir(), ".lmstudio", "models"),
    ollamaDir: config.ollamaDir ?? join(homedir(), ".ollama", "models"),
  }, (d) => engine.inspect(d));
  const metrics = new Metrics({
    resolveModel: (name) => catalog.forRequest(name).descriptor?.id,
    occupancy: () => scheduler.occupancy(),
    memoryBudget: () => scheduler.memoryBudget,
    downloadsActive: () => downloads.active,
    version: VERSION,
    engineVersion: () => engineBundleInfo(home).nodeLlamaCppVersion,
  });
  const inference = new InferenceCore(scheduler, { stallTimeoutMs: (config.stallTimeout ?? 600) * 1000, reasoningFormat, observer: metrics });
  const peerRegistry = new PeerRegistry(peerSpecs, db);
  const peerHealth = new PeerHealth(peerRegistry, { intervalMs: (config.peerPoll ?? 10) * 1000, env, events });
  const peers = new PeerService(peerRegistry, peerHealth, {
    env,
    firstByteMs: (config.peerFirstByteTimeout ?? 60) * 1000,
    observer: metrics,
    // The peer keeps the response; this server keeps which peer, within the same bounds as its own.
    held: new HeldResponses(db, responseLimits),
    isLocal: (name) => catalog.get(name) !== undefined,
    route: (name) => { const model = routes.resolve(name); return model === undefined ? undefined : chainOf(model); },
  });
  // A rank whose coordinator stops asking after it for this long is freed; the coordinator asks every 2 s.
  const member = new GroupMember(scheduler, { leaseMs: 30_000 });
  const coordinator = new Coordinator(scheduler, member, {
    node: (name) => {
      const peer = peerRegistry.get(name);
      if (!peer) return `no peer named '${name}' (lmx peers add ${name} URL)`;
      const state = peerHealth.get(name);
      if (state?.state !== "up") return `peer ${name} is ${state?.state ?? "down"}${state?.lastError ? ` (${state.lastError})` : ""}`;
      return { name, url: peer.url, key: peerKey(peer, env) };
    },
    toWire: (settings) => loadSettingsToBody(settings),
    source: (model) => {
      const row = registry.get(model);
      return row?.sourceRepo ? { repo: row.sourceRepo, revision: row.revision } : undefined;
    },
    pullTimeoutMs: 6 * 3600_000,
    pullPollMs: 1000,
    heartbeatMs: 2000,
    misses: 2,
    joinTimeoutS: 120,
  });
  const security = new Security({ boundHost: config.host, keys, corsOrigins: config.corsOrigin, allowedHosts: config.allowedHost });
  const connections = new ConnectionGuard(config.maxConnections ?? 4096);
  const idleSeconds = config.idleTimeout ?? 30;
  // Bound late: the server exists only once the app listens. A request on the --ollama-port
  // listener is that server's to time out.
  const listenerOf = new WeakMap<Request, Server<undefined>>();
  const idle = {
    hold: (request: Request) => (listenerOf.get(request) ?? app.server)?.timeout(request, 0),
    release: (request: Request) => (listenerOf.get(request) ?? app.server)?.timeout(request, idleSeconds),
  };
  const app = createApp({ scheduler, inference, security, manager, events, keys, routes, probes, responses, importer, mlx: mlxRuntime, downloads, engineBuilds, hub, home, maxBodyBytes, idle, connections, metrics,
    ollamaListener: (request) => listenerOf.has(request), peers, distributed: { coordinator, member } });
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
      connections.stop();
      probes.stop();
      peerHealth.stop();
      coordinator.close();
      member.close();
      // Download jobs re-queue themselves and resume at the next start.
      await bounded("the download jobs to stop", downloads.stop(), STEP_LIMIT_MS);
      // A build in progress is cancelled and deletes its temp folder; nothing half-built stays.
      await bounded("the engine builds to stop", engineBuilds.jobs.stop(), STEP_LIMIT_MS);
      await scheduler.shutdown(STEP_LIMIT_MS);
    } finally {
      closeDb();
    }
  };
  const port0 = config.port ?? 1234;
  try {
    // Idle connections close after idleTimeout; a request being handled lifts it (holdOpen), as a
    // non-streamed generation may run for minutes before its first byte. reusePort false: a second
    // server on the same port must fail to bind, not share the port and get half the requests.
    // The body limit is enforced in the app (OpenAI-shaped 413, chunked bodies counted as they
    // arrive); Bun's own cap would answer a bare 413 first.
    app.listen({ hostname: config.host, port: port0, idleTimeout: idleSeconds, reusePort: false, maxRequestBodySize: Number.MAX_SAFE_INTEGER });
  } catch (err) {
    await shutdownCore();
    const code = (err as { code?: string }).code;
    if (code === "EADDRINUSE") throw new UsageError(await portTakenMessage(config.host, port0));
    throw new UsageError(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`);
  }
  // Bun's server itself: Elysia's stop() complains when called twice, and shutdown stops in two steps.
  const http = app.server!;
  let ollama: Server<undefined> | undefined;
  if (config.ollamaPort !== undefined) {
    try {
      // The same app, so every request passes the same Host, key and CORS checks as on --port.
      ollama = Bun.serve({
        hostname: config.host, port: config.ollamaPort, idleTimeout: idleSeconds, reusePort: false, maxRequestBodySize: Number.MAX_SAFE_INTEGER,
        fetch: (request, server) => {
          listenerOf.set(request, server);
          return app.handle(request);
        },
      });
    } catch (err) {
      void Promise.resolve(http.stop(true)).catch(() => undefined);
      await shutdownCore();
      const code = (err as { code?: string }).code;
      if (code === "EADDRINUSE") throw new UsageError(await portTakenMessage(config.host, config.ollamaPort, "--ollama-port"));
      throw new UsageError(`cannot listen on ${config.host}:${config.ollamaPort}: ${(err as Error).message}`);
    }
  }
  connections.start();
  peerHealth.start();
  const port = http.port!;
  const shownHost = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${shownHost}:${port}`;
  const ollamaUrl = ollama ? `http://${shownHost}:${ollama.port}` : undefined;
  log.info("lmx listening", { url, ...(ollamaUrl ? { ollama: ollamaUrl } : {}), models: catalog.list().length, threads, parallel: config.parallel, budget: config.memoryBudget, auth: security.authRequired });
  if (config.reprobeStale) void probes.reprobeStale().catch((err) => log.warn("re-probing stale models failed", { error: errorMessage(err) }));
  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    ollamaUrl,
    scheduler,
    db,
    events,
    stop(graceMs = 0) {
      stopping ??= (async () => {
        scheduler.drain();
        // Stop listening; connections with a request in flight stay open for the grace period.
        void Promise.resolve(http.stop(false)).catch(() => undefined);
        void Promise.resolve(ollama?.stop(false)).catch(() => undefined);
        if (graceMs > 0 && !(await scheduler.waitIdle(graceMs))) log.warn("grace period over; aborting running requests", { graceSeconds: graceMs / 1000 });
        await shutdownCore();
        await bounded("the HTTP server to close its connections", Promise.all([http.stop(true), ollama?.stop(true)]), STEP_LIMIT_MS);
      })();
      return stopping;
    },
    closeDbNow: closeDb,
  };
}
