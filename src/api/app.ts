import { openapi } from "@elysiajs/openapi";
import { toJsonSchema } from "@valibot/to-json-schema";
import { type AnyElysia, Elysia } from "elysia";
import { ForbiddenError } from "../errors.ts";
import type { KeyStore } from "../auth/keys.ts";
import type { EventBus } from "../events/bus.ts";
import type { InferenceService } from "../inference/service.ts";
import type { ModelManager } from "../models/manager.ts";
import type { ProbeService } from "../probe/service.ts";
import { log } from "../log.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import { VERSION } from "../version.ts";
import { mapError } from "./errors.ts";
import { adminModelRoutes } from "./routes/admin-models.ts";
import { adminSystemRoutes } from "./routes/admin-system.ts";
import { chatRoutes } from "./routes/chat.ts";
import { completionRoutes } from "./routes/completions.ts";
import { embeddingRoutes } from "./routes/embeddings.ts";
import { modelRoutes } from "./routes/models.ts";
import type { Security } from "./security.ts";

export interface AppDeps {
  scheduler: Scheduler;
  inference: InferenceService;
  security: Security;
  manager: ModelManager;
  events: EventBus;
  keys: KeyStore;
  probes: ProbeService;
  home: string;
  /** Routes of capabilities wired by the server (downloads, hub search, import). */
  extra?: AnyElysia[];
}

const json = (status: number, body: unknown, headers?: Record<string, string>) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

export function createApp({ scheduler, inference, security, manager, events, keys, probes, home, extra = [] }: AppDeps) {
  let app = new Elysia()
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
    .use(modelRoutes(scheduler, probes))
    .use(chatRoutes(inference))
    .use(completionRoutes(inference))
    .use(embeddingRoutes(inference))
    .use(adminModelRoutes(manager, probes))
    .use(adminSystemRoutes({ scheduler, events, keys, home }));
  for (const routes of extra) app = app.use(routes) as typeof app;
  return app;
}

export type App = ReturnType<typeof createApp>;
