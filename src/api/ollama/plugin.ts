// The Ollama adapter: /api/* as Ollama serves it, over the same core, scheduler, keys and limits
// as the OpenAI API, plus the "Ollama is running" root that Ollama clients probe.
import { Elysia } from "elysia";
import type { ModelManager } from "../../admin/model-manager.ts";
import type { InferenceCore } from "../../core/service.ts";
import type { DownloadJobs } from "../../downloads/jobs.ts";
import type { EventBus } from "../../events/bus.ts";
import type { PeerService } from "../../peers/service.ts";
import type { Scheduler } from "../../scheduler/scheduler.ts";
import { VERSION } from "../../version.ts";
import { chatRoutes } from "./chat.ts";
import { embedRoutes } from "./embed.ts";
import { generateRoutes } from "./generate.ts";
import { modelRoutes } from "./models.ts";
import { pullRoutes } from "./pull.ts";

export interface OllamaDeps {
  inference: InferenceCore;
  scheduler: Scheduler;
  manager: ModelManager;
  downloads: DownloadJobs;
  events: EventBus;
  /** Other servers whose models /api/tags lists beside local ones (requests for them are proxied before routing). */
  peers?: PeerService;
  /** Another answer for `GET /` (the dashboard, for a browser), or undefined for Ollama's. */
  rootPage?: (request: Request) => Response | undefined;
}

const RUNNING = "Ollama is running";

/** Ollama's routes that download, delete or rename models: what /admin does, so they need an admin key. */
export const OLLAMA_ADMIN_PATHS: ReadonlySet<string> = new Set(["/api/pull", "/api/delete", "/api/copy"]);

export function ollamaRoutes({ inference, scheduler, manager, downloads, events, peers, rootPage }: OllamaDeps) {
  return new Elysia()
    .get("/", ({ request }) => rootPage?.(request) ?? new Response(RUNNING, { headers: { "content-type": "text/plain; charset=utf-8" } }), {
      detail: { summary: "Liveness as Ollama clients probe it", description: "A browser (Accept: text/html) on the main port gets the web dashboard instead.", tags: ["Ollama"] },
    })
    .head("/", () => new Response(null, { headers: { "content-type": "text/plain; charset=utf-8", "content-length": String(RUNNING.length) } }), {
      detail: { summary: "Liveness as Ollama clients probe it", tags: ["Ollama"] },
    })
    .get("/api/version", () => ({ version: VERSION }), { detail: { summary: "Server version (Ollama)", tags: ["Ollama"], description: "LMX's version." } })
    .use(modelRoutes(manager, scheduler, peers))
    .use(chatRoutes({ core: inference, scheduler }))
    .use(generateRoutes({ core: inference, scheduler }))
    .use(embedRoutes(inference, scheduler))
    .use(pullRoutes(downloads, events));
}
