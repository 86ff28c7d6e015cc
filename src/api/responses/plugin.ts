import { Elysia } from "elysia";
import type { InferenceCore } from "../../core/service.ts";
import type { ResponseStore } from "../../responses/store.ts";
import { createResponseRoutes } from "./create.ts";
import { storedResponseRoutes } from "./stored.ts";

/** The OpenAI Responses API (/v1/responses), over the same core as Chat Completions. */
export function responsesRoutes(core: InferenceCore, store: ResponseStore) {
  return new Elysia().use(createResponseRoutes(core, store)).use(storedResponseRoutes(store));
}
