import { Elysia } from "elysia";
import { ForbiddenError, InvalidRequestError, LmxError } from "../errors.ts";
import type { KeyStore } from "../auth/keys.ts";
import type { EventBus } from "../events/bus.ts";
import type { InferenceCore } from "../core/service.ts";
import type { ModelManager } from "../admin/model-manager.ts";
import type { DownloadJobs } from "../downloads/jobs.ts";
import type { HubSettings } from "../downloads/hub-executor.ts";
import type { ModelImporter } from "../models/importer.ts";
import type { RouteTable } from "../models/routes.ts";
import type { ProbeService } from "../probe/service.ts";
import type { ResponseStore } from "../responses/store.ts";
import type { MlxRuntime } from "../runtimes/mlx.ts";
import type { EngineBuilds } from "../update/engine-build/jobs.ts";
import type { Metrics } from "../metrics/service.ts";
import { DASHBOARD_SCRIPT_PATH, dashboardPage, dashboardRoutes, wantsDashboard } from "../dashboard/plugin.ts";
import type { PeerService } from "../peers/service.ts";
import type { Coordinator } from "../distributed/coordinator.ts";
import type { GroupMember } from "../distributed/member.ts";
import { log } from "../log.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import { VERSION } from "../version.ts";
import { DOCS_PATHS, docsRoutes } from "./docs.ts";
import { type ErrorDialect, mapErrorFor } from "./errors.ts";
import { adminActivityRoutes } from "./admin/activity.ts";
import { adminDownloadRoutes } from "./admin/downloads.ts";
import { adminEngineRoutes } from "./admin/engines.ts";
import { adminEngineBuildRoutes } from "./admin/engine-builds.ts";
import { adminImportRoutes } from "./admin/import.ts";
import { adminKeyRoutes } from "./admin/keys.ts";
import { adminDistributedRoutes } from "./admin/distributed.ts";
import { adminModelRoutes } from "./admin/models.ts";
import { adminPeerRoutes } from "./admin/peers.ts";
import { adminRuntimeRoutes } from "./admin/runtimes.ts";
import { adminRouteRoutes } from "./admin/routes.ts";
import { adminSystemRoutes } from "./admin/system.ts";
import { anthropicErrors, anthropicRoutes } from "./anthropic/plugin.ts";
import { openaiRoutes } from "./openai/plugin.ts";
import { onStreamEnd } from "./sse.ts";
import { ollamaErrors } from "./ollama/errors.ts";
import { OLLAMA_ADMIN_PATHS, ollamaRoutes } from "./ollama/plugin.ts";
import { peerDispatch } from "./peers/dispatch.ts";
import { responsesRoutes } from "./responses/plugin.ts";
import type { ConnectionGuard } from "./connections.ts";
import { METRICS_PATH, metricsRoutes } from "./metrics.ts";
import { checkContentLength, readJsonBody } from "./limits.ts";
import type { Security } from "./security.ts";

export interface AppDeps {
  scheduler: Scheduler;
  inference: InferenceCore;
  security: Security;
  manager: ModelManager;
  events: EventBus;
  keys: KeyStore;
  routes: RouteTable;
  probes: ProbeService;
  /** Stored responses of /v1/responses (previous_response_id). */
  responses: ResponseStore;
  importer: ModelImporter;
  mlx: MlxRuntime;
  downloads: DownloadJobs;
  /** `lmx engine build` as admin jobs. */
  engineBuilds: EngineBuilds;
  hub: HubSettings;
  home: string;
  /** Largest request body accepted, in bytes (--max-body-size). */
  maxBodyBytes: number;
  /**
   * The connection's idle timeout is lifted while a request is handled (a prefill may take minutes
   * before its first byte) and restored once the answer is complete, for the keep-alive wait.
   */
  idle?: { hold(request: Request): void; release(request: Request): void };
  connections?: ConnectionGuard;
  /** Served at /metrics; the same instance must observe the inference core. */
  metrics: Metrics;
  /** Whether a request came in on the --ollama-port listener, where `/` is always Ollama's. */
  ollamaListener?: (request: Request) => boolean;
  /** Other servers whose models are listed and proxied (--peer); none without it. */
  peers?: PeerService;
  /** Sharding MLX models across LMX nodes: this node as coordinator and as member. */
  distributed?: { coordinator: Coordinator; member: GroupMember };
}

const json = (status: number, body: unknown, headers?: Record<string, string>) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

/**
 * The path of a request's URL, for choosing which API's error shape answers it. A request without
 * a Host header has a bare path for its URL, which `new URL` refuses: the path is then the URL itself.
 */
function pathOf(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return url.split(/[?#]/, 1)[0] ?? "";
  }
}

/** A path whose %-escapes do not decode would make every route that decodes a parameter throw. */
function checkPath(pathname: string): void {
  try {
    decodeURIComponent(pathname);
  } catch {
    throw new InvalidRequestError("the request path has malformed %-escapes", null, "invalid_path");
  }
}

/**
 * Routes an inference key may not reach: managing the server, and its metrics (they show every
 * model's use). The router also answers a path with a trailing slash, so the check ignores it.
 */
function needsAdmin(path: string): boolean {
  const route = path.length > 1 ? path.replace(/\/+$/, "") : path;
  return route.startsWith("/admin") || OLLAMA_ADMIN_PATHS.has(route) || route === METRICS_PATH;
}

/** APIs whose errors are not OpenAI's shape: each adapter with its own names its paths here. */
const ERROR_DIALECTS: readonly ErrorDialect[] = [
  anthropicErrors,
  ollamaErrors,
];

/**
 * The HTTP app: cross-cutting hooks (host check, auth, CORS, errors), then one Elysia plugin per
 * feature, each a function of the services it needs. A new feature adds its plugin here.
 */
export function createApp(deps: AppDeps) {
  const { scheduler, inference, security, probes, maxBodyBytes, idle, connections } = deps;
  const showsDashboard = (request: Request) => wantsDashboard(request) && !deps.ollamaListener?.(request);
  // Bound late: a fallback chain may send a request round the app once more.
  const dispatch = peerDispatch(deps.peers, (request) => app.handle(request));
  // The idle timeout is restored once a streamed answer is complete, not when it starts.
  const releasing = (request: Request, response: Response): Response => {
    if (!idle) return response;
    if (!response.body) {
      idle.release(request);
      return response;
    }
    if (onStreamEnd(response, () => idle.release(request))) return response;
    const done = new TransformStream<Uint8Array, Uint8Array>({ flush: () => idle.release(request) });
    return new Response(response.body.pipeThrough(done), { status: response.status, statusText: response.statusText, headers: response.headers });
  };
  const app = new Elysia()
    .onRequest(({ request }) => {
      try {
        connections?.check();
        security.checkHost(request.headers.get("host"));
        const url = new URL(request.url);
        checkPath(url.pathname);
        const cors = security.corsHeaders(request.headers.get("origin"), request.headers.get("access-control-request-headers"));
        if (request.method === "OPTIONS") {
          if (!cors) throw new ForbiddenError("CORS is not enabled for this origin; see --cors-origin", "cors_forbidden");
          return new Response(null, { status: 204, headers: cors });
        }
        if (url.pathname !== "/health") {
          security.checkOrigin(request);
          security.checkBodyType(request);
          checkContentLength(request, maxBodyBytes);
          // The reference and the dashboard's page and script hold no data: their API calls need the key.
          const open = DOCS_PATHS.has(url.pathname) || url.pathname === DASHBOARD_SCRIPT_PATH || showsDashboard(request);
          if (!open) {
            security.checkAuth(request.headers.get("authorization"), request.headers.get("x-api-key"), needsAdmin(url.pathname) ? "admin" : "inference");
          }
        }
      } catch (err) {
        const { status, body } = mapErrorFor(ERROR_DIALECTS, pathOf(request.url), err);
        // An unread body (413) or a server short of descriptors (503): do not keep the connection.
        return json(status, body, status === 413 || status === 503 ? { connection: "close" } : undefined);
      }
    })
    // Only JSON ever reaches a handler, read within the size limit and depth-checked before parsing.
    .onParse({ as: "global" }, ({ request, contentType }) => {
      // Only a body-less request gets here without a type (onRequest refused the rest): it reads as
      // the empty object, so the named parser below is never reached.
      if (!contentType) return {};
      if (!/^application\/json\s*(;|$)/i.test(contentType)) {
        throw new LmxError(`request bodies must be JSON: send 'Content-Type: application/json' (got '${contentType}')`, 415, "invalid_request_error", "unsupported_media_type");
      }
      return readJsonBody(request, maxBodyBytes);
    })
    // Never runs (the reader above answers every request): a named parser is what the OpenAPI
    // generator reads the body's media type from, and Elysia's typings only name custom ones.
    .onParse({ as: "global" }, { fn: "json" } as unknown as () => undefined)
    .onBeforeHandle({ as: "global" }, ({ request }) => idle?.hold(request))
    .onAfterHandle({ as: "global" }, ({ request, set, responseValue }) => {
      const cors = security.corsHeaders(request.headers.get("origin"));
      if (cors) Object.assign(set.headers, cors);
      if (!idle) return undefined;
      if (responseValue instanceof Response && responseValue.body) return releasing(request, responseValue);
      idle.release(request);
      return undefined;
    })
    .use(dispatch.plugin)
    .onError(async ({ code, error, request, set }) => {
      // A fallback chain's local target refused: the next target answers instead.
      const recovered = await dispatch.recover(request, error, set);
      if (recovered instanceof Response) {
        const cors = security.corsHeaders(request.headers.get("origin"));
        if (cors) Object.assign(set.headers, cors);
        return releasing(request, recovered);
      }
      const failure = recovered ? recovered.error : error;
      idle?.release(request);
      const path = pathOf(request.url);
      const { status, body, headers, message } = mapErrorFor(ERROR_DIALECTS, path, failure, code);
      if (headers) Object.assign(set.headers, headers);
      if (status >= 500) log.warn("request failed", { path, status, error: message });
      set.status = status;
      const cors = security.corsHeaders(request.headers.get("origin"));
      if (cors) Object.assign(set.headers, cors);
      set.headers["content-type"] = "application/json";
      return body;
    })
    .get("/health", () => ({ status: "ok", version: VERSION }), { detail: { summary: "Liveness check (no API key needed)", tags: ["LMX"] } })
    .use(openaiRoutes(inference, scheduler, probes, deps.peers))
    .use(anthropicRoutes(inference))
    .use(ollamaRoutes({ ...deps, rootPage: (request) => (showsDashboard(request) ? dashboardPage() : undefined) }))
    .use(responsesRoutes(inference, deps.responses))
    .use(metricsRoutes(deps.metrics))
    .use(adminModelRoutes({ ...deps, coordinator: deps.distributed?.coordinator }))
    .use(deps.distributed ? adminDistributedRoutes(deps.distributed) : new Elysia())
    .use(adminSystemRoutes(deps))
    .use(adminActivityRoutes(deps))
    .use(adminKeyRoutes(deps))
    .use(adminRouteRoutes(deps))
    .use(adminPeerRoutes(deps))
    .use(adminDownloadRoutes(deps))
    .use(adminRuntimeRoutes(deps))
    .use(adminEngineRoutes(deps))
    .use(adminEngineBuildRoutes(deps))
    .use(adminImportRoutes(deps))
    .use(dashboardRoutes());
  return app.use(docsRoutes(() => app));
}

export type App = ReturnType<typeof createApp>;
