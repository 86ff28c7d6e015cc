// The real LMX app (routing, validation, error mapping, scheduler, core service, adapters) on the
// FakeEngine, wired as src/server.ts wires it, without a socket: requests go through `app.handle`.
import type { ReasoningFormat } from "../../src/core/request.ts";
import { createApp } from "../../src/api/app.ts";
import { Security } from "../../src/api/security.ts";
import { KeyStore } from "../../src/auth/keys.ts";
import { InferenceCore } from "../../src/core/service.ts";
import { EventBus } from "../../src/events/bus.ts";
import { configureLog } from "../../src/log.ts";
import { ModelCatalog } from "../../src/models/catalog.ts";
import { LoadHistory } from "../../src/models/history.ts";
import { Metrics } from "../../src/metrics/service.ts";
import { ModelManager } from "../../src/admin/model-manager.ts";
import { HubExecutor } from "../../src/downloads/hub-executor.ts";
import { DownloadJobs } from "../../src/downloads/jobs.ts";
import { type BuildRunner, EngineBuildJobs } from "../../src/update/engine-build/jobs.ts";
import { ModelImporter } from "../../src/models/importer.ts";
import { MlxRuntime } from "../../src/runtimes/mlx.ts";
import { ModelRegistry } from "../../src/models/registry.ts";
import { chainOf, RouteTable } from "../../src/models/routes.ts";
import { ProbeService } from "../../src/probe/service.ts";
import { ResponseStore, type ResponseStoreLimits } from "../../src/responses/store.ts";
import { Scheduler } from "../../src/scheduler/scheduler.ts";
import { openDb } from "../../src/store/db.ts";
import { PeerHealth } from "../../src/peers/health.ts";
import { HeldResponses } from "../../src/peers/held-responses.ts";
import { PeerRegistry, type PeerSpec } from "../../src/peers/registry.ts";
import { PeerService } from "../../src/peers/service.ts";
import { FakeEngine, type FakeModelSpec } from "./fake-engine.ts";

export interface FakeAppOptions {
  /** Stands in for `lmx engine build` behind /admin/v1/engines/builds (default: every build fails). */
  engineBuildRunner?: BuildRunner;
  /** The server's llamaRepo setting. */
  llamaRepo?: string;
  contextLength?: number;
  parallel?: number;
  queueLimit?: number;
  memoryBudget?: number;
  ttlSeconds?: number;
  stallTimeoutMs?: number;
  now?: () => number;
  reasoningFormat?: ReasoningFormat;
  /** Configured routes (--route NAME=MODEL). */
  routes?: Record<string, string>;
  storedResponses?: Partial<ResponseStoreLimits>;
  /** Which requests came in on the --ollama-port listener. */
  ollamaListener?: (request: Request) => boolean;
  /** Peers, reached through `fetch` (another fake app's `handle`, or a scripted server); not polled until the test says. */
  peers?: { specs: PeerSpec[]; fetch: (url: string, init: RequestInit) => Promise<Response>; env?: NodeJS.ProcessEnv; firstByteMs?: number; pollMs?: number };
}

export function fakeApp(specs: FakeModelSpec[], opts: FakeAppOptions = {}) {
  configureLog({ level: process.env.LMX_TEST_LOG_LEVEL ?? "error" });
  const engine = new FakeEngine(specs);
  const db = openDb(":memory:");
  const events = new EventBus();
  const registry = new ModelRegistry(db);
  const history = new LoadHistory(db, events);
  const keys = new KeyStore(db, []);
  const routes = new RouteTable(opts.routes ?? {}, db);
  const catalog = new ModelCatalog({ modelsDir: "/nonexistent/lmx-fake-models", explicit: [], configured: {}, registered: () => engine.descriptors(), route: (name) => routes.resolve(name) });
  const scheduler = new Scheduler(catalog, { gguf: engine }, {
    load: { contextLength: opts.contextLength ?? 1024, parallel: opts.parallel ?? 2, threads: 1, ttl: opts.ttlSeconds ?? 0 },
    queueLimit: opts.queueLimit ?? 8,
    memoryBudget: opts.memoryBudget ?? 1e12,
  }, {}, { events, now: opts.now });
  const probes = new ProbeService(db, scheduler, registry, events);
  // Admin features the fake tests do not exercise are wired as the server wires them, on paths that do not exist.
  const hub = { hubUrl: "http://127.0.0.1:9", token: undefined, cacheDir: "/nonexistent/lmx-fake-hub" };
  const hubExecutor = new HubExecutor(hub, (d) => scheduler.engineFor(d).inspect(d));
  const downloads = new DownloadJobs(db, events, hubExecutor);
  const runner: BuildRunner = opts.engineBuildRunner ?? (() => Promise.reject(new Error("the fake app builds no engines")));
  const engineBuilds = { jobs: new EngineBuildJobs(events, runner), llamaRepo: opts.llamaRepo ?? "https://github.com/ggml-org/llama.cpp", knownModels: () => registry.all() };
  const metrics = new Metrics({
    resolveModel: (name) => catalog.forRequest(name).descriptor?.id,
    occupancy: () => scheduler.occupancy(),
    memoryBudget: () => scheduler.memoryBudget,
    downloadsActive: () => downloads.active,
    version: "test",
    engineVersion: () => "fake",
  });
  const core = new InferenceCore(scheduler, { stallTimeoutMs: opts.stallTimeoutMs ?? 60_000, reasoningFormat: opts.reasoningFormat, observer: metrics });
  const manager = new ModelManager(scheduler, registry, history, probes, hubExecutor);
  const importer = new ModelImporter(registry, { lmstudioDir: "/nonexistent/lmx-fake-lmstudio", ollamaDir: "/nonexistent/lmx-fake-ollama" }, (d) => engine.inspect(d));
  const mlx = new MlxRuntime(db, "/nonexistent/lmx-fake-home", { autoInstall: false });
  const security = new Security({ boundHost: "127.0.0.1", keys, corsOrigins: [], allowedHosts: [] });
  const responses = new ResponseStore(db, { count: 10_000, bytes: 256 * 1024 * 1024, ageMs: 30 * 86_400_000, ...opts.storedResponses }, opts.now);
  let peers: PeerService | undefined;
  if (opts.peers) {
    const registry = new PeerRegistry(opts.peers.specs, db);
    const health = new PeerHealth(registry, { intervalMs: opts.peers.pollMs ?? 1000, env: opts.peers.env ?? {}, events, fetch: opts.peers.fetch });
    peers = new PeerService(registry, health, {
      env: opts.peers.env ?? {},
      firstByteMs: opts.peers.firstByteMs ?? 1000,
      fetch: opts.peers.fetch,
      observer: metrics,
      held: new HeldResponses(db, { count: 10_000, ageMs: 30 * 86_400_000 }, opts.now),
      isLocal: (name) => catalog.get(name) !== undefined,
      route: (name) => { const model = routes.resolve(name); return model === undefined ? undefined : chainOf(model); },
    });
  }
  const app = createApp({ scheduler, inference: core, security, manager, events, keys, routes, probes, responses, importer, mlx, downloads, engineBuilds, hub, home: "/nonexistent/lmx-fake-home", maxBodyBytes: 16 * 1024 * 1024, metrics, ollamaListener: opts.ollamaListener, peers });

  const request = (path: string, init: RequestInit & { json?: unknown } = {}) => {
    const { json, ...rest } = init;
    const headers = new Headers(rest.headers);
    headers.set("host", "127.0.0.1");
    if (json !== undefined) headers.set("content-type", "application/json");
    return app.handle(new Request("http://127.0.0.1" + path, { ...rest, headers, body: json !== undefined ? JSON.stringify(json) : rest.body }));
  };
  return {
    engine,
    scheduler,
    routes,
    core,
    keys,
    events,
    metrics,
    responses,
    peers,
    app,
    request,
    post: (path: string, json: unknown, init: RequestInit = {}) => request(path, { ...init, method: "POST", json }),
    async [Symbol.asyncDispose]() {
      peers?.health.stop();
      probes.stop();
      await downloads.stop();
      await engineBuilds.jobs.stop();
      await scheduler.shutdown();
      history.close();
      db.$client.close();
    },
  };
}

export type FakeApp = ReturnType<typeof fakeApp>;

export { readSse } from "../helpers/server.ts";
