import { statSync } from "node:fs";
import { Elysia } from "elysia";
import { ModelNotFoundError } from "../../errors.ts";
import { probeFields } from "../../probe/fields.ts";
import { modelFacts } from "../model-json.ts";
import type { ProbeService, StoredProbe } from "../../probe/service.ts";
import type { ModelStatus, Scheduler } from "../../scheduler/scheduler.ts";

function created(path: string): number {
  try {
    return Math.floor(statSync(path).mtimeMs / 1000);
  } catch {
    return 0;
  }
}

function modelObject(s: ModelStatus, probe: StoredProbe | undefined) {
  return {
    id: s.descriptor.id,
    object: "model" as const,
    created: created(s.descriptor.path),
    owned_by: "lmx",
    ...modelFacts(s),
    ...probeFields(probe),
  };
}

export function modelRoutes(scheduler: Scheduler, probes: ProbeService) {
  const withProbe = async (s: ModelStatus) => modelObject(s, await probes.latest(s.descriptor));
  return new Elysia()
    .get("/v1/models", async () => ({ object: "list" as const, data: await Promise.all((await scheduler.list()).map(withProbe)) }), {
      detail: { summary: "List models", tags: ["OpenAI"], description: "Every servable model, with LMX fields: max_context_length (declared), loaded_context_length, format, state." },
    })
    // Wildcard: ids of models in subfolders contain slashes.
    .get("/v1/models/*", async ({ params }) => {
      const id = decodeURIComponent(params["*"]);
      const hit = (await scheduler.list()).find((s) => s.descriptor.id === id);
      if (!hit) throw new ModelNotFoundError(id);
      return withProbe(hit);
    }, { detail: { summary: "Retrieve a model", tags: ["OpenAI"] } });
}
