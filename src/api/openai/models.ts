import { statSync } from "node:fs";
import { Elysia } from "elysia";
import { ModelNotFoundError } from "../../errors.ts";
import { probeFields } from "../../probe/fields.ts";
import { modelFacts } from "../model-json.ts";
import type { ListedModel } from "../../peers/naming.ts";
import type { PeerService } from "../../peers/service.ts";
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
    node: "local",
    ...modelFacts(s),
    ...probeFields(probe),
  };
}

/** A peer's model: `node` names the peer; a down peer's models stay listed as unavailable. */
const peerModelObject = (m: ListedModel) => ({
  id: m.id,
  object: "model" as const,
  created: 0,
  owned_by: m.peer,
  node: m.peer,
  state: m.available ? "available" : "unavailable",
});

export function modelRoutes(scheduler: Scheduler, probes: ProbeService, peers?: PeerService) {
  const withProbe = async (s: ModelStatus) => modelObject(s, await probes.latest(s.descriptor));
  const peerModels = (local: ModelStatus[]) => peers?.listed(new Set(local.map((s) => s.descriptor.id))).map(peerModelObject) ?? [];
  return new Elysia()
    .get("/v1/models", async () => {
      const local = await scheduler.list();
      return { object: "list" as const, data: [...await Promise.all(local.map(withProbe)), ...peerModels(local)] };
    }, {
      detail: { summary: "List models", tags: ["OpenAI"], description: "Every servable model, with LMX fields: max_context_length (declared), loaded_context_length, format, state, and node (\"local\", or the peer that serves it)." },
    })
    // Wildcard: ids of models in subfolders contain slashes.
    .get("/v1/models/*", async ({ params }) => {
      const id = decodeURIComponent(params["*"]);
      const local = await scheduler.list();
      const hit = local.find((s) => s.descriptor.id === id);
      if (hit) return withProbe(hit);
      const remote = peerModels(local).find((m) => m.id === id);
      if (!remote) throw new ModelNotFoundError(id);
      return remote;
    }, { detail: { summary: "Retrieve a model", tags: ["OpenAI"] } });
}
