import { openapi } from "@elysiajs/openapi";
import { toJsonSchema } from "@valibot/to-json-schema";
import { Elysia } from "elysia";
import { ForbiddenError } from "../errors.ts";
import type { KeyStore } from "../auth/keys.ts";
import type { EventBus } from "../events/bus.ts";
import type { InferenceCore } from "../core/service.ts";
import type { ModelManager } from "../admin/model-manager.ts";
import type { DownloadJobs } from "../downloads/jobs.ts";
import type { HubSettings } from "../downloads/hub-executor.ts";
import type { ModelImporter } from "../models/importer.ts";
import type { ProbeService } from "../probe/service.ts";
import type { MlxRuntime } from "../runtimes/mlx.ts";
import { log } from "../log.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import { VERSION } from "../version.ts";
import { mapError } from "./errors.ts";
import { adminDownloadRoutes } from "./admin/downloads.ts";
import { adminImportRoutes } from "./admin/import.ts";
import { adminKeyRoutes } from "./admin/keys.ts";
import { adminModelRoutes } from "./admin/models.ts";
import { adminRuntimeRoutes } from "./admin/runtimes.ts";
import { adminSystemRoutes } from "./admin/system.ts";
import { openaiRoutes } from "./openai/plugin.ts";
import type { Security } from "./security.ts";

export interface AppDeps {
  scheduler: Scheduler;
  inference: InferenceCore;
  security: Security;
  manager: ModelManager;
  events: EventBus;
  keys: KeyStore;
  probes: ProbeService;
  importer: ModelImporter;
  mlx: MlxRuntime;
  downloads: DownloadJobs;
  hub: HubSettings;
  home: string;
}

const json = (status: number, body: unknown, headers?: Record<string, string>) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

/**
 * The HTTP app: cross-cutting hooks (host check, auth, CORS, errors), then one Elysia plugin per
 * feature, each a function of the services it needs. A new feature adds its plugin here.
 */
export function createApp(deps: AppDeps) {
  const { scheduler, inference, security, probes } = deps;
  return new Elysia()
    .onRequest(({ request }) => {
      const url = new URL(request.url);
      try {
        security.checkHost(request.headers.get("host"));
        const cors = security.corsHeaders(request.headers.get("origin"), request.headers.get("access-control-request-headers"));
        if (request.method === "OPTIONS") {
          if (!cors) throw new ForbiddenError("CORS is not enabled for this origin; see --cors-origin", "cors_forbidden");
          return new Response(null, { status: 204, headers: cors });
        }
        if (url.pathname !== "/health") {
          security.checkAuth(request.headers.get("authorization"), request.headers.get("x-api-key"), url.pathname.startsWith("/admin") ? "admin" : "inference");
        }
      } catch (err) {
        const { status, body } = mapError(err);
        return json(status, body);
      }
    })
    .onAfterHandle(({ request, set }) => {
      const cors = security.corsHeaders(request.headers.get("origin"));
      if (cors) Object.assign(set.headers, cors);
    })
    .onError(({ code, error, request, set }) => {
      const { status, body, headers } = mapError(error, code);
      if (headers) Object.assign(set.headers, headers);
      if (status >= 500) log.warn("request failed", { path: new URL(request.url).pathname, status, error: body.error.message });
      set.status = status;
      const cors = security.corsHeaders(request.headers.get("origin"));
      if (cors) Object.assign(set.headers, cors);
      set.headers["content-type"] = "application/json";
      return body;
    })
    .use(openapi({
      path: "/docs",
      mapJsonSchema: { valibot: toJsonSchema },
      documentation: {
        info: { title: "LMX API", version: VERSION, description: "OpenAI-compatible local LLM server. Errors use OpenAI's {error: {message, type, param, code}} shape." },
      },
    }))
    .get("/health", () => ({ status: "ok", version: VERSION }), { detail: { summary: "Liveness check (no API key needed)", tags: ["LMX"] } })
    .use(openaiRoutes(inference, scheduler, probes))
    .use(adminModelRoutes(deps))
    .use(adminSystemRoutes(deps))
    .use(adminKeyRoutes(deps))
    .use(adminDownloadRoutes(deps))
    .use(adminRuntimeRoutes(deps))
    .use(adminImportRoutes(deps));
}

export type App = ReturnType<typeof createApp>;
