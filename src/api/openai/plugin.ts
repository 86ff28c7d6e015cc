// The OpenAI adapter: Chat Completions, Completions, Embeddings and Models, each a thin
// translation between OpenAI's wire format and the inference core.
import { Elysia } from "elysia";
import type { InferenceCore } from "../../core/service.ts";
import type { PeerService } from "../../peers/service.ts";
import type { ProbeService } from "../../probe/service.ts";
import type { Scheduler } from "../../scheduler/scheduler.ts";
import { chatRoutes } from "./chat.ts";
import { completionRoutes } from "./completions.ts";
import { embeddingRoutes } from "./embeddings.ts";
import { modelRoutes } from "./models.ts";

export function openaiRoutes(core: InferenceCore, scheduler: Scheduler, probes: ProbeService, peers?: PeerService) {
  return new Elysia()
    .use(modelRoutes(scheduler, probes, peers))
    .use(chatRoutes(core))
    .use(completionRoutes(core))
    .use(embeddingRoutes(core));
}
